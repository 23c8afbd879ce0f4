#!/usr/bin/env python3
"""An IoT bridge: sensor readings on a channel, and a video file relayed as a camera.

* Telemetry: every ``--interval`` seconds a reading (``read_sensor()``, simulated here:
  replace it with your hardware) is published on the channel ``telemetry/<device>``
  with a :class:`SignallingClient`. Anyone subscribed to the channel receives it; nothing
  is stored (live, at-most-once delivery).
* Camera: a :class:`MeteredPeer` joins the room ``camera/<device>`` and publishes the
  video of ``--video`` (played in a loop, through ``from_file``) with the metadata
  ``{"role": "camera", "label": <device>}``. Every viewer who joins the room gets it
  over WebRTC. A real camera is ``from_camera()`` instead of ``from_file()``.

Viewers can send ``{"command": "ping"}`` to the bridge (direct or broadcast, in the
camera room); it answers with ``{"type": "pong", "device": ...}``.

Against the embedded server (prints the URL and key for viewers)::

    python examples/iot_bridge.py --server --video clip.mkv

or any server: ``--url``/``--key``, or the ``METERED_REALTIME_URL`` /
``METERED_REALTIME_KEY`` environment variables. Loop playback needs a file whose video
decoder holds no frames back (e.g. H.264 encoded with ``-tune zerolatency``, VP8, MJPEG):
see ``from_file``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import signal
import sys
import time
from typing import Any

from metered_realtime import Data, MeteredPeer, PeerJoined, PeerLeft, SignallingClient
from metered_realtime.demo import (
    add_connection_arguments,
    example_connection,
    loopback_requested,
    restrict_ice_to_loopback,
)
from metered_realtime.errors import MeteredRealtimeError
from metered_realtime.media import from_file


def log(text: str) -> None:
    print(f"bridge: {text}", flush=True)


def read_sensor(seq: int) -> dict[str, Any]:
    """One reading. Simulated: a slow temperature wave plus noise. Replace with hardware."""
    return {
        "temperature_c": round(21.0 + 2.0 * math.sin(seq / 20) + random.uniform(-0.1, 0.1), 2),
        "humidity_pct": round(45.0 + random.uniform(-1.0, 1.0), 1),
    }


async def publish_telemetry(
    client: SignallingClient, channel: str, device: str, interval: float, count: int
) -> None:
    """Publish ``count`` readings (0: until cancelled), ``interval`` seconds apart."""
    seq = 0
    while count == 0 or seq < count:
        reading = {"device": device, "seq": seq, "ts": round(time.time(), 3), **read_sensor(seq)}
        try:
            await client.publish(channel, reading)
        except MeteredRealtimeError as err:  # e.g. while reconnecting: this reading is lost
            log(f"reading {seq} not sent: {type(err).__name__}")
        else:
            log(f"published reading {seq} on {channel}: {reading['temperature_c']} C")
        seq += 1
        await asyncio.sleep(interval)  # the sampling period
    log(f"published {seq} readings")


def relay_camera(peer: MeteredPeer, video: str, device: str) -> Any:
    """Play ``video`` in a loop as the room's camera; returns the player (caller stops it)."""
    player = from_file(video, loop=True)
    if player.video is None:
        raise SystemExit(f"{video} has no video stream")
    peer.add_track(player.video, metadata={"role": "camera", "label": device})
    return player


async def run(args: argparse.Namespace) -> int:
    telemetry_channel = f"telemetry/{args.device}"
    camera_room = f"camera/{args.device}"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)

    async with example_connection(args, log) as (url, key), contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(SignallingClient(api_key=key, url=url))
        log(f"telemetry on {telemetry_channel} as {client.peer_id}")
        telemetry = asyncio.ensure_future(
            publish_telemetry(client, telemetry_channel, args.device, args.interval, args.count)
        )
        stack.callback(telemetry.cancel)

        peer = MeteredPeer(api_key=key, url=url)
        stack.push_async_callback(peer.close)
        if args.video:
            player = relay_camera(peer, args.video, args.device)
            stack.callback(player.video.stop)
            log(f"camera: {args.video} in room {camera_room}")

        @peer.on(PeerJoined)
        def on_viewer(ev: PeerJoined) -> None:
            log(f"viewer joined: {ev.peer.id}")

        @peer.on(PeerLeft)
        def on_viewer_left(ev: PeerLeft) -> None:
            log(f"viewer left: {ev.peer.id}")

        @peer.on(Data)
        async def on_command(ev: Data) -> None:
            if isinstance(ev.data, dict) and ev.data.get("command") == "ping":
                await peer.send_to(ev.sender_peer_id, {"type": "pong", "device": args.device})

        await peer.join(camera_room)
        log(f"joined {camera_room} as {peer.peer_id}")
        waiters = [asyncio.ensure_future(stop.wait()), telemetry]
        timeout = args.duration or None
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        waiters[0].cancel()
    log("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Sensor telemetry and a camera relay.")
    add_connection_arguments(parser)
    parser.add_argument("--loopback", action="store_true", help="keep WebRTC on 127.0.0.1")
    parser.add_argument("--device", default="sensor-1")
    parser.add_argument("--video", help="video file to relay as the camera")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between readings")
    parser.add_argument("--count", type=int, default=0, help="readings to send, then stop")
    parser.add_argument("--duration", type=float, default=0, help="stop after N s (0: Ctrl-C)")
    args = parser.parse_args(argv)
    if args.interval <= 0:
        parser.error("--interval must be positive")
    if loopback_requested(args.loopback):
        restrict_ice_to_loopback()
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
