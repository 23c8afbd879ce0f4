// A minimal uWebSockets.js server (npm `uwebsockets`) speaking our framing (see framing.mjs).
// Channels are uWS topics, so a publish is uWS's own corked fan-out.
//   node bench/js/uws_server.mjs [--host 127.0.0.1] [--port 0]
import { args, handle, listening, peerId, require, welcome } from "./framing.mjs";

const uWS = require("uwebsockets");
const { host, port } = args();
const peers = new Map();
const app = uWS.App();

const io = {
  send: (peer, text) => peer.ws.send(text),
  find: (id) => peers.get(id),
  join: (peer, channel) => peer.ws.subscribe(channel),
  leave: (peer, channel) => peer.ws.unsubscribe(channel),
  publish: (channel, text) => app.publish(channel, text),
};

app.ws("/*", {
  compression: uWS.DISABLED,
  maxPayloadLength: 1 << 20,
  // Never skip a slow subscriber: the benchmark's window bounds what is in flight.
  maxBackpressure: 64 << 20,
  idleTimeout: 0,
  open(ws) {
    const peer = ws.getUserData();
    peer.id = peerId();
    peer.ws = ws;
    peers.set(peer.id, peer);
    ws.send(welcome(peer.id));
  },
  message(ws, message) {
    handle(io, ws.getUserData(), Buffer.from(message).toString());
  },
  close(ws) {
    peers.delete(ws.getUserData().id);
  },
});
app.listen(host, port, (socket) => {
  if (!socket) {
    console.error("could not listen");
    process.exit(1);
  }
  listening(host, uWS.us_socket_local_port(socket));
});
for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => process.exit(0));
