"""Inspecting a running server's tables: stale entries, and whether they are empty."""

from __future__ import annotations

import asyncio
import time

from metered_realtime.server.app import Server
from metered_realtime.server.hub import Conn


def stale_entries(node: Server) -> list[str]:
    """Entries of one node's hub that name a gone connection or disagree with each other.

    Safe to call at any moment: the hub is changed only by the event loop, between awaits.
    """
    hub = node.hub
    live = set(hub.conns.values())
    out: list[str] = []
    for conn_id, conn in hub.conns.items():
        if conn.id != conn_id or not conn.alive:
            out.append(f"hub.conns holds {conn!r} (alive={conn.alive})")
    for app in hub.apps.values():
        for peer_id, conn in app.peers.items():
            if conn not in live or conn.peer_id != peer_id:
                out.append(f"app {app.id} peers[{peer_id}] is gone or misfiled")
        for name, channel in app.channels.items():
            if channel.name != name or channel.app is not app:
                out.append(f"channel {name!r} misfiled")
            for conn, flag in channel.subs.items():
                if conn not in live:
                    out.append(f"channel {name!r} subs keeps gone {conn!r}")
                elif conn.subs.get(name) != flag:
                    out.append(f"channel {name!r} subs disagrees with {conn!r}.subs")
            for conn in channel.members:
                if conn not in live or conn not in channel.subs:
                    out.append(f"channel {name!r} members keeps {conn!r} (gone or unsubscribed)")
            for peer_id, member in channel.remote.items():
                if app.remote_peers.get(peer_id) is not member or channel not in member.channels:
                    out.append(f"channel {name!r} remote[{peer_id}] not in app.remote_peers")
            for conn, _ in channel.waiting or ():
                if not isinstance(conn, Conn):
                    out.append(f"channel {name!r} waiting holds {conn!r}")
        for peer_id, member in app.remote_peers.items():
            if not member.channels:
                out.append(f"app {app.id} remote_peers[{peer_id}] is in no channel")
            for channel in member.channels:
                if channel.remote.get(peer_id) is not member:
                    out.append(f"remote {peer_id} names a channel that does not list it")
    for conn in live:
        for name, flag in conn.subs.items():
            channel = conn.app.channels.get(name)
            if channel is None or channel.subs.get(conn) != flag:
                out.append(f"{conn!r}.subs[{name!r}] has no matching channel entry")
        if conn.sender_meta_subs != sum(conn.subs.values()):
            out.append(f"{conn!r}.sender_meta_subs is {conn.sender_meta_subs}")
    return out


def leftovers(node: Server) -> list[str]:
    """Whatever one node still holds once every client has gone."""
    hub = node.hub
    out = stale_entries(node)
    if hub.conns:
        out.append(f"hub.conns: {list(hub.conns.values())[:3]}")
    for app in hub.apps.values():
        if app.peers:
            out.append(f"app {app.id} peers: {list(app.peers)[:3]}")
        if app.channels:
            out.append(f"app {app.id} channels: {list(app.channels)[:3]}")
        if app.remote_peers:
            out.append(f"app {app.id} remote_peers: {list(app.remote_peers)[:3]}")
    # Expiry entries of gone connections are dropped lazily, at most 64 of them stay.
    if len(hub._expiries) > 64:
        out.append(f"hub._expiries: {len(hub._expiries)} entries")
    if node.broker is not None:
        cluster = node.broker.node
        if cluster._channels or cluster._syncs or cluster._directs:
            out.append(
                f"cluster: channels={list(cluster._channels)[:3]} syncs={list(cluster._syncs)[:3]}"
                f" directs={len(cluster._directs)}"
            )
    return [f"{node.node_id}: {entry}" for entry in out]


async def wait_empty(nodes: list[Server], timeout: float = 10.0) -> list[str]:
    """Poll until no node keeps anything (presence crosses Redis: give it a moment)."""
    end = time.monotonic() + timeout
    left = [entry for node in nodes for entry in leftovers(node)]
    while left and time.monotonic() < end:
        await asyncio.sleep(0.05)
        left = [entry for node in nodes for entry in leftovers(node)]
    return left
