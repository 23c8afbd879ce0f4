"""Presence frames always fit the SDKs' 1 MiB inbound cap (docs/self-hosting.md, "Presence
limits"): a full presence channel refuses the next presence subscribe, and big deltas (or, in
a cluster race, big snapshots) are split over several frames.

Before this rule a room of about 260 members with 4 KiB peer metadata sent a snapshot over
1 MiB; the SDKs closed with 1009, reconnected, got the same snapshot, and so on forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.server.wire import Wire
from websockets.exceptions import ConnectionClosed

from metered_realtime import (
    Disconnected,
    Presence,
    ServerRequestError,
    SignallingClient,
)
from metered_realtime.protocol import (
    PublishFrame,
    SubscribeFrame,
    UnsubscribeFrame,
    dumps,
    to_wire_bytes,
)
from metered_realtime.protocol.limits import CLIENT_INBOUND_FRAME_CAP
from metered_realtime.server.auth import ChannelScope, Principal
from metered_realtime.server.config import MAX_PRESENCE_BUDGET, ServerConfig
from metered_realtime.server.hub import Conn, Hub

CAP = CLIENT_INBOUND_FRAME_CAP
META = {"x": "a" * 4088}  # 4,096 bytes as compact JSON: the largest peer metadata allowed
ALL = ("subscribe", "publish", "presence", "send")


def utf16_units(raw: bytes) -> int:
    """What the JavaScript SDK compares with its cap: the decoded text's UTF-16 length."""
    return len(raw.decode("utf-8").encode("utf-16-le", "surrogatepass")) // 2


class Frames:
    """A sink keeping every connection's frames as raw bytes, in order."""

    def __init__(self) -> None:
        self.raw: dict[str, list[bytes]] = defaultdict(list)
        self.closed: dict[str, int] = {}

    def send(self, conn: Conn, payload: bytes) -> None:
        self.raw[conn.peer_id].append(payload)

    def fanout(self, conns: Iterable[Conn], payload: bytes) -> None:
        for conn in conns:
            self.raw[conn.peer_id].append(payload)

    def close(self, conn: Conn, code: int, reason: str) -> None:
        self.closed[conn.peer_id] = code

    def take(self, peer_id: str) -> list[dict[str, Any]]:
        """The frames ``peer_id`` got since the last take, decoded."""
        frames = [json.loads(raw) for raw in self.raw[peer_id]]
        self.raw[peer_id] = []
        return frames

    def all_within_cap(self) -> None:
        for raw_frames in self.raw.values():
            for raw in raw_frames:
                assert len(raw) <= CAP and utf16_units(raw) <= CAP


class Bus:
    """A cluster bus that goes nowhere: the test plays the other node."""

    node = "n0aa"

    def publish(self, *args: Any) -> None: ...

    def presence(self, *args: Any) -> None: ...

    def watch(self, app_id: str, channel: str) -> None: ...

    def unwatch(self, app_id: str, channel: str) -> None: ...

    def direct(self, *args: Any) -> bool:
        return False


def principal(meta: dict[str, Any] | None = META, perms: Iterable[str] = ALL) -> Principal:
    return Principal("app", frozenset(perms), ChannelScope(["*"]), peer_metadata=meta)


def pid(i: int, node: str = "p") -> str:
    return f"{node}{i:0{20 - len(node)}d}"  # 20 characters, like the server's peer ids


def join(hub: Hub, i: int, now: float, channel: str = "room", **kw: Any) -> Conn:
    conn = hub.connect(pid(i), principal(**kw), None, now)
    assert isinstance(conn, Conn)
    hub.receive(conn, SubscribeFrame(channel, f"s{i}"), now)
    return conn


def ids(entries: list[dict[str, Any]]) -> list[str]:
    return [e["peerId"] for e in entries]


def entry_cost(peer_id: str, meta: dict[str, Any] | None = META) -> int:
    entry: dict[str, Any] = {"peerId": peer_id}
    if meta is not None:
        entry["metadata"] = meta
    return len(to_wire_bytes(dumps(entry))) + 1


# --- the numbers -------------------------------------------------------------------------


