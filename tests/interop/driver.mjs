// Drives one client of the published JavaScript SDK (@metered-ca/realtime) from another
// process, for the interop tests.
//
// Protocol: JSON lines.
//   stdin  <- {"id": 1, "cmd": "connect", ...args}
//   stdout -> {"type": "result", "id": 1, "ok": true, "value": ...}
//             {"type": "result", "id": 1, "ok": false, "error": {"name", "message", ...}}
//             {"type": "event", "name": "<sdk event>", "payload": {...}}
//             {"type": "wire", "dir": "in" | "out", "frame": "<text>"}       (trace on)
//             {"type": "wire", "dir": "close", "code": n, "reason": "..."}   (trace on)
//   every line also carries "seq" (a counter over all output lines) and "t" (Date.now()).
//
// Commands (one client per process; kind "client" = SignallingClient, "peer" = MeteredPeer):
//   connect {url, key | token, kind?, options?, trace?, syncEvents?}
//                                                         create the SDK object and connect
//                                                         (MeteredPeer: create only; use join)
//   subscribe {channel, includeSenderMetadata?}   unsubscribe {channel}
//   publish {channel, data | dataJson}   send {to, data | dataJson}   close {code?, reason?}
//   set_token {token | null}   (null: the token provider rejects from then on)
//   state   drop (terminate the current socket without a close handshake)   exit
//   join {channel, includeSenderMetadata?}   peer_send {data}   send_to {peerId, data}
//   peer_close {reason?}   remote_peers

import readline from "node:readline";
import WebSocket from "ws";
import { MeteredPeer, SignallingClient } from "@metered-ca/realtime";

let seq = 0;
function emit(obj) {
  seq += 1;
  process.stdout.write(`${JSON.stringify({ ...obj, seq, t: Date.now() })}\n`);
}

function describeError(err) {
  if (err === null || typeof err !== "object") {
    return { name: "NonError", message: String(err) };
  }
  const out = { name: err.name, message: err.message };
  for (const key of ["code", "closeCode", "closeReason", "size", "cap", "queued", "method"]) {
    if (err[key] !== undefined) out[key] = err[key];
  }
  if (err.cause !== undefined) out.cause = describeError(err.cause);
  return out;
}

// JSON-safe copy of an event payload: Error objects become plain descriptions, RemotePeer
// objects become {id, metadata, state, polite}.
function plain(value, depth = 0) {
  if (depth > 8) return "<deep>";
  if (value instanceof Error) return describeError(value);
  if (value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) return value.map((v) => plain(v, depth + 1));
  if (typeof value.toJSON === "function" && value.id !== undefined && "polite" in value) {
    return { id: value.id, metadata: value.metadata, state: value.state, polite: value.polite };
  }
  const out = {};
  for (const [k, v] of Object.entries(value)) out[k] = plain(v, depth + 1);
  return out;
}

let sdk = null; // SignallingClient or MeteredPeer
let kind = "client";
let socket = null; // the ws instance currently handed to the SDK
let token = null;
let trace = false;
// Browsers dispatch each WebSocket message as its own task, so promise continuations run
// between two frames. `ws` (client default allowSynchronousEvents: true) emits every frame of
// one TCP read in the same tick; the SDK's MeteredPeer then sees a snapshot that directly
// follows its subscribe ack before the ack's continuation has set the channel, and drops it.
// Default to browser semantics; `connect {syncEvents: true}` restores the ws default.
let wsOptions = { allowSynchronousEvents: false };

function makeSocket(url) {
  emit({ type: "socket", url });
  const ws = new WebSocket(url, wsOptions);
  socket = ws;
  if (trace) {
    ws.on("message", (data, isBinary) => {
      emit({ type: "wire", dir: "in", binary: isBinary, frame: data.toString() });
    });
    const send = ws.send.bind(ws);
    ws.send = (data, ...rest) => {
      emit({ type: "wire", dir: "out", frame: String(data) });
      return send(data, ...rest);
    };
  }
  ws.on("close", (code, reason) => {
    if (trace) emit({ type: "wire", dir: "close", code, reason: reason.toString() });
  });
  ws.on("unexpected-response", (_req, res) => {
    emit({ type: "wire", dir: "refused", status: res.statusCode });
  });
  return ws;
}

// A stand-in RTCPeerConnection: Node has none. It never negotiates, so a MeteredPeer that
// attaches no media and opens no data channel stays "idle" with every remote,
// which is all the signalling-level MeteredPeer tests need.
class InertPeerConnection {
  constructor(config) {
    this.config = config;
    this.connectionState = "new";
    this.signalingState = "stable";
    this.iceConnectionState = "new";
    this.localDescription = null;
    this.remoteDescription = null;
  }
  async createOffer() {
    throw new Error("InertPeerConnection cannot negotiate");
  }
  async createAnswer() {
    throw new Error("InertPeerConnection cannot negotiate");
  }
  async setLocalDescription() {
    throw new Error("InertPeerConnection cannot negotiate");
  }
  async setRemoteDescription() {
    throw new Error("InertPeerConnection cannot negotiate");
  }
  async addIceCandidate() {}
  addTrack() {
    throw new Error("InertPeerConnection has no media");
  }
  removeTrack() {}
  getSenders() {
    return [];
  }
  createDataChannel() {
    throw new Error("InertPeerConnection has no data channels");
  }
  setConfiguration(config) {
    this.config = config;
  }
  addEventListener() {}
  removeEventListener() {}
  close() {
    this.connectionState = "closed";
    this.signalingState = "closed";
  }
}

