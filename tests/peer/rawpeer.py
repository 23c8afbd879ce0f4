"""A browser-like remote for MeteredPeer tests: a plain aiortc connection driven by the test.

It joins the room with its own SignallingClient and speaks the JS SDK's wire conventions the way a
browser does: its connection does not negotiate a data channel up front (the SCTP section only appears once it creates a channel), and it can send
its descriptions without candidates and trickle them afterwards as ``RTCIceCandidateInit``
objects (``candidate:...``, ``sdpMid``, ``sdpMLineIndex``, ``usernameFragment``), ending with
``null``. Nothing here is automatic: each step is a call the test makes.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from metered_realtime.events import Direct, Presence
from metered_realtime.signalling import SignallingClient


def split_candidates(sdp: str) -> tuple[str, list[dict[str, Any]]]:
    """Strip candidates from ``sdp`` as a trickling browser would send it.

    Returns the bare description (``m=`` ports 9, ``c=IN IP4 0.0.0.0``, no ``a=candidate``
    nor ``a=end-of-candidates``) and the candidates as browser ``toJSON()`` objects.
    """
    out: list[str] = []
    found: list[dict[str, Any]] = []
    index = -1
    mid: str | None = None
    ufrag: str | None = None
    pending: list[str] = []

    def flush() -> None:
        for text in pending:
            found.append(
                {
                    "candidate": f"{text} generation 0 ufrag {ufrag} network-id 1",
                    "sdpMid": mid,
                    "sdpMLineIndex": index,
                    "usernameFragment": ufrag,
                }
            )
        pending.clear()

    for line in sdp.replace("\r\n", "\n").split("\n"):
        if line.startswith("m="):
            flush()
            index += 1
            mid = None
            parts = line.split(" ")
            parts[1] = "9"
            out.append(" ".join(parts))
            continue
        if line.startswith("c=IN IP4 ") and index >= 0:
            out.append("c=IN IP4 0.0.0.0")
            continue
        if line.startswith("a=mid:"):
            mid = line[len("a=mid:") :]
        elif line.startswith("a=ice-ufrag:"):
            ufrag = line[len("a=ice-ufrag:") :]
        elif line.startswith("a=candidate:"):
            pending.append(line[2:])
            continue
        elif line == "a=end-of-candidates":
            continue
        out.append(line)
    flush()
    return "\r\n".join(out), found


class RawPeer:
    """One plain aiortc RTCPeerConnection towards one MeteredPeer, over the real server."""

    def __init__(self, server: Any) -> None:
        self.client = SignallingClient(api_key=server.api_key, url=server.url)
        self.pc = RTCPeerConnection(configuration=RTCConfiguration(iceServers=[]))
        self.target: str | None = None
        self.sent: list[dict[str, Any]] = []
        self._signals: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    @property
    def peer_id(self) -> str:
        assert self.client.peer_id is not None
        return self.client.peer_id

    async def join(self, channel: str, target: str, timeout: float = 10.0) -> None:
        """Join ``channel`` and wait until ``target`` (a MeteredPeer's id) is a member."""

        def on_direct(ev: Direct) -> None:
            data = ev.data
            if (
                ev.sender_peer_id == self.target
                and isinstance(data, dict)
                and data.get("type") in ("rtc-description", "rtc-ice")
            ):
                self._signals.put_nowait(data)

        self.client.on(Direct, on_direct)
        seen = asyncio.Event()

        def on_presence(ev: Presence) -> None:
            if any(p.peer_id == target for p in ev.joined):
                seen.set()

        self.client.on(Presence, on_presence)
        await asyncio.wait_for(self.client.connect(), timeout)
        await asyncio.wait_for(self.client.subscribe(channel), timeout)
        await asyncio.wait_for(seen.wait(), timeout)
        self.target = target

    async def _send(self, data: dict[str, Any]) -> None:
        assert self.target is not None
        self.sent.append(data)
        await self.client.send(self.target, data)

    async def _send_description(self, trickle: bool) -> None:
        desc = self.pc.localDescription
        text = desc.sdp
        candidates: list[dict[str, Any]] = []
        if trickle:
            text, candidates = split_candidates(text)
        await self._send(
            {"type": "rtc-description", "description": {"type": desc.type, "sdp": text}}
        )
        for cand in candidates:
            await self._send({"type": "rtc-ice", "candidate": cand})
        await self._send({"type": "rtc-ice", "candidate": None})

    async def next_description(self, kind: str, timeout: float = 15.0) -> str:
        """The next description of ``kind`` from the target (its null markers skipped)."""

        async def scan() -> str:
            for _ in range(1000):
                data = await self._signals.get()
                desc = data.get("description")
                if isinstance(desc, dict) and desc.get("type") == kind:
                    return str(desc["sdp"])
            raise AssertionError(f"no {kind} from the target")

        return await asyncio.wait_for(scan(), timeout)

    async def offer(self, *, trickle: bool = False, timeout: float = 15.0) -> str:
        """Offer, wait for the answer and apply it; returns the answer SDP."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        await self._send_description(trickle)
        answer = await self.next_description("answer", timeout)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        return answer

    async def answer(self, *, trickle: bool = False, timeout: float = 15.0) -> str:
        """Wait for an offer from the target and answer it; returns the offer SDP."""
        offer = await self.next_description("offer", timeout)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        await self._send_description(trickle)
        return offer

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.pc.close(), 5)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.close(), 5)
