"""A storm of random and mutated frames against a running server (one node, and a 2-node
cluster over Redis: ``tests/server/conftest.py`` runs this file on both).

Twenty connections send random bytes, random text, truncated JSON, wrong types, numbers no
double holds, NaN, runaway nesting, valid frames with odd fields, oversize data and frames,
invalid UTF-8 and floods, for a bounded time. Then:

- no connection was ever closed with 1011, and every close code is the one the spec names
  for what that connection sent (1009 oversize, 4011 flood, 1007 invalid UTF-8 text as
  RFC 6455 requires); a connection that sent nothing of the kind was never closed;
- every frame the server wrote is a text frame of valid JSON of a known server type that
  the SDK decoder accepts; every request with a valid ``requestId`` got exactly one answer
  carrying it (checked on every connection that ended normally), and no answer names an
  id that was never sent;
- the server logged no error, still serves a well-behaved client (connect, subscribe,
  publish and receive its own message, ping/pong; across nodes in the cluster), and after
  everyone has gone the hub's tables (and the cluster's) are empty.

The frames come from ``random.Random(seed)``: set ``STORM_SEED`` to replay a run (the seed
and the counts are printed; run with ``-s`` to see them). ``STORM_SECONDS`` sets the
length of the storm (default 8 s per server).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import random
import time
from collections import Counter
from typing import Any

from tests.server.tables import wait_empty
from tests.server.wire import Wire
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from metered_realtime.protocol import ERROR_CODES, Malformed, decode_server_frame

WORKERS = 20
STORM_SECONDS = float(os.environ.get("STORM_SECONDS", "8"))
SERVER_TYPES = {"welcome", "ack", "error", "message", "direct", "presence", "going_away", "pong"}
MAX = 65536
CHANNELS = [f"room-{i}" for i in range(12)] + ["é-ü", "\U0001f600", "c" * 256, "tenant/42/x"]
ODD_CHANNELS = ["", "c" * 257, "a\u0007b", "a\u0085", "_metered/x", "_SYSTEM/y", 7, None, ["a"]]
# What the server may close a connection with, for what it sent.
CLOSE_FOR = {"oversize_data": 1009, "oversize_frame": 1009, "bad_utf8": 1007, "flood": 4011}


def valid_rid(value: object) -> bool:
    return isinstance(value, str) and 1 <= len(value) <= 128


@dataclasses.dataclass
class Case:
    """One thing to put on the wire: frames, the request ids that must be answered, and
    the close it must cause (None: the connection must stay open)."""

    name: str
    frames: list[str | bytes | tuple[str, bytes]]
    answered: list[str] = dataclasses.field(default_factory=list)
    closes: str | None = None


class Storm:
    """The random source of cases, shared knowledge of live peer ids, and the tallies."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.peers: dict[int, str] = {}
        self.cases: Counter[str] = Counter()
        self.frames = 0
        self.closes: Counter[int | str] = Counter()
        self.sessions = 0

    def value(self, rng: random.Random, depth: int = 0) -> Any:
        """A random JSON value (finite numbers, any text but lone surrogates)."""
        pick = rng.randrange(9 if depth < 3 else 6)
        if pick == 0:
            return None
        if pick == 1:
            return rng.random() < 0.5
        if pick == 2:
            return rng.randint(-(2**70), 2**70)
        if pick == 3:
            return rng.uniform(-1e300, 1e300) if rng.random() < 0.5 else rng.random()
        if pick in (4, 5):
            return "".join(
                chr(rng.choice([rng.randrange(32, 127), rng.randrange(0xA0, 0xD7FF), 0x1F600]))
                for _ in range(rng.randrange(12))
            )
        if pick in (6, 7):
            return [self.value(rng, depth + 1) for _ in range(rng.randrange(4))]
        return {f"k{i}": self.value(rng, depth + 1) for i in range(rng.randrange(4))}

    def case(self, rng: random.Random, me: int, rid: str) -> Case:
        roll = rng.random()
        other = self.peers.get(rng.randrange(WORKERS), "nobody")
        if roll < 0.06:
            return Case("binary", [rng.randbytes(rng.randrange(1, 64))])
        if roll < 0.12:
            text = "".join(
                chr(
                    rng.choice(
                        [
                            rng.randrange(0, 0xD7FF),
                            rng.randrange(0xE000, 0x10FFFF),
                            ord(rng.choice('{}[]":,')),
                        ]
                    )
                )
                for _ in range(rng.randrange(1, 40))
            )
            return Case("random_text", [text])
        if roll < 0.20:
            frame = json.dumps(
                {
                    "type": "publish",
                    "channel": rng.choice(CHANNELS),
                    "data": self.value(rng),
                    "requestId": rid,
                }
            )
            return Case("truncated", [frame[: rng.randrange(len(frame))]])
        if roll < 0.32:
            obj: dict[str, Any] = {"requestId": rid}
            for key in ("type", "channel", "to", "data", "includeSenderMetadata"):
                if rng.random() < 0.6:
                    obj[key] = rng.choice(
                        [
                            self.value(rng),
                            rng.choice(ODD_CHANNELS),
                            "subscribe",
                            "publish",
                            "send",
                            "ping",
                            "unsubscribe",
                            "nope",
                            other,
                        ]
                    )
            if rng.random() < 0.15:
                obj["requestId"] = rng.choice([7, "", "x" * 129, None, ["r"]])
            keys = list(obj)
            rng.shuffle(keys)
            obj = {k: obj[k] for k in keys}
            answered = [obj["requestId"]] if valid_rid(obj.get("requestId")) else []
            return Case("wrong_types", [json.dumps(obj)], answered)
        if roll < 0.40:
            token = rng.choice(
                [
                    "NaN",
                    "Infinity",
                    "-Infinity",
                    "1e400",
                    "-1E+999",
                    "1.5e309",
                    "1" + "0" * 400,
                    "1e-400",
                    "-0.0",
                ]
            )
            where = rng.choice(["data", "nested", "extra"])
            body = {"data": token, "nested": '{"a":[1,' + token + "]}", "extra": token}[where]
            kind = rng.choice(["publish", "send"])
            head = (
                '{"type":"publish","channel":"room-1"'
                if kind == "publish"
                else '{"type":"send","to":' + json.dumps(other)
            )
            field = "data" if where != "extra" else 'data":1,"extra'
            text = head + ',"' + field + '":' + body + ',"requestId":"' + rid + '"}'
            return Case("numbers", [text], [rid])
        if roll < 0.46:
            opener, closer = rng.choice([("[", "]"), ('{"k":', "}")])
            # As deep as fits in a frame the server reads (a bigger one is oversize: 1009).
            depth = rng.randrange(500, 60000 // (len(opener) + len(closer)))
            deep = opener * depth + "0" + closer * depth
            if rng.random() < 0.5:
                text = (
                    '{"requestId":"'
                    + rid
                    + '","type":"publish","channel":"room-2","data":'
                    + deep
                    + "}"
                )
            else:
                text = (
                    '{"type":"publish","data":'
                    + deep
                    + ',"channel":"room-2","requestId":"'
                    + rid
                    + '"}'
                )
            return Case("deep", [text], [rid])
        if roll < 0.985:
            return self.valid_odd(rng, rid, other, me)
        # Exactly at the cap is fine (sent to oneself, so that no fan-out of 64 KiB frames
        # makes a storm client a slow consumer).
        data = "x" * (MAX - 2)
        frame = json.dumps({"type": "send", "to": self.peers[me], "data": data, "requestId": rid})
        return Case("at_the_cap", [frame], [rid])

    def closing(self, rng: random.Random, me: int) -> Case:
        """Something the server must answer by closing the connection."""
        roll = rng.random()
        if roll < 0.3:  # data one byte or more over maxMessageSize
            data = "x" * (MAX - 1 + rng.randrange(100))
            frame = json.dumps({"type": "send", "to": self.peers[me], "data": data})
            return Case("oversize_data", [frame], closes="oversize_data")
        if roll < 0.5:  # a frame beyond maxMessageSize + 4096 of envelope room
            return Case(
                "oversize_frame",
                ["x" * (MAX + 4097 + rng.randrange(1000))],
                closes="oversize_frame",
            )
        if roll < 0.7:
            return Case(
                "bad_utf8", [("text", b'{"type":"ping","x":"\xff\xfe"}')], closes="bad_utf8"
            )
        return Case("flood", ['{"type":"ping"}'] * 1000, closes="flood")

    def valid_odd(self, rng: random.Random, rid: str, other: str, me: int) -> Case:
        """A valid frame, with unknown fields, odd but legal values and real targets."""
        kind = rng.choice(
            ["subscribe", "subscribe", "unsubscribe", "publish", "publish", "send", "send", "ping"]
        )
        obj: dict[str, Any] = {"type": kind, "requestId": rid}
        if kind in ("subscribe", "unsubscribe", "publish"):
            obj["channel"] = rng.choice(CHANNELS)
        if kind == "subscribe" and rng.random() < 0.5:
            obj["includeSenderMetadata"] = rng.random() < 0.7
        if kind in ("publish", "send"):
            obj["data"] = self.value(rng)
        if kind == "send":
            obj["to"] = rng.choice([other, other, self.peers.get(me, "nobody"), "nobody"])
        for _ in range(rng.randrange(3)):
            obj[rng.choice(["x", "meta", "__proto__", "constructor", "type2"])] = self.value(rng)
        text = json.dumps(obj, ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, None, 1]))
        return Case("valid_" + kind, [text], [rid])