def test_default_budget_and_its_validation() -> None:
    assert ServerConfig().presence_budget == MAX_PRESENCE_BUDGET == CAP - 4096 == 1_044_480
    # 4 KiB peer metadata: 4,142 bytes per member, so 252 members; none: 34 bytes, 30,720.
    assert MAX_PRESENCE_BUDGET // entry_cost(pid(0)) == 252
    assert MAX_PRESENCE_BUDGET // entry_cost(pid(0), None) == 30_720
    with pytest.raises(ValueError):
        ServerConfig(presence_budget=MAX_PRESENCE_BUDGET + 1)
    with pytest.raises(ValueError):  # must hold one member with the largest metadata
        ServerConfig(presence_budget=4096)
    ServerConfig(presence_budget=4096 + 256)


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(codec=None, exclude_categories=())))
def test_utf16_length_never_exceeds_the_utf8_bytes(text: str) -> None:
    # Why a bound in UTF-8 bytes also bounds what the JavaScript SDK measures.
    raw = to_wire_bytes(dumps({"peerId": "p", "metadata": {"s": text}}))
    assert utf16_units(raw) <= len(raw)


# --- the pure hub ------------------------------------------------------------------------


def test_full_presence_channel_refuses_only_that_subscribe() -> None:
    sink = Frames()
    hub = Hub(ServerConfig(), sink)
    now = 0.0
    members = [join(hub, i, now) for i in range(252)]
    hub.tick(now := now + 1)
    for m in members:
        sink.take(m.peer_id)

    late = hub.connect(pid(900), principal(), None, now)
    assert isinstance(late, Conn)
    sink.take(late.peer_id)
    hub.receive(late, SubscribeFrame("room", "full"), now)
    assert sink.take(late.peer_id) == [
        {
            "type": "error",
            "code": "channel_limit_exceeded",
            "requestId": "full",
            "message": "presence channel full",
        }
    ]
    hub.tick(now := now + 1)
    assert all(sink.take(m.peer_id) == [] for m in members)  # nobody heard of it
    assert late.alive and not late.subs
    # Its other channels work, and so does the room for a member that wants no presence.
    hub.receive(late, SubscribeFrame("other", "o"), now)
    assert sink.take(late.peer_id) == [
        {"type": "ack", "requestId": "o"},
        {"type": "presence", "channel": "other", "joined": [], "left": []},
    ]
    quiet = join(hub, 901, now, perms=("subscribe", "publish"))
    assert sink.take(quiet.peer_id)[1:] == [{"type": "ack", "requestId": "s901"}]
    hub.receive(members[0], PublishFrame("room", "hi", "m"), now)
    assert sink.take(quiet.peer_id)[0]["data"] == "hi"
    # A member re-subscribing is no newcomer: it gets its snapshot.
    hub.receive(members[1], SubscribeFrame("room", "again"), now)
    again = sink.take(members[1].peer_id)
    assert again[-2] == {"type": "ack", "requestId": "again"}
    assert len(again[-1]["joined"]) == 251
    # Once someone leaves there is room again.
    hub.receive(members[2], UnsubscribeFrame("room", "u"), now)
    hub.receive(late, SubscribeFrame("room", "now"), now)
    got = sink.take(late.peer_id)
    assert got[0] == {"type": "ack", "requestId": "now"}
    assert len(got[1]["joined"]) == 251 and len(got) == 2
    sink.all_within_cap()
    assert not sink.closed


def test_refused_subscribe_leaves_no_channel_behind() -> None:
    sink = Frames()
    hub = Hub(ServerConfig(presence_budget=4096 + 256), sink)
    big = {"x": "a" * 4088}
    huge = join(hub, 0, 0.0, meta=big | {"y": "b" * 300})  # over the budget alone
    assert sink.take(huge.peer_id)[-1]["code"] == "channel_limit_exceeded"
    assert "room" not in hub.apps["app"].channels