const CLIENT_EVENTS = [
  "connected",
  "disconnected",
  "state-change",
  "message",
  "direct",
  "presence",
  "server-error",
  "going-away",
  "token-provider-error",
];
const PEER_EVENTS = ["joined", "left", "state-change", "peer-joined", "peer-left", "data", "error"];

function logger() {
  const log = (level) => (msg, ctx) => emit({ type: "log", level, msg, ctx: plain(ctx) });
  return { debug: () => {}, info: log("info"), warn: log("warn"), error: log("error") };
}

function create(args) {
  if (sdk !== null) throw new Error("already created");
  kind = args.kind ?? "client";
  trace = Boolean(args.trace);
  if (args.syncEvents) wsOptions = { allowSynchronousEvents: true };
  const options = { ...(args.options ?? {}), logger: logger(), webSocketFactory: makeSocket };
  if (args.url !== undefined) options.url = args.url;
  if (args.key !== undefined) options.apiKey = args.key;
  if (args.token !== undefined) {
    token = args.token;
    options.tokenProvider = async () => {
      if (token === null) throw new Error("token provider has no token");
      return token;
    };
  }
  if (kind === "peer") {
    options.rtcPeerConnectionFactory = (config) => new InertPeerConnection(config);
    sdk = new MeteredPeer(options);
    for (const name of PEER_EVENTS) {
      sdk.on(name, (payload) => emit({ type: "event", name, payload: plain(payload) }));
    }
  } else {
    sdk = new SignallingClient(options);
    for (const name of CLIENT_EVENTS) {
      sdk.on(name, (payload) => emit({ type: "event", name, payload: plain(payload) }));
    }
  }
}

// `data`, or `dataJson` (JSON text parsed here: for values the controlling side cannot build,
// such as nesting deeper than Python's json handles).
function dataOf(a) {
  return a.dataJson !== undefined ? JSON.parse(a.dataJson) : a.data;
}

function need(k) {
  if (sdk === null) throw new Error("not created: send connect first");
  if (k !== undefined && kind !== k) throw new Error(`command needs a ${k}, this is a ${kind}`);
  return sdk;
}

const commands = {
  async connect(args) {
    create(args);
    if (kind === "client") await sdk.connect();
    return null;
  },
  subscribe: (a) => {
    const opts = a.includeSenderMetadata === undefined ? undefined : { includeSenderMetadata: a.includeSenderMetadata };
    return need("client").subscribe(a.channel, opts);
  },
  unsubscribe: (a) => need("client").unsubscribe(a.channel),
  publish: (a) => need("client").publish(a.channel, dataOf(a)),
  send: (a) => need("client").send(a.to, dataOf(a)),
  close: (a) => need("client").close(a.code, a.reason),
  state: () => need().state,
  set_token: (a) => {
    token = a.token;
    return null;
  },
  drop: () => {
    if (socket === null) throw new Error("no socket");
    socket.terminate();
    return null;
  },
  join: (a) => {
    const opts = a.includeSenderMetadata === undefined ? undefined : { includeSenderMetadata: a.includeSenderMetadata };
    return need("peer").join(a.channel, opts);
  },
  peer_send: (a) => need("peer").send(a.data),
  send_to: (a) => need("peer").sendTo(a.peerId, a.data),
  peer_close: (a) => need("peer").close(a.reason),
  remote_peers: () => need("peer").remotePeers.map((p) => plain(p)),
  peer_info: () => {
    const p = need("peer");
    return { state: p.state, peerId: p.peerId, channel: p.channel };
  },
};

async function run(line) {
  let msg;
  try {
    msg = JSON.parse(line);
  } catch (err) {
    emit({ type: "driver-error", error: describeError(err), line });
    return;
  }
  const { id, cmd, ...args } = msg;
  if (cmd === "exit") {
    emit({ type: "result", id, ok: true, value: null });
    process.exit(0);
  }
  const fn = commands[cmd];
  if (fn === undefined) {
    emit({ type: "result", id, ok: false, error: { name: "UnknownCommand", message: String(cmd) } });
    return;
  }
  try {
    const value = await fn(args);
    emit({ type: "result", id, ok: true, value: value === undefined ? null : plain(value) });
  } catch (err) {
    emit({ type: "result", id, ok: false, error: describeError(err) });
  }
}

process.on("unhandledRejection", (err) => emit({ type: "driver-error", error: describeError(err) }));
process.on("uncaughtException", (err) => emit({ type: "driver-error", error: describeError(err) }));

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on("line", (line) => {
  if (line.trim() !== "") void run(line);
});
// The controlling process went away: leave at once, nothing of ours may outlive it.
rl.on("close", () => process.exit(0));
emit({ type: "ready", pid: process.pid, node: process.version });
