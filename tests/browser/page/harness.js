// Page-side test harness for the browser interop tests (tests/browser).
//
// Loaded after the published JavaScript SDK's UMD build (global `MeteredPeer`, a namespace
// holding MeteredPeer, SignallingClient, ...). Exposes `window.H`, whose methods the Python
// side calls through tests/browser/driver.mjs (page.evaluate), and reports every SDK event
// through `window.__report(json)`, a binding the driver installs before any page script runs.
//
// Loopback only: Chromium gathers host candidates on every interface it may use (with media
// permission granted and --allow-loopback-in-peer-connection, that includes 127.0.0.1). The
// RTCPeerConnection handed to the SDK (rtcPeerConnectionFactory) drops every candidate whose
// address is not 127.0.0.1: outbound trickled candidates, candidates inside local and remote
// SDP, and inbound trickled candidates. So the far side never learns another address, and
// every connectivity check Chromium sends goes to 127.0.0.1.
"use strict";

(() => {
  const SDK = window.MeteredPeer;

  function report(name, payload) {
    try {
      if (typeof window.__report === "function") {
        window.__report(JSON.stringify({ name, payload: payload === undefined ? {} : payload }));
      }
    } catch (err) {
      // Reporting must never break the SDK's own handlers.
    }
  }

  function describeError(err) {
    if (err === null || typeof err !== "object") return { name: "NonError", message: String(err) };
    return { name: err.name, message: err.message };
  }

  window.addEventListener("error", (ev) => {
    report("page-error", { message: String(ev.message), source: String(ev.filename || "") });
  });
  window.addEventListener("unhandledrejection", (ev) => {
    report("page-error", { message: "unhandled rejection", reason: describeError(ev.reason) });
  });

  // -- loopback-only peer connections ----------------------------------------------------------

  const filtered = { outbound: 0, inbound: 0, sdp: 0, keptOutbound: 0 };

  function candidateAddress(text) {
    // "candidate:<foundation> <component> <transport> <priority> <address> <port> typ ..."
    const parts = String(text).replace(/^a=/, "").trim().split(/\s+/);
    return parts.length > 4 ? parts[4] : "";
  }

  function loopbackCandidate(text) {
    return candidateAddress(text) === "127.0.0.1";
  }

  function filterSdp(sdp) {
    if (typeof sdp !== "string") return sdp;
    const lines = sdp.split("\r\n");
    const kept = lines.filter((line) => {
      if (!line.startsWith("a=candidate:")) return true;
      if (loopbackCandidate(line)) return true;
      filtered.sdp += 1;
      return false;
    });
    return kept.join("\r\n");
  }

  function filterDescription(desc) {
    if (!desc || typeof desc.sdp !== "string") return desc;
    return new RTCSessionDescription({ type: desc.type, sdp: filterSdp(desc.sdp) });
  }

  class LoopbackPeerConnection extends RTCPeerConnection {
    #wrapped = new Map();

    #wrap(fn) {
      return (ev) => {
        const c = ev.candidate;
        if (c && c.candidate) {
          if (!loopbackCandidate(c.candidate)) {
            filtered.outbound += 1;
            return;
          }
          filtered.keptOutbound += 1;
        }
        return fn.call(this, ev);
      };
    }

    addEventListener(type, fn, opts) {
      if (type === "icecandidate" && typeof fn === "function") {
        const wrapped = this.#wrap(fn);
        this.#wrapped.set(fn, wrapped);
        return super.addEventListener(type, wrapped, opts);
      }
      return super.addEventListener(type, fn, opts);
    }

    removeEventListener(type, fn, opts) {
      if (type === "icecandidate" && this.#wrapped.has(fn)) {
        const wrapped = this.#wrapped.get(fn);
        this.#wrapped.delete(fn);
        return super.removeEventListener(type, wrapped, opts);
      }
      return super.removeEventListener(type, fn, opts);
    }

    set onicecandidate(fn) {
      super.onicecandidate = typeof fn === "function" ? this.#wrap(fn) : fn;
    }

    get onicecandidate() {
      return super.onicecandidate;
    }

    get localDescription() {
      return filterDescription(super.localDescription);
    }

    get currentLocalDescription() {
      return filterDescription(super.currentLocalDescription);
    }

    get pendingLocalDescription() {
      return filterDescription(super.pendingLocalDescription);
    }

    setRemoteDescription(desc) {
      if (desc && typeof desc.sdp === "string") {
        return super.setRemoteDescription({ type: desc.type, sdp: filterSdp(desc.sdp) });
      }
      return super.setRemoteDescription(desc);
    }

    addIceCandidate(c) {
      if (c && typeof c.candidate === "string" && c.candidate !== "" && !loopbackCandidate(c.candidate)) {
        filtered.inbound += 1;
        return Promise.resolve();
      }
      return super.addIceCandidate(c);
    }
  }

  // -- registries -------------------------------------------------------------------------------

  const H = {
    ready: false,
    sdk: SDK,
    peer: null,
    remotes: new Map(), // peerId -> RemotePeer (current)
    tracks: new Map(), // `${peerId}/${trackId}` -> MediaStreamTrack
    streams: new Map(), // `${peerId}/${streamId}` -> {stream, el}
    channels: new Map(), // `${peerId}/${label}` -> RTCDataChannel (latest)
    local: null, // {stream, metadata}
    filtered,
    audioContext: null,
  };

  function plainRemote(remote) {
    return { id: remote.id, state: remote.state, polite: remote.polite, metadata: remote.metadata ?? null };
  }

  function encodeData(data) {
    if (typeof data === "string") return data;
    if (data instanceof ArrayBuffer) {
      let bin = "";
      const bytes = new Uint8Array(data);
      for (let i = 0; i < bytes.length; i += 1) bin += String.fromCharCode(bytes[i]);
      return { b64: btoa(bin) };
    }
    return { unknown: String(data) };
  }

  function decodeData(data) {
    if (data && typeof data === "object" && typeof data.b64 === "string") {
      const bin = atob(data.b64);
      const bytes = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i += 1) bytes[i] = bin.charCodeAt(i);
      return bytes.buffer;
    }
    return data;
  }

  function wireChannel(peerId, channel, origin) {
    const key = `${peerId}/${channel.label}`;
    H.channels.set(key, channel);
    channel.binaryType = "arraybuffer";
    const base = () => ({ peer: peerId, label: channel.label, origin, id: channel.id });
    channel.addEventListener("open", () => report("dc-open", base()));
    channel.addEventListener("close", () => report("dc-close", base()));
    channel.addEventListener("message", (ev) => report("dc-message", { ...base(), data: encodeData(ev.data) }));
    if (channel.readyState === "open") report("dc-open", base());
  }

  function mediaElement(peerId, stream) {
    const key = `${peerId}/${stream.id}`;
    let entry = H.streams.get(key);
    if (!entry) {
      const el = document.createElement("video");
      el.muted = true;
      el.autoplay = true;
      el.playsInline = true;
      el.dataset.key = key;
      document.getElementById("media").appendChild(el);
      entry = { stream, el };
      H.streams.set(key, entry);
    }
    entry.stream = stream;
    entry.el.srcObject = stream;
    entry.el.play().catch((err) => report("play-error", { key, err: describeError(err) }));
    return entry;
  }

  function wireRemote(remote) {
    const peerId = remote.id;
    H.remotes.set(peerId, remote);
    remote.on("state-change", (ev) => report("remote-state", { peer: peerId, from: ev.from, to: ev.to }));
    remote.on("negotiation-error", (ev) => report("negotiation-error", { peer: peerId, err: describeError(ev.err) }));
    remote.on("ice-candidate-error", (ev) =>
      report("ice-candidate-error", { peer: peerId, err: describeError(ev.err) }),
    );
    remote.on("track", (ev) => {
      const track = ev.track;
      H.tracks.set(`${peerId}/${track.id}`, track);
      track.addEventListener("ended", () => report("track-ended", { peer: peerId, trackId: track.id }));
      report("track", {
        peer: peerId,
        trackId: track.id,
        kind: track.kind,
        streamIds: ev.streams.map((s) => s.id),
        metadata: ev.metadata ?? null,
      });
    });
    remote.on("stream-added", (ev) => {
      mediaElement(peerId, ev.stream);
      report("stream-added", {
        peer: peerId,
        streamId: ev.stream.id,
        metadata: ev.metadata ?? null,
        kinds: ev.stream.getTracks().map((t) => t.kind),
      });
    });
    remote.on("stream-removed", (ev) => report("stream-removed", { peer: peerId, streamId: ev.stream.id }));
    remote.on("data-channel", (ev) => {
      wireChannel(peerId, ev.channel, "remote");
      report("data-channel", { peer: peerId, label: ev.channel.label, id: ev.channel.id });
    });
    remote.on("connection-reset", () => report("connection-reset", { peer: peerId }));
  }

  function remoteOf(peerId) {
    const remote = H.remotes.get(peerId);
    if (!remote) throw new Error(`no remote peer ${peerId}`);
    return remote;
  }

  // -- commands (called from Python through the driver) ---------------------------------------

  // Chromium lists non-default local addresses (127.0.0.1 among them) to WebRTC only once the
  // page holds media permission; the fake UI grants it, so ask once and drop the tracks.
  async function unlockLocalAddresses() {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    stream.getTracks().forEach((t) => t.stop());
  }

  H.create = async ({ url, apiKey, token, options }) => {
    if (H.peer) throw new Error("a MeteredPeer already exists on this page");
    await unlockLocalAddresses();
    const opts = { url, ...(options || {}) };
    // Not an SDK option: the RTCConfiguration's iceTransportPolicy ("relay": TURN only).
    const policy = opts.iceTransportPolicy;
    delete opts.iceTransportPolicy;
    opts.rtcPeerConnectionFactory = (config) =>
      new LoopbackPeerConnection(policy ? { ...config, iceTransportPolicy: policy } : config);
    if (opts.logLevel) {
      // Not an SDK option: route the SDK's logger into events ("log").
      const levels = ["debug", "info", "warn", "error"];
      const min = levels.indexOf(opts.logLevel);
      delete opts.logLevel;
      const log = (level) => (msg, ctx) => {
        if (levels.indexOf(level) < min) return;
        let safe = null;
        try {
          safe = ctx === undefined ? null : JSON.parse(JSON.stringify(ctx));
        } catch (err) {
          safe = { unserialisable: String(err) };
        }
        report("log", { level, msg: String(msg), ctx: safe });
      };
      opts.logger = { debug: log("debug"), info: log("info"), warn: log("warn"), error: log("error") };
    }
    if (apiKey) opts.apiKey = apiKey;
    if (token) opts.tokenProvider = async () => token;
    const peer = new SDK.MeteredPeer(opts);
    H.peer = peer;
    peer.on("joined", (ev) => report("joined", ev));
    peer.on("left", (ev) => report("left", ev));
    peer.on("state-change", (ev) => report("state-change", ev));
    peer.on("error", (ev) => report("error", { err: describeError(ev.err) }));
    peer.on("data", (ev) =>
      report("data", {
        senderPeerId: ev.senderPeerId,
        data: ev.data,
        kind: ev.kind,
        senderMetadata: ev.senderMetadata ?? null,
      }),
    );
    peer.on("peer-joined", (ev) => {
      wireRemote(ev.peer);
      report("peer-joined", plainRemote(ev.peer));
    });
    peer.on("peer-left", (ev) => {
      if (H.remotes.get(ev.peer.id) === ev.peer) H.remotes.delete(ev.peer.id);
      report("peer-left", plainRemote(ev.peer));
    });
    return true;
  };

  H.join = async (channel, opts) => {
    await H.peer.join(channel, opts || {});
    return { peerId: H.peer.peerId, channel: H.peer.channel };
  };

  H.send = async (data) => {
    await H.peer.send(data);
    return true;
  };

  H.sendTo = async (peerId, data) => {
    await H.peer.sendTo(peerId, data);
    return true;
  };

  H.remoteSend = async (peerId, data) => {
    await remoteOf(peerId).send(data);
    return true;
  };

  H.close = async (reason) => {
    if (H.peer) await H.peer.close(reason);
    return true;
  };

  H.state = () => ({
    state: H.peer ? H.peer.state : null,
    peerId: H.peer ? H.peer.peerId : null,
    remotes: [...H.remotes.values()].map(plainRemote),
  });

  H.startMedia = async ({ audio = true, video = true, metadata = null, width = 320, height = 240 } = {}) => {
    const constraints = {
      audio: audio ? true : false,
      video: video ? { width: { ideal: width }, height: { ideal: height }, frameRate: { ideal: 15 } } : false,
    };
    const stream = await navigator.mediaDevices.getUserMedia(constraints);
    H.local = { stream, metadata };
    if (metadata) H.peer.addStream(stream, metadata);
    else H.peer.addStream(stream);
    return { streamId: stream.id, tracks: stream.getTracks().map((t) => ({ id: t.id, kind: t.kind })) };
  };

  H.openChannel = (peerId, label, init) => {
    const channel = remoteOf(peerId).pc.createDataChannel(label, init || {});
    wireChannel(peerId, channel, "local");
    return { label: channel.label };
  };

  H.dcSend = (peerId, label, data) => {
    const channel = H.channels.get(`${peerId}/${label}`);
    if (!channel) throw new Error(`no data channel ${label} with ${peerId}`);
    channel.send(decodeData(data));
    return true;
  };

  H.dcState = (peerId, label) => {
    const channel = H.channels.get(`${peerId}/${label}`);
    return channel ? channel.readyState : null;
  };

  H.videoInfo = (peerId, streamId) => {
    const entry = H.streams.get(`${peerId}/${streamId}`);
    if (!entry) return null;
    const el = entry.el;
    return {
      videoWidth: el.videoWidth,
      videoHeight: el.videoHeight,
      currentTime: el.currentTime,
      readyState: el.readyState,
      paused: el.paused,
      tracks: entry.stream.getTracks().map((t) => ({ id: t.id, kind: t.kind, readyState: t.readyState, muted: t.muted })),
    };
  };

  // Peak RMS of the stream's audio over `ms` milliseconds, measured with WebAudio.
  H.audioLevel = async (peerId, streamId, ms = 500) => {
    const entry = H.streams.get(`${peerId}/${streamId}`);
    if (!entry) return null;
    const track = entry.stream.getAudioTracks()[0];
    if (!track) return null;
    if (!H.audioContext) H.audioContext = new AudioContext();
    const ctx = H.audioContext;
    if (ctx.state !== "running") await ctx.resume();
    const source = ctx.createMediaStreamSource(new MediaStream([track]));
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 2048;
    source.connect(analyser);
    const buf = new Float32Array(analyser.fftSize);
    let peak = 0;
    const end = performance.now() + ms;
    while (performance.now() < end) {
      await new Promise((r) => setTimeout(r, 50));
      analyser.getFloatTimeDomainData(buf);
      let sum = 0;
      for (let i = 0; i < buf.length; i += 1) sum += buf[i] * buf[i];
      peak = Math.max(peak, Math.sqrt(sum / buf.length));
    }
    source.disconnect();
    return { rms: peak, contextState: ctx.state };
  };

  // RTP counters, the selected candidate pair and every candidate address, from getStats().
  H.rtpStats = async (peerId) => {
    const remote = H.remotes.get(peerId);
    if (!remote) return null;
    const stats = await remote.pc.getStats();
    const byId = new Map();
    stats.forEach((s) => byId.set(s.id, s));
    const out = { inbound: {}, outbound: {}, pair: null, localAddresses: [], remoteAddresses: [] };
    stats.forEach((s) => {
      if (s.type === "inbound-rtp") {
        const prev = out.inbound[s.kind] || { packetsReceived: 0, bytesReceived: 0, framesDecoded: 0 };
        out.inbound[s.kind] = {
          packetsReceived: prev.packetsReceived + (s.packetsReceived || 0),
          bytesReceived: prev.bytesReceived + (s.bytesReceived || 0),
          framesDecoded: prev.framesDecoded + (s.framesDecoded || 0),
          codec: s.codecId && byId.get(s.codecId) ? byId.get(s.codecId).mimeType : null,
        };
      } else if (s.type === "outbound-rtp") {
        const prev = out.outbound[s.kind] || { packetsSent: 0, bytesSent: 0 };
        out.outbound[s.kind] = {
          packetsSent: prev.packetsSent + (s.packetsSent || 0),
          bytesSent: prev.bytesSent + (s.bytesSent || 0),
          codec: s.codecId && byId.get(s.codecId) ? byId.get(s.codecId).mimeType : null,
        };
      } else if (s.type === "local-candidate") {
        out.localAddresses.push(s.address || s.ip || `<${s.candidateType}>`);
      } else if (s.type === "remote-candidate") {
        out.remoteAddresses.push(s.address || s.ip || `<${s.candidateType}>`);
      } else if (s.type === "transport" && s.selectedCandidatePairId) {
        const pair = byId.get(s.selectedCandidatePairId);
        if (pair) {
          const local = byId.get(pair.localCandidateId) || {};
          const remoteC = byId.get(pair.remoteCandidateId) || {};
          out.pair = {
            state: pair.state,
            localType: local.candidateType,
            remoteType: remoteC.candidateType,
            local: `${local.address || local.ip || `<${local.candidateType}>`}:${local.port}`,
            remote: `${remoteC.address || remoteC.ip || `<${remoteC.candidateType}>`}:${remoteC.port}`,
          };
        }
      }
    });
    return out;
  };

  H.filteredCandidates = () => ({ ...filtered });

  window.H = H;
  H.ready = true;
  report("page-ready", { sdk: Object.keys(SDK).sort() });
})();
