"""rva capture: read a camera and XADD JPEG frames to camera:<id>.

Never exits on a lost camera or a lost Redis: it reopens/reconnects with backoff, keeps the
watchdog fed and says what it waits for in its systemd status line.
"""

from __future__ import annotations

import logging
import time

import cv2
import redis

from rva import keys
from rva.config import CameraSection
from rva.connection import TRANSIENT, Backoff, connect, wait_for_redis
from rva.runtime import Runtime
from rva.services.sources import Camera, Pacer, SourceError, open_source

log = logging.getLogger(__name__)


class ResultFollower:
    """Blocks until the results stream has grown past what was seen (or a timeout passes)."""

    def __init__(self, client: redis.Redis, stream: str, timeout_ms: int = 1000) -> None:
        self.client, self.stream, self.timeout_ms = client, stream, timeout_ms
        newest = client.xrevrange(stream, count=1)
        self.last: bytes | str = newest[0][0] if newest else "0-0"
        self.primed = False

    def wait(self) -> None:
        if not self.primed:  # the first frame goes out at once
            self.primed = True
            return
        reply = self.client.xread({self.stream: self.last}, count=100, block=self.timeout_ms)
        if reply:
            self.last = reply[0][1][-1][0]


def open_camera(camera: Camera, runtime: Runtime) -> bool:
    """Open with backoff until it works or we are told to stop."""
    backoff = Backoff(base=0.5, cap=30)
    while not runtime.stop.is_set():
        try:
            camera.open()
            log.info("opened %s", camera.description)
            return True
        except SourceError as exc:
            runtime.tick(f"waiting for camera: {exc}")
            backoff.wait(str(exc), tick=runtime.tick)
    return False


def run(
    url: str,
    camera_id: str,
    cam: CameraSection,
    *,
    frames: int = 0,
    runtime: Runtime | None = None,
) -> int:
    """Capture until stopped (or ``frames`` frames when > 0). Returns frames written."""
    runtime = runtime or Runtime(f"capture:{camera_id}")
    client = connect(url, name=f"rva-capture:{camera_id}")
    wait_for_redis(client, tick=runtime.tick)
    camera = open_source(cam.source, cam.width, cam.height, cam.fps, resize=cam.resize)
    if not open_camera(camera, runtime):
        return 0
    stream = keys.frames(camera_id)
    pace_fps = 0.0 if cam.rate == "max" else camera.native_fps or cam.fps
    pacer = Pacer(0.0 if camera.paced else pace_fps)
    # rate = "max" on a file or image: send the next frame as soon as the gears have answered
    # the previous one, so the pipeline runs flat out without piling up frames it would skip.
    follow = (
        ResultFollower(client, keys.results(camera_id))
        if cam.rate == "max" and not camera.paced
        else None
    )
    encode_params = [cv2.IMWRITE_JPEG_QUALITY, cam.jpeg_quality]
    runtime.notifier.ready(f"capturing {camera.description} into {stream}")
    written, count, lost = 0, 0, 0
    redis_backoff, source_backoff = Backoff(), Backoff(base=0.5, cap=30)
    window_start, window_frames = time.monotonic(), 0
    try:
        while not runtime.stop.is_set() and not (frames and written >= frames):
            try:
                frame = camera.read()
                source_backoff.reset()
            except SourceError as exc:
                camera.close()
                source_backoff.wait(f"{exc}; reopening", tick=runtime.tick)
                if not open_camera(camera, runtime):
                    break
                continue
            ok, jpeg = cv2.imencode(".jpg", frame, encode_params)
            if not ok:
                log.warning("JPEG encoding failed for frame %d; skipped", count)
                continue
            try:
                if follow:
                    follow.wait()
                client.xadd(
                    stream,
                    {"count": count, "image": jpeg.tobytes()},
                    maxlen=cam.maxlen,
                    approximate=True,
                )
                written += 1
                redis_backoff.reset()
            except TRANSIENT as exc:
                lost += 1
                runtime.tick(f"Redis unreachable, {lost} frames not stored")
                redis_backoff.wait(f"XADD {stream} failed ({exc})", tick=runtime.tick)
                continue
            except redis.ResponseError as exc:  # e.g. OOM: keep going, say it
                lost += 1
                log.error("XADD %s refused: %s", stream, exc)
            count += 1
            window_frames += 1
            now = time.monotonic()
            if now - window_start >= 5:
                fps = window_frames / (now - window_start)
                runtime.tick(f"{camera.description}: {fps:.1f} fps, {count} frames, {lost} lost")
                window_start, window_frames = now, 0
            else:
                runtime.tick()
            runtime.beat(client)
            pacer.wait()
    finally:
        camera.close()
    return written