def test_joins_and_leaves_in_one_window_past_the_cap_arrive_split() -> None:
    sink = Frames()
    hub = Hub(ServerConfig(presence_window=0.05), sink)
    now = 0.0
    watcher = join(hub, 0, now, meta=None)
    old = [join(hub, i, now) for i in range(1, 251)]
    hub.tick(now := now + 1)
    sink.take(watcher.peer_id)
    # Within one window everybody old leaves and as many newcomers join: about 2 MB of change.
    for conn in old:
        hub.disconnect(conn, now)
    new = [join(hub, i, now) for i in range(1000, 1250)]
    hub.tick(now := now + 1)
    frames = sink.take(watcher.peer_id)
    assert len(frames) >= 2
    joined = [p for f in frames for p in ids(f["joined"])]
    left = [p for f in frames for p in ids(f["left"])]
    assert sorted(joined) == sorted(c.peer_id for c in new)
    assert sorted(left) == sorted(c.peer_id for c in old)
    assert len(set(joined) | set(left)) == len(joined) + len(left)  # each peer once
    sink.all_within_cap()


def test_remote_burst_past_the_cap_arrives_split_and_snapshots_split_too() -> None:
    """In a cluster, other nodes' members are counted as they arrive, never refused: a
    delta of joins, and even a snapshot, can exceed the cap. Both are split."""
    sink = Frames()
    hub = Hub(ServerConfig(presence_window=0.05), sink, Bus())
    now = 0.0
    watcher = hub.connect(pid(0, "n0aa"), principal(None), None, now)
    assert isinstance(watcher, Conn)
    hub.receive(watcher, SubscribeFrame("room", "w"), now)
    hub.sync_done("app", "room", now)
    assert sink.take(watcher.peer_id)[1:] == [
        {"type": "ack", "requestId": "w"},
        {"type": "presence", "channel": "room", "joined": [], "left": []},
    ]
    remote = [pid(i, "n1bb") for i in range(400)]  # 1.66 MB of entries, in one window
    for peer in remote:
        entry = dumps({"peerId": peer, "metadata": META})
        hub.remote_presence("app", "room", True, peer, entry, now)
    hub.tick(now := now + 1)
    frames = sink.take(watcher.peer_id)
    assert len(frames) == 2
    assert all(f["left"] == [] and f["channel"] == "room" for f in frames)
    assert [p for f in frames for p in ids(f["joined"])] == remote
    assert all(f["joined"][0]["metadata"] == META for f in frames)

    # The channel is over its budget: a local presence subscribe is refused ...
    late = hub.connect(pid(1, "n0aa"), principal(), None, now)
    assert isinstance(late, Conn)
    hub.receive(late, SubscribeFrame("room", "late"), now)
    assert sink.take(late.peer_id)[-1]["code"] == "channel_limit_exceeded"
    # ... but a member's re-subscribe gets the whole snapshot: its first frame, then the
    # rest as joined-only deltas, every one within the cap.
    hub.receive(watcher, SubscribeFrame("room", "again"), now)
    frames = sink.take(watcher.peer_id)
    assert frames[0] == {"type": "ack", "requestId": "again"}
    assert len(frames) == 3 and all(f["left"] == [] for f in frames[1:])
    assert [p for f in frames[1:] for p in ids(f["joined"])] == remote
    sink.all_within_cap()
    assert not sink.closed


def test_non_ascii_and_lone_surrogate_metadata_make_valid_frames() -> None:
    """Entries are joined as bytes: one with a lone surrogate (escaped as ASCII) does not
    change how the others are written, and every frame stays valid UTF-8 JSON."""
    sink = Frames()
    hub = Hub(ServerConfig(), sink)
    metas = [{"n": "é中"}, {"n": "\U0001f600"}, {"n": "\ud800"}, None]
    conns = [join(hub, i, 0.0, meta=m) for i, m in enumerate(metas)]
    late = join(hub, 9, 0.0, meta=None)
    hub.tick(1.0)
    snapshot = json.loads(sink.raw[late.peer_id][-1])
    assert [e.get("metadata") for e in snapshot["joined"]] == metas
    for raw_frames in sink.raw.values():
        for raw in raw_frames:
            json.loads(raw.decode("utf-8"))
    assert b"\xc3\xa9" in sink.raw[late.peer_id][-1]  # é kept as raw UTF-8
    seen = [
        p for f in sink.take(conns[0].peer_id) if f["type"] == "presence" for p in ids(f["joined"])
    ]
    assert seen == [c.peer_id for c in [*conns[1:], late]]