@dataclasses.dataclass
class Session:
    """One connection's record."""

    ws: ClientConnection
    expect: Counter[str] = dataclasses.field(default_factory=Counter)
    replies: Counter[str] = dataclasses.field(default_factory=Counter)
    sent_rids: set[str] = dataclasses.field(default_factory=set)
    frames: int = 0
    closing_case: str | None = None
    checked: bool = False
    problems: list[str] = dataclasses.field(default_factory=list)


async def read(session: Session) -> None:
    """Check every frame the server writes; collect the answers by requestId."""
    try:
        async for raw in session.ws:
            if not isinstance(raw, str):
                session.problems.append(f"binary frame from the server: {raw[:50]!r}")
                continue
            session.frames += 1
            try:
                frame = json.loads(raw, parse_constant=lambda name: 1 / 0)
            except (ValueError, ZeroDivisionError):
                session.problems.append(f"not strict JSON: {raw[:100]}")
                continue
            if not isinstance(frame, dict) or frame.get("type") not in SERVER_TYPES:
                session.problems.append(f"unknown frame: {raw[:100]}")
                continue
            if isinstance(decode_server_frame(raw), Malformed):
                session.problems.append(f"the SDK would drop: {raw[:100]}")
            kind = frame["type"]
            if kind == "error" and frame.get("code") not in ERROR_CODES:
                session.problems.append(f"unknown error code: {raw[:100]}")
            if kind in ("ack", "error", "pong") and "requestId" in frame:
                session.replies[frame["requestId"]] += 1
    except ConnectionClosed:
        pass


