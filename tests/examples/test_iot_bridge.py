"""examples/iot_bridge.py: readings on a channel, a video file relayed as a camera."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from metered_realtime import Data, Message, MeteredPeer, PeerJoined, SignallingClient, Track
from metered_realtime.media import VideoFrameSink

av = pytest.importorskip("av")
np = pytest.importorskip("numpy")


def write_clip(path: Path, frames: int = 60) -> None:
    """A tiny H.264 mkv (160x120, 30 fps), written with PyAV; zerolatency so it loops."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30, options={"tune": "zerolatency"})
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for i in range(frames):
            image = np.full((120, 160, 3), (0, 120 + i, 60), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


@pytest.mark.timeout(60)
async def test_bridge_publishes_readings_and_relays_the_camera(
    server: Any, run_example: Any, tmp_path: Path
) -> None:
    clip = tmp_path / "camera.mkv"
    write_clip(clip)
    async with SignallingClient(api_key=server.api_key, url=server.url) as dashboard:
        readings = dashboard.events(Message, maxsize=0)
        await dashboard.subscribe("telemetry/sensor-1")
        async with run_example(
            "iot_bridge.py",
            "--url",
            server.url,
            "--key",
            server.api_key,
            "--video",
            str(clip),
            "--interval",
            "0.1",
        ) as bridge:
            bridge_id = (await bridge.expect(r"joined camera/sensor-1 as (\S+)", 20)).group(1)

            async def three_readings() -> list[dict[str, Any]]:
                got: list[dict[str, Any]] = []
                async for ev in readings:
                    assert ev.channel == "telemetry/sensor-1"
                    got.append(ev.data)
                    if len(got) == 3:
                        return got
                raise AssertionError("stream ended")

            got = await asyncio.wait_for(three_readings(), 10)
            seqs = [r["seq"] for r in got]
            assert seqs == sorted(seqs) and len(set(seqs)) == 3
            for r in got:
                assert r["device"] == "sensor-1"
                assert 15 < r["temperature_c"] < 30 and 0 <= r["humidity_pct"] <= 100

            viewer = MeteredPeer(api_key=server.api_key, url=server.url)
            loop = asyncio.get_running_loop()
            camera: asyncio.Future[Track] = loop.create_future()
            pong: asyncio.Future[Any] = loop.create_future()

            @viewer.on(PeerJoined)
            def on_peer(ev: PeerJoined) -> None:
                if ev.peer.id == bridge_id:
                    ev.peer.on(Track, lambda t: camera.done() or camera.set_result(t))

            @viewer.on(Data)
            def on_data(ev: Data) -> None:
                if isinstance(ev.data, dict) and ev.data.get("type") == "pong":
                    pong.done() or pong.set_result(ev.data)

            try:
                await asyncio.wait_for(viewer.join("camera/sensor-1"), 10)
                track_ev = await asyncio.wait_for(camera, 20)
                assert track_ev.track.kind == "video"
                assert track_ev.metadata == {"role": "camera", "label": "sensor-1"}
                async with VideoFrameSink(track_ev.track) as frames:
                    frame = await frames.wait_frame(timeout=20)
                    assert (frame.width, frame.height) == (160, 120)
                    green = frames.latest_array()[60, 80, 1]
                    assert green > 100  # the clip's colour, through H.264 twice
                await bridge.expect(r"viewer joined: ", 5)
                await viewer.send_to(bridge_id, {"command": "ping"})
                assert (await asyncio.wait_for(pong, 10)) == {"type": "pong", "device": "sensor-1"}
            finally:
                await asyncio.wait_for(viewer.close(), 10)
            assert await bridge.interrupt() == 0
            assert "bridge: stopped" in bridge.output


@pytest.mark.timeout(60)
async def test_bridge_with_its_embedded_server_stops_after_count(run_example: Any) -> None:
    async with run_example("iot_bridge.py", "--server", "--count", "3", "--interval", "0.05") as b:
        await b.expect(r"embedded server: url ws://127\.0\.0\.1:\d+ key \S+")
        await b.expect(r"published 3 readings", 20)
        await b.expect(r"bridge: stopped", 20)
        assert await asyncio.wait_for(b.proc.wait(), 10) == 0
