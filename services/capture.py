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
    pace_fps = 0.0 if cam.rate == "max" else getattr(camera, "file_fps", 0.0) or cam.fps
    pacer = Pacer(0.0 if camera.paced else pace_fps)
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