async def worker(srv: Any, storm: Storm, me: int, deadline: float) -> list[str]:
    """Sessions back to back until the deadline; returns the problems found."""
    rng = random.Random(f"{storm.seed}-{me}")
    problems: list[str] = []
    n = 0
    loop = asyncio.get_running_loop()
    while loop.time() < deadline:
        ws = await connect(srv.key_url(), ping_interval=None, max_size=2**20, compression=None)
        welcome = json.loads(await ws.recv())
        assert welcome["type"] == "welcome", welcome
        storm.peers[me] = welcome["peerId"]
        storm.sessions += 1
        session = Session(ws)
        reader = asyncio.ensure_future(read(session))
        length = rng.randrange(10, 80)
        try:
            for _ in range(length):
                if loop.time() >= deadline or reader.done():
                    break
                n += 1
                case = storm.case(rng, me, f"w{me}-{n}")
                storm.cases[case.name] += 1
                for frame in case.frames:
                    await ws.send(frame)
                    storm.frames += 1
                session.expect.update(case.answered)
                session.sent_rids.add(f"w{me}-{n}")
                await asyncio.sleep(rng.uniform(0.002, 0.03))
            # Every request so far must be answered before the answer to this ping.
            n += 1
            await ws.send(f'{{"type":"ping","requestId":"w{me}-{n}"}}')
            session.expect[f"w{me}-{n}"] += 1
            session.sent_rids.add(f"w{me}-{n}")
            for _ in range(500):
                if session.replies[f"w{me}-{n}"] or reader.done():
                    break
                await asyncio.sleep(0.02)
            session.checked = True
            missing = [rid for rid in session.expect if not session.replies[rid]]
            if missing:
                problems.append(f"w{me}: no answer to {missing[:5]}")
            if rng.random() < 0.4:
                case = storm.closing(rng, me)
                storm.cases[case.name] += 1
                session.closing_case = case.closes
                for frame in case.frames:
                    if isinstance(frame, tuple):  # bytes that claim to be text
                        await ws.send(frame[1], text=True)
                    else:
                        await ws.send(frame)
                    storm.frames += 1
            else:
                await ws.close()
        except ConnectionClosed:
            pass
        await asyncio.wait_for(reader, 15)
        rcvd = ws.protocol.close_rcvd
        code: int | str = rcvd.code if rcvd is not None else "no close frame"
        storm.closes[code] += 1
        problems += [f"w{me}: {p}" for p in session.problems]
        wanted = CLOSE_FOR.get(session.closing_case or "", 1000)
        if code != wanted:
            problems.append(f"w{me}: closed {code}, expected {wanted} after {session.closing_case}")
        unknown = set(session.replies) - session.sent_rids
        if unknown:
            problems.append(f"w{me}: answers to ids never sent: {sorted(unknown)[:5]}")
        doubled = [rid for rid, k in session.replies.items() if k > 1]
        if doubled:
            problems.append(f"w{me}: answered more than once: {doubled[:5]}")
        if not session.checked:
            problems.append(f"w{me}: the session ended before its requests were checked")
    return problems


