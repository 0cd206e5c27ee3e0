"""rva capture: read a camera and XADD JPEG frames to camera:<id>.

Never exits on a lost camera or a lost Redis: it reopens/reconnects with backoff, keeps the
watchdog fed and says what it waits for in its systemd status line.

With several cameras configured and none named, one process captures them all, one thread per
camera (`run_all`): the watchdog is fed only while every camera's loop makes progress, and a
camera that is gone (reopened with backoff) holds up neither the others nor READY.

With the motion gate here (gear.motion_gate = "capture", the default), a frame of a still scene
is neither JPEG-encoded nor stored (rva.motion says which frames go); the frames kept back are
counted in rva:stats as motion_skipped, and each frame that goes carries its `motion`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Protocol

import cv2
import redis

from rva import keys
from rva.camera import Camera, NoCameraFound, SourceError, SourceUnusable, open_source
from rva.config import CameraSection, GearSection
from rva.connection import TRANSIENT, Backoff, connect, wait_for_redis
from rva.health import source_key
from rva.motion import MotionGate
from rva.ratelog import RateLimitedLog
from rva.redact import secrets
from rva.runtime import Runtime
from rva.services.capture.pacing import Pacer, Throttle
from rva.tally import Tally

log = logging.getLogger(__name__)
warn = RateLimitedLog(log)


class Readies(Protocol):
    def ready(self, status: str) -> None: ...


class Progress(Protocol):
    """What a capture loop reports to: the process's Runtime, or its camera's Lane."""

    stop: threading.Event

    @property
    def notifier(self) -> Readies: ...

    def tick(self, status: str | None = None) -> None: ...

    def beat(self, client: redis.Redis) -> None: ...


class Lane:
    """One camera's view of the process when several share it: the stop event and the heartbeat
    are the process's; progress and status are the camera's own, and `run_all` turns them into
    the watchdog pings and the status line of the whole service."""

    def __init__(self, runtime: Runtime, camera_id: str) -> None:
        self.runtime, self.camera_id = runtime, camera_id
        self.stop = runtime.stop
        self.last_tick = time.monotonic()
        self.state = "starting"
        self.is_ready = False

    @property
    def notifier(self) -> Lane:
        return self

    def ready(self, status: str) -> None:
        self.is_ready = True
        self.tick(status)

    def tick(self, status: str | None = None) -> None:
        self.last_tick = time.monotonic()
        if status is not None:
            self.state = status

    def beat(self, client: redis.Redis) -> None:
        self.runtime.beat(client)


class ResultFollower:
    """rate = "max": each frame is sent once the gears are done with the one before: when a
    worker says it will take the next (camera:<id>:next, once the model has run on it) or
    the result itself is written, whichever comes first; or after a timeout (a frame lost,
    the gears not running)."""

    def __init__(self, client: redis.Redis, camera_id: str, timeout_ms: int = 1000) -> None:
        self.client, self.timeout_ms = client, timeout_ms
        self.streams: dict[str, bytes | str] = {}
        for stream in (keys.results(camera_id), keys.next_frame(camera_id)):
            newest = client.xrevrange(stream, count=1)
            self.streams[stream] = newest[0][0] if newest else "0-0"
        self.waiting_for: tuple[int, int] | None = None  # the id of the frame sent last

    def sent(self, entry_id: bytes | str) -> None:
        self.waiting_for = keys.id_order(entry_id)

    def wait(self) -> None:
        if self.waiting_for is None:  # the first frame goes out at once
            return
        deadline = time.monotonic() + self.timeout_ms / 1000
        while (left_ms := int((deadline - time.monotonic()) * 1000)) > 0:
            reply = self.client.xread(self.streams, count=100, block=left_ms)
            if not reply:
                break
            done = False
            for stream, entries in reply:
                self.streams[stream.decode()] = entries[-1][0]
                for _entry, fields in entries:
                    ref = fields.get(b"ref")
                    done = done or ref is None or keys.id_order(ref) >= self.waiting_for
            if done:
                break
        self.waiting_for = None


class StillFrames:
    """Frames the motion gate kept back, added to rva:stats (motion_skipped) about once a second:
    one write a second on a still scene, not one a frame."""

    def __init__(self, client: redis.Redis, camera_id: str) -> None:
        self.client, self.field = client, f"{camera_id}:motion_skipped"
        self.pending, self.total, self.flushed_at = 0, 0, time.monotonic()

    def add(self) -> None:
        self.pending += 1
        self.total += 1
        if time.monotonic() - self.flushed_at >= 1.0:
            self.flush()

    def flush(self) -> None:
        self.flushed_at = time.monotonic()
        if self.pending:
            with contextlib.suppress(*TRANSIENT, redis.ResponseError):  # kept for the next try
                self.client.hincrby(keys.STATS, self.field, self.pending)
                self.pending = 0


class SourceReport:
    """Keeps camera:<id>:source (health.source_key) current: which source is configured, which
    camera is in use, and whether it captures, waits for a camera or cannot work. Written only
    when something changed; a lost Redis is noticed by the capture loop, not here."""

    def __init__(self, client: redis.Redis, camera_id: str, configured: str) -> None:
        # /healthz shows these without authentication: no URL's password (rva.redact).
        self.client, self.key = client, source_key(camera_id)
        self.configured = secrets(configured)
        self.last: tuple[str, str, str] | None = None

    def __call__(self, state: str, in_use: str = "", detail: str = "") -> None:
        if (state, in_use, detail) == self.last:
            return
        fields = {
            "configured": self.configured,
            "in_use": secrets(in_use),
            "state": state,
            "detail": secrets(detail),
            "since": f"{time.time():.3f}",
        }
        with contextlib.suppress(*TRANSIENT, redis.ResponseError):
            self.client.hset(self.key, mapping=fields)
            self.last = (state, in_use, detail)


def open_camera(camera: Camera, runtime: Progress, report: SourceReport | None = None) -> bool:
    """Open with backoff until it works or we are told to stop.

    A source that can never work here (SourceUnusable: picamera without picamera2) is not
    retried: it is logged, reported, and the loop idles until stopped, so systemd shows the
    reason in the status line instead of restarting the service forever. While ``auto`` finds
    no camera the service counts as started (READY), says so, and looks again with backoff."""

    def say(state: str, detail: str = "") -> None:
        if report is not None:
            report(state, camera.description if state == "capturing" else "", detail)

    backoff = Backoff(base=0.5, cap=30)
    announced = ""
    while not runtime.stop.is_set():
        try:
            camera.open()
        except SourceUnusable as exc:
            log.error("%s cannot work: %s", camera.description, exc)
            say("error", str(exc))
            runtime.notifier.ready(f"cannot capture: {exc}")
            while not runtime.stop.wait(1.0):
                runtime.tick()
            return False
        except NoCameraFound as exc:
            say("waiting", str(exc))
            if str(exc) != announced:
                log.warning("%s; looking again with backoff", exc)
                runtime.notifier.ready(str(exc))
                announced = str(exc)
            end = time.monotonic() + backoff.next_delay()
            while time.monotonic() < end and not runtime.stop.wait(
                min(1.0, end - time.monotonic())
            ):
                runtime.tick()
        except SourceError as exc:
            say("waiting", str(exc))
            runtime.tick(f"waiting for camera: {exc}")
            backoff.wait(str(exc), tick=runtime.tick, stop=runtime.stop)
        else:
            log.info("opened %s", camera.description)
            say("capturing")
            return True
    return False


def run(
    url: str,
    camera_id: str,
    cam: CameraSection,
    *,
    frames: int = 0,
    runtime: Progress | None = None,
    gate: GearSection | None = None,
) -> int:
    """Capture until stopped (or ``frames`` frames when > 0). Returns frames written.

    ``gate``: the gear settings when the motion gate runs here (see the module's doc)."""
    runtime = runtime or Runtime(f"capture:{camera_id}")
    client = connect(url, name=f"rva-capture:{camera_id}")
    if not wait_for_redis(client, tick=runtime.tick, stop=runtime.stop):
        return 0
    camera = open_source(
        cam.source, cam.width, cam.height, cam.fps, resize=cam.resize, camera_id=camera_id
    )
    report = SourceReport(client, camera_id, cam.source)
    if not open_camera(camera, runtime, report):
        return 0
    stream = keys.frames(camera_id)
    pace_fps = 0.0 if cam.rate == "max" else camera.native_fps or cam.fps
    pacer = Pacer(0.0 if camera.paced else pace_fps)
    # A live camera delivers at its own rate (an RTSP camera at 25 fps, a webcam that ignores
    # the rate asked for): keep cameras.<id>.fps of its frames.
    throttle = Throttle(cam.fps if camera.paced else 0.0)
    # rate = "max" on a file or image: send the next frame as soon as the gears are done with
    # the previous one, so the pipeline runs flat out without piling up frames it would skip.
    follow = ResultFollower(client, camera_id) if cam.rate == "max" and not camera.paced else None
    encode_params = [cv2.IMWRITE_JPEG_QUALITY, cam.jpeg_quality]
    motion = MotionGate.from_settings(gate) if gate is not None else None
    still = StillFrames(client, camera_id)
    # A still frame waits for no result: with rate = "max" on a file or image, still frames
    # are read at cameras.<id>.fps, not in a loop as fast as the CPU goes.
    still_pacer = pacer if pacer.period else Pacer(cam.fps)
    runtime.notifier.ready(f"capturing {camera.description} into {stream}")
    written, count, lost = 0, 0, 0
    redis_backoff, source_backoff = Backoff(), Backoff(base=0.5, cap=30)
    refused = Tally(client)  # frames Redis refused, counted in rva:errors once it can
    window_start, window_frames = time.monotonic(), 0
    try:
        while not runtime.stop.is_set() and not (frames and written >= frames):
            try:
                frame = camera.read()
                source_backoff.reset()
            except SourceError as exc:
                camera.close()
                report("waiting", "", f"{exc}; reopening")
                if source_backoff.wait(f"{exc}; reopening", tick=runtime.tick, stop=runtime.stop):
                    break
                if not open_camera(camera, runtime, report):
                    break
                continue
            if not throttle.admit():
                runtime.tick()
                continue
            fields: dict[str, str | int | bytes] = {"count": count}
            if motion is not None:
                decision = motion.admit(frame)
                if not decision.run:  # a still scene: no encode, no write
                    still.add()
                    count += 1
                    runtime.tick()
                    runtime.beat(client)
                    still_pacer.wait(runtime.tick, runtime.stop)
                    continue
                fields["motion"] = f"{decision.motion:.4f}"
            ok, jpeg = cv2.imencode(".jpg", frame, encode_params)
            if not ok:
                log.warning("JPEG encoding failed for frame %d; skipped", count)
                continue
            try:
                if follow:
                    follow.wait()
                fields["image"] = jpeg.tobytes()
                entry_id = client.xadd(stream, fields, maxlen=cam.maxlen, approximate=True)
                if follow:
                    follow.sent(entry_id)
                written += 1
                redis_backoff.reset()
                refused.flush()
            except TRANSIENT as exc:
                lost += 1
                runtime.tick(f"Redis unreachable, {lost} frames not stored")
                redis_backoff.wait(
                    f"XADD {stream} failed ({exc})", tick=runtime.tick, stop=runtime.stop
                )
                continue
            except redis.ResponseError as exc:  # memory full, cannot save: keep going, say it
                lost += 1
                refused.add(keys.ERRORS, f"{camera_id}:frames_refused")
                warn.error("xadd", "XADD %s refused, frame not stored: %s", stream, exc)
                runtime.tick(f"Redis refuses frames ({exc}); {lost} frames not stored")
            count += 1
            window_frames += 1
            now = time.monotonic()
            if now - window_start >= 5:
                fps = window_frames / (now - window_start)
                kept = f", {still.total} still" if motion is not None else ""
                runtime.tick(
                    f"{camera.description}: {fps:.1f} fps, {count} frames{kept}, {lost} lost"
                )
                window_start, window_frames = now, 0
            else:
                runtime.tick()
            runtime.beat(client)
            pacer.wait(runtime.tick, runtime.stop)
    finally:
        camera.close()
        still.flush()
    return written


def run_all(
    url: str,
    cameras: dict[str, CameraSection],
    *,
    frames: int = 0,
    runtime: Runtime,
    stale_after: float = 15.0,
    gate: GearSection | None = None,
) -> dict[str, int]:
    """Capture every camera, each in its own thread, until stopped (or each has written
    ``frames`` frames). Returns the frames written per camera.

    READY goes out when the first camera captures. The watchdog is fed while every camera's loop
    has reported within ``stale_after`` seconds (waiting for a lost camera or Redis counts: it
    ticks); a loop stuck in a read stops the feeding, and systemd restarts the service. A loop
    that fails stops the others, and the error is raised.
    """
    # OpenCV's work here (decode, the motion look, JPEG encode) is per frame and small: one
    # thread each, not a pool per camera competing with the detector for the cores.
    cv2.setNumThreads(1)
    lanes = {camera_id: Lane(runtime, camera_id) for camera_id in cameras}
    written: dict[str, int] = {}
    failures: list[BaseException] = []

    def capture(camera_id: str) -> None:
        try:
            written[camera_id] = run(
                url,
                camera_id,
                cameras[camera_id],
                frames=frames,
                runtime=lanes[camera_id],
                gate=gate,
            )
        except BaseException as exc:
            log.exception("camera %s: capture failed", camera_id)
            failures.append(exc)
            runtime.stop.set()

    threads = [
        threading.Thread(target=capture, args=(camera_id,), name=f"capture:{camera_id}")
        for camera_id in cameras
    ]
    for thread in threads:
        thread.start()
    ready, stale_before = False, set[str]()
    while any(thread.is_alive() for thread in threads):
        now = time.monotonic()
        status = "; ".join(f"camera {c}: {lane.state}" for c, lane in lanes.items())
        stale = {c for c, lane in lanes.items() if now - lane.last_tick > stale_after}
        if not ready and any(lane.is_ready for lane in lanes.values()):
            runtime.notifier.ready(status)
            ready = True
        if stale:
            if stale != stale_before:
                log.error(
                    "camera %s: no progress for %.0f s; the watchdog is no longer fed",
                    ", ".join(sorted(stale)),
                    stale_after,
                )
            runtime.notifier.status(f"camera {', '.join(sorted(stale))} stuck; {status}")
        else:
            runtime.tick(status)
        stale_before = stale
        for thread in threads:
            thread.join(timeout=0.5 / len(threads))
    if failures:
        raise failures[0]
    return written
