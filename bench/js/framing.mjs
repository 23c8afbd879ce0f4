// Our wire framing, minimal: welcome, subscribe/unsubscribe (acked), publish (fanned out
// to every subscriber of the channel, the publisher too), send (a direct to one peer, or
// peer_not_found) and ping. No presence, no auth, no limits: the floor a JavaScript server
// pays for the same traffic, for bench/table.py.
import { createRequire } from "node:module";
import { randomBytes } from "node:crypto";

// The npm packages live with the interop tests' dependencies.
export const require = createRequire(new URL("../../tests/interop/package.json", import.meta.url));

const ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

export function peerId() {
  let id = "";
  for (const byte of randomBytes(20)) id += ALPHABET[byte % 62];
  return id;
}

export function welcome(peer) {
  return `{"type":"welcome","peerId":"${peer}","expiresAt":null,"serverTime":${Date.now()},"maxMessageSize":65536}`;
}

// `io`: send(peer, text), join(peer, channel), leave(peer, channel),
// publish(channel, text), find(peerId) -> peer or undefined; each peer has `.id`.
export function handle(io, peer, text) {
  let frame;
  try {
    frame = JSON.parse(text);
  } catch {
    io.send(peer, '{"type":"error","code":"malformed_message","message":"invalid JSON"}');
    return;
  }
  const rid = typeof frame.requestId === "string" ? frame.requestId : null;
  const ack = () => {
    if (rid !== null) io.send(peer, `{"type":"ack","requestId":${JSON.stringify(rid)}}`);
  };
  switch (frame.type) {
    case "subscribe":
      io.join(peer, frame.channel);
      ack();
      break;
    case "unsubscribe":
      io.leave(peer, frame.channel);
      ack();
      break;
    case "publish":
      io.publish(
        frame.channel,
        `{"type":"message","channel":${JSON.stringify(frame.channel)},"from":"${peer.id}","data":${JSON.stringify(frame.data)}}`,
      );
      ack();
      break;
    case "send": {
      const target = io.find(frame.to);
      if (target === undefined) {
        const id = rid === null ? "" : `,"requestId":${JSON.stringify(rid)}`;
        io.send(peer, `{"type":"error","code":"peer_not_found"${id},"message":"no such peer"}`);
        break;
      }
      io.send(target, `{"type":"direct","from":"${peer.id}","data":${JSON.stringify(frame.data)}}`);
      ack();
      break;
    }
    case "ping":
      io.send(peer, rid === null ? '{"type":"pong"}' : `{"type":"pong","requestId":${JSON.stringify(rid)}}`);
      break;
    default:
      io.send(peer, '{"type":"error","code":"malformed_message","message":"unknown type"}');
  }
}

export function listening(host, port) {
  // bench/table.py reads these two lines.
  console.log(`url: ws://${host}:${port}`);
  console.log("key: none");
}

export function args() {
  const argv = process.argv.slice(2);
  const get = (name, fallback) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : fallback;
  };
  return { host: get("--host", "127.0.0.1"), port: Number(get("--port", "0")) };
}
