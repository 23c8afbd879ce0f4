// A minimal server on the npm `ws` package speaking our framing (see framing.mjs).
//   node bench/js/ws_server.mjs [--host 127.0.0.1] [--port 0]
import { args, handle, listening, peerId, require, welcome } from "./framing.mjs";

const { WebSocketServer } = require("ws");
const { host, port } = args();
const peers = new Map();
const channels = new Map();

const io = {
  send: (peer, text) => peer.ws.send(text),
  find: (id) => peers.get(id),
  join(peer, channel) {
    let subs = channels.get(channel);
    if (subs === undefined) channels.set(channel, (subs = new Set()));
    subs.add(peer);
    peer.channels.add(channel);
  },
  leave(peer, channel) {
    channels.get(channel)?.delete(peer);
    peer.channels.delete(channel);
  },
  publish(channel, text) {
    for (const peer of channels.get(channel) ?? []) peer.ws.send(text);
  },
};

const server = new WebSocketServer({ host, port, perMessageDeflate: false, maxPayload: 1 << 20 });
server.on("connection", (ws) => {
  const peer = { id: peerId(), ws, channels: new Set() };
  peers.set(peer.id, peer);
  ws.send(welcome(peer.id));
  ws.on("message", (data) => handle(io, peer, data.toString()));
  ws.on("close", () => {
    for (const channel of peer.channels) io.leave(peer, channel);
    peers.delete(peer.id);
  });
});
server.on("listening", () => listening(host, server.address().port));
for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => process.exit(0));