# --- a real server -----------------------------------------------------------------------


class Reader:
    """Drains one raw connection, measuring every frame the way both SDKs do."""

    def __init__(self, wire: Wire) -> None:
        self.wire = wire
        self.frames: list[dict[str, Any]] = []
        self.view: set[str] = set()
        self.largest = 0
        self.changed = asyncio.Event()
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in self.wire.ws:
                assert isinstance(raw, str)
                data = raw.encode("utf-8")
                self.largest = max(self.largest, len(data), utf16_units(data))
                frame = json.loads(raw)
                if frame["type"] == "presence":
                    self.view |= set(ids(frame["joined"]))
                    self.view -= set(ids(frame["left"]))
                self.frames.append(frame)
                self.changed.set()

    async def until(self, cond: Any, timeout: float = 10.0) -> None:
        async def wait() -> None:
            while not cond():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), timeout)

    async def subscribe(self, rid: str) -> dict[str, Any]:
        """Subscribe to ``room``; the answer (ack or error) that carries ``rid``."""
        start = len(self.frames)
        await self.wire.send({"type": "subscribe", "channel": "room", "requestId": rid})

        def answer() -> dict[str, Any] | None:
            for frame in self.frames[start:]:
                if frame.get("requestId") == rid:
                    return frame
            return None

        await self.until(lambda: answer() is not None)
        found = answer()
        assert found is not None
        return found


async def test_room_past_the_budget_refuses_the_next_member_and_keeps_working(
    server_factory: Any,
) -> None:
    async with server_factory() as srv:
        token = srv.mint(peer_metadata=META)  # one token serves every member
        readers: list[Reader] = []

        async def add() -> dict[str, Any]:
            reader = Reader(await Wire.open(srv.token_url(token), max_size=4 * CAP))
            readers.append(reader)
            answer = await reader.subscribe(f"s{len(readers)}")
            # The first two members are on different nodes of a cluster: once both saw a
            # join, both nodes have counted it, so admission never races in this test.
            for w in readers[:2]:
                if w is not reader:
                    await w.until(lambda w=w: reader.wire.peer_id in w.view)
            return answer

        assert (await add())["type"] == "ack"
        room = MAX_PRESENCE_BUDGET // entry_cost(readers[0].wire.peer_id)
        assert room == 252
        while len(readers) < room:
            answer = await add()
            assert answer["type"] == "ack", (len(readers), answer)

        # The next member with presence: a clear error, and its connection stays open.
        sdk = SignallingClient(token_provider=lambda: token, url=srv.url)
        drops = sdk.events(Disconnected)
        presence = sdk.events(Presence)
        await sdk.connect()
        with pytest.raises(ServerRequestError) as info:
            await sdk.subscribe("room")
        assert (info.value.code, info.value.server_message) == (
            "channel_limit_exceeded",
            "presence channel full",
        )
        await sdk.subscribe("elsewhere")
        assert (await asyncio.wait_for(presence.__anext__(), 5)).channel == "elsewhere"
        late = Reader(await Wire.open(srv.token_url(token), max_size=4 * CAP))
        assert await late.subscribe("late") == {
            "type": "error",
            "code": "channel_limit_exceeded",
            "requestId": "late",
            "message": "presence channel full",
        }

        # The members keep working: a message reaches them, and a leave frees a place.
        await readers[5].wire.send(
            {"type": "publish", "channel": "room", "data": "still here", "requestId": "p"}
        )
        for w in readers[:2]:
            await w.until(lambda w=w: any(f.get("data") == "still here" for f in w.frames))
        leaver = readers.pop(7)
        await leaver.wire.close()
        for w in readers[:2]:
            await w.until(lambda w=w: leaver.wire.peer_id not in w.view)
        await sdk.subscribe("room")
        snapshot = await asyncio.wait_for(presence.__anext__(), 5)
        assert snapshot.channel == "room" and len(snapshot.joined) == room - 1
        assert sdk.state == "connected" and drops.qsize() == 0
        await sdk.close()
        await late.wire.close()

        for reader in readers:
            assert reader.largest <= CAP
            await reader.wire.close()
        assert max(r.largest for r in readers) > 1_000_000  # the room really was that big