async def well_behaved(srv: Any) -> None:
    """What a real SDK does, on every node, and across nodes."""
    clients = [await Wire.open(srv.key_url()) for _ in srv.nodes]
    known: dict[str, set[str]] = {}
    for i, client in enumerate(clients):
        snapshot = await client.subscribe("after-the-storm", rid=f"s{i}")
        known[client.peer_id] = {client.peer_id, *snapshot}
        assert await client.request({"type": "ping", "requestId": "p"}) == {
            "type": "pong",
            "requestId": "p",
        }
    seen = {c.peer_id for c in clients}
    for client in clients:  # everyone learns of everyone (snapshot, then deltas)
        while known[client.peer_id] != seen:
            frame = await client.recv()
            assert frame["type"] == "presence", frame
            known[client.peer_id] |= {e["peerId"] for e in frame["joined"]}
    first = clients[0]
    await first.send(
        {"type": "publish", "channel": "after-the-storm", "data": {"ok": 1}, "requestId": "m"}
    )
    got = [await first.recv(), await first.recv()]
    assert {"type": "ack", "requestId": "m"} in got
    message = {
        "type": "message",
        "channel": "after-the-storm",
        "from": first.peer_id,
        "data": {"ok": 1},
    }
    assert message in got
    for other in clients[1:]:  # the other node's subscriber gets it too
        assert await other.recv() == message
    for client in clients:
        await client.close()


async def test_storm_of_hostile_frames_leaves_the_server_sound(server_factory, caplog):
    seed = int(os.environ.get("STORM_SEED", random.randrange(2**32)))
    storm = Storm(seed)
    caplog.set_level(logging.WARNING)
    async with server_factory() as srv:
        deadline = asyncio.get_running_loop().time() + STORM_SECONDS
        started = time.monotonic()
        results = await asyncio.gather(*(worker(srv, storm, i, deadline) for i in range(WORKERS)))
        took = time.monotonic() - started
        print(
            f"\nstorm seed={seed} ({len(srv.nodes)} node(s)): {storm.frames} frames in "
            f"{sum(storm.cases.values())} cases over {storm.sessions} sessions, {took:.1f} s; "
            f"close codes {dict(storm.closes)}; cases {dict(sorted(storm.cases.items()))}"
        )
        problems = Counter(p for r in results for p in r)
        assert not problems, f"seed {seed}: " + "\n".join(
            f"{k} (x{n})" for k, n in problems.most_common(30)
        )
        assert 1011 not in storm.closes
        for node in srv.nodes:
            assert 1011 not in node.hub.stats.closes
        await well_behaved(srv)
        left = await wait_empty(srv.nodes)
        assert not left, f"seed {seed}: tables keep entries of gone connections: {left}"
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert not errors, (
            f"seed {seed}: the server logged errors: {[r.getMessage() for r in errors[:5]]}"
        )
        assert storm.frames >= 1000, "the storm was too small to mean anything"
