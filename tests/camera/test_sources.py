"""Camera sources: which implementation a source string picks, and how each behaves."""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from rva.camera import SourceError, open_source
from rva.camera.gstreamer import GstCamera, jetson_csi_pipeline
from rva.camera.opencv import OpenCVCamera, StillImage
from rva.camera.picamera import PiCamera
from rva.services.capture.pacing import Pacer, Throttle


@pytest.mark.parametrize(
    ("source", "cls", "kind"),
    [
        ("picamera", PiCamera, None),
        ("picamera:1", PiCamera, None),
        ("0", OpenCVCamera, "v4l2"),
        ("/dev/video2", OpenCVCamera, "v4l2"),
        ("rtsp://cam.local/stream", OpenCVCamera, "stream"),
        ("http://10.0.0.5:8080/video", OpenCVCamera, "stream"),
        ("jetson-csi", GstCamera, None),
        ("gst:videotestsrc ! videoconvert ! appsink", GstCamera, None),
        ("/srv/footage/lobby.mp4", OpenCVCamera, "file"),
        ("/srv/stills/door.JPG", StillImage, None),
    ],
)
def test_source_string_picks_the_implementation(source: str, cls: type, kind: str | None) -> None:
    camera = open_source(source, 640, 480, 15)
    assert isinstance(camera, cls)
    if kind:
        assert camera.kind == kind  # type: ignore[attr-defined]


def test_jetson_csi_pipeline_asks_argus_for_the_configured_mode() -> None:
    pipeline = jetson_csi_pipeline(1, 1280, 720, 30)
    assert pipeline.startswith("nvarguscamerasrc sensor-id=1 ")
    assert "width=1280,height=720,framerate=30/1" in pipeline
    assert pipeline.endswith("appsink drop=true max-buffers=1")


def test_video_file_loops_at_the_end(vtest_path: Path) -> None:
    with open_source(str(vtest_path), 640, 480, 10) as camera:
        first = camera.read()
        for _ in range(794):
            camera.read()
        again = camera.read()  # frame 795 does not exist: back to frame 0
    assert first.shape == (576, 768, 3)
    assert np.array_equal(first, again)


def test_resize_scales_files_to_the_configured_size(vtest_path: Path) -> None:
    with open_source(str(vtest_path), 320, 240, 10, resize=True) as camera:
        assert camera.read().shape == (240, 320, 3)


def test_still_image_repeats_and_missing_sources_raise(tmp_path: Path) -> None:
    still = tmp_path / "still.png"
    cv2.imwrite(str(still), np.full((48, 64, 3), 200, dtype=np.uint8))
    with open_source(str(still), 640, 480, 5) as camera:
        assert camera.read().shape == (48, 64, 3)
        assert camera.read().mean() == pytest.approx(200)
    with pytest.raises(SourceError, match="cannot read image"):
        open_source(str(tmp_path / "gone.png"), 640, 480, 5).open()
    with pytest.raises(SourceError, match="video file not found"):
        open_source(str(tmp_path / "gone.mp4"), 640, 480, 5).open()


def test_pi_camera_without_picamera2_says_what_to_install() -> None:
    pytest.importorskip("cv2")
    try:
        import picamera2  # noqa: F401

        pytest.skip("picamera2 is installed here")
    except ImportError:
        pass
    with pytest.raises(SourceError, match="apt install python3-picamera2"):
        open_source("picamera", 640, 480, 15).open()


class _StallingCamera:
    """A network camera that accepts connections, sends ``frames`` MJPEG frames (none: not even
    the HTTP response), then goes silent with the connection still open: a hung RTSP/HTTP
    camera as FFmpeg sees it."""

    def __init__(self, frames: int) -> None:
        self.frames = frames
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(4)
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/video"
        self.connections: list[socket.socket] = []
        self.jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), 128, np.uint8))[1].tobytes()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.server.accept()
                self.connections.append(conn)
                conn.recv(4096)
                if not self.frames:
                    continue
                conn.sendall(
                    b"HTTP/1.0 200 OK\r\n"
                    b"Content-Type: multipart/x-mixed-replace; boundary=frame\r\n\r\n"
                )
                for _ in range(self.frames):
                    conn.sendall(
                        b"--frame\r\nContent-Type: image/jpeg\r\n"
                        + f"Content-Length: {len(self.jpeg)}\r\n\r\n".encode()
                        + self.jpeg
                        + b"\r\n"
                    )

    def close(self) -> None:
        for conn in self.connections:
            conn.close()
        self.server.close()


def _within(seconds: float, fn: Callable[[], object]) -> BaseException | object:
    """fn()'s result or exception, failing the test if it is still blocked after ``seconds``."""
    outcome: list[object] = []

    def call() -> None:
        try:
            outcome.append(fn())
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(seconds)
    assert outcome, f"still blocked after {seconds} s"
    return outcome[0]


def test_a_stream_that_goes_silent_is_given_up_rather_than_waited_on_forever() -> None:
    # Bounded below FFmpeg's own 30 s (which the services' watchdog would hit first).
    silent = _StallingCamera(frames=0)
    try:
        camera = open_source(silent.url, 64, 48, 10.0)
        outcome = _within(25, camera.open)
        assert isinstance(outcome, SourceError), outcome
    finally:
        silent.close()
    stalling = _StallingCamera(frames=3)
    try:
        camera = open_source(stalling.url, 64, 48, 10.0)
        camera.open()
        assert camera.read().shape == (48, 64, 3)
        outcome = _within(25, lambda: [camera.read() for _ in range(10)])
        assert isinstance(outcome, SourceError), outcome
        camera.close()
    finally:
        stalling.close()


def test_throttle_keeps_the_configured_rate_of_a_faster_live_source() -> None:
    throttle = Throttle(10.0)
    arrivals = [i * 0.04 for i in range(250)]  # a 25 fps camera for 10 s
    kept = [t for t in arrivals if throttle.admit(t)]
    assert len(kept) == 100
    assert min(b - a for a, b in itertools.pairwise(kept)) > 0.079
    # After a stall (no frames for 3 s) it does not burst to catch up.
    after = [10.0 + 3.0 + i * 0.04 for i in range(25)]
    kept_after = [t for t in after if throttle.admit(t)]
    assert len(kept_after) == 10
    # 0: every frame.
    assert all(Throttle(0.0).admit(t) for t in arrivals)


def test_a_long_pacing_period_keeps_the_watchdog_fed_and_stops_promptly() -> None:
    pacer = Pacer(1 / 3600)  # one frame an hour
    ticks: list[float] = []
    stop = threading.Event()
    threading.Timer(2.5, stop.set).start()
    waiter = threading.Thread(target=pacer.wait, args=(lambda: ticks.append(1.0), stop))
    waiter.start()
    waiter.join(30)
    assert not waiter.is_alive(), "the wait ignored stop"
    assert len(ticks) >= 2  # at least once a second while it waited
