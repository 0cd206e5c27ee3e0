"""source = "auto" and sources that cannot work, without camera hardware.

What a real device answers is replaced only at the two edges auto reads: VIDIOC_QUERYCAP on
/dev/video* nodes (a fake query function over a directory of empty files) and picamera2's
camera list (a fake picamera2 module). Everything behind them is the real code: the choice,
the hot-plug re-check, the capture loop against a real Redis, /healthz's snapshot, `rva status`
and `rva config check`. The real V4L2 path (vivid) runs in the booted arm64 image
(tests/image/test_arm64.py).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from rva import config, health, keys
from rva.camera import (
    AutoCamera,
    Candidate,
    NoCameraFound,
    SourceError,
    SourceUnusable,
    open_source,
    picamera,
    sources,
    v4l2,
)
from rva.camera.v4l2 import (
    V4L2_CAPABILITY,
    VIDIOC_QUERYCAP,
    VideoDevice,
    query_v4l2,
    v4l2_cameras,
    video_nodes,
)
from rva.config import CameraSection, ConfigError
from rva.services.capture import service as capture
from rva.tools import status
from tests.conftest import RedisServer, wait_for

PICAMERA2_HERE = importlib.util.find_spec("picamera2") is not None


# -- V4L2 devices --------------------------------------------------------------------------------
def test_the_querycap_request_matches_linux_videodev2() -> None:
    # _IOR('V', 0, struct v4l2_capability): 104 bytes, as <linux/videodev2.h> defines it.
    assert V4L2_CAPABILITY.size == 104
    assert VIDIOC_QUERYCAP == 0x80685600


def test_video_nodes_are_listed_in_numeric_order(tmp_path: Path) -> None:
    for name in ("video10", "video2", "video0", "videox", "media0", "video1-meta"):
        (tmp_path / name).touch()
    assert video_nodes(tmp_path) == [str(tmp_path / n) for n in ("video0", "video2", "video10")]


def test_a_node_that_cannot_be_opened_is_named_in_the_status(tmp_path: Path) -> None:
    node = tmp_path / "video0"
    node.mkdir()  # cannot be opened for writing, even by root (EACCES/EPERM on a real node)
    (tmp_path / "video1").touch()  # opens, but is no V4L2 device: skipped without a word
    problems: list[str] = []
    assert v4l2_cameras(tmp_path, problems=problems) == []
    assert problems == [f"{node}: Is a directory"]


def test_what_auto_could_not_open_is_part_of_its_no_camera_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "video0").touch()

    def denied(path: str, problems: list[str]) -> None:
        problems.append(f"{path}: Operation not permitted")  # the device cgroup said no

    monkeypatch.setattr(v4l2, "query_v4l2", denied)
    found, notes = sources.find_cameras(dev=tmp_path)
    assert found == [] and notes[-1] == f"{tmp_path / 'video0'}: Operation not permitted"


def test_a_node_that_is_no_v4l2_device_is_skipped(tmp_path: Path) -> None:
    plain = tmp_path / "video0"
    plain.write_bytes(b"")
    assert query_v4l2(str(plain)) is None  # the ioctl fails with ENOTTY
    assert query_v4l2(str(tmp_path / "video9")) is None  # gone (unplugged)
    assert v4l2_cameras(tmp_path) == []


def _fake_devices(tmp_path: Path, devices: dict[str, tuple[str, bool]]) -> Callable:
    """Empty files as /dev/video* nodes, and what VIDIOC_QUERYCAP would say about each."""
    answers = {}
    for name, (driver, capture_) in devices.items():
        (tmp_path / name).touch()
        path = str(tmp_path / name)
        answers[path] = VideoDevice(path, driver, f"{driver} card", "platform:x", capture_)
    return lambda path, problems: answers.get(path)


def test_v4l2_capture_devices_skip_metadata_nodes_and_the_pis_own_camera_pipeline(
    tmp_path: Path,
) -> None:
    query = _fake_devices(
        tmp_path,
        {
            "video0": ("unicam", True),  # CSI receiver: raw Bayer, for libcamera only
            "video13": ("bcm2835-isp", True),
            "video20": ("pispbe", True),
            "video10": ("bcm2835-codec", False),  # memory-to-memory, no capture
            "video2": ("uvcvideo", True),  # a USB webcam
            "video3": ("uvcvideo", False),  # its metadata node
            "video4": ("vivid", True),
        },
    )
    found = v4l2_cameras(tmp_path, query)
    assert [Path(d.path).name for d in found] == ["video2", "video4"]


# -- libcamera (CSI) through picamera2 ----------------------------------------------------------
def _fake_picamera2(monkeypatch: pytest.MonkeyPatch, cameras: list[dict]) -> None:
    """picamera2 and libcamera as importable modules whose Picamera2 lists ``cameras``."""
    for name in ("picamera2", "libcamera"):
        module = types.ModuleType(name)
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)
        monkeypatch.setitem(sys.modules, name, module)

    class Picamera2:
        @staticmethod
        def global_camera_info() -> list[dict]:
            return cameras

    sys.modules["picamera2"].Picamera2 = Picamera2  # type: ignore[attr-defined]


def test_csi_cameras_are_what_libcamera_sees_except_usb_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fake_picamera2(
        monkeypatch,
        [  # picamera2's order: CSI first, USB last; picamera:N is the position in this list
            {"Model": "imx708", "Id": "/base/axi/pcie@120000/rp1/i2c@88000/imx708@1a"},
            {"Model": "imx219", "Id": "/base/axi/pcie@120000/rp1/i2c@80000/imx219@10"},
            {"Model": "UVC", "Id": "/base/scb/pcie@7d500000/pci@0,0/usb@0,0-1:1.0-046d:0825"},
        ],
    )
    assert picamera.csi_cameras() == ([(0, "imx708"), (1, "imx219")], None)
    found, notes = sources.find_cameras(dev="/nonexistent")
    assert found == [
        Candidate("picamera:0", "Pi camera 0 (imx708)"),
        Candidate("picamera:1", "Pi camera 1 (imx219)"),
    ]
    assert notes == []


@pytest.mark.skipif(PICAMERA2_HERE, reason="picamera2 is installed here")
def test_without_picamera2_auto_looks_at_v4l2_only_and_says_why() -> None:
    found, notes = sources.find_cameras(dev="/nonexistent")
    assert found == []
    assert notes and "not installed: CSI cameras not looked for" in notes[0]


# -- auto ---------------------------------------------------------------------------------------
def test_auto_opens_the_first_candidate_that_works(sample_image: Path) -> None:
    def find() -> tuple[list[Candidate], list[str]]:
        return [
            Candidate("/dev/video97", "V4L2 /dev/video97 (gone)"),
            Candidate(str(sample_image), "V4L2 stand-in"),
        ], []

    camera = AutoCamera(320, 240, 5, find=find, resize=True)
    with camera:
        assert camera.description == "V4L2 stand-in" and camera.source == str(sample_image)
        assert camera.read().shape == (240, 320, 3)
    assert camera.source == ""  # closed


def test_auto_without_a_camera_says_what_to_do(tmp_path: Path) -> None:
    camera = AutoCamera(640, 480, 15, camera_id="door", find=lambda: ([], ["picamera2 missing"]))
    with pytest.raises(NoCameraFound) as err:
        camera.open()
    assert str(err.value) == (
        "no camera found: plug one in or set [cameras.door] source in "
        f"{config.config_path()} (picamera2 missing)"
    )


def test_auto_finds_a_camera_plugged_in_later(sample_image: Path) -> None:
    plugged: list[Candidate] = []
    camera = AutoCamera(640, 480, 15, find=lambda: (list(plugged), []))
    with pytest.raises(NoCameraFound):
        camera.open()
    plugged.append(Candidate(str(sample_image), "V4L2 /dev/video0 (stand-in)"))
    camera.open()
    assert camera.description == "V4L2 /dev/video0 (stand-in)"
    camera.close()


def test_auto_is_the_default_source() -> None:
    assert CameraSection().source == "auto"
    assert isinstance(open_source("auto", 640, 480, 15), AutoCamera)


# -- a source that cannot work --------------------------------------------------------------------
@pytest.mark.skipif(PICAMERA2_HERE, reason="picamera2 is installed here")
def test_picamera_without_picamera2_is_a_config_error_that_says_what_to_install() -> None:
    with pytest.raises(ConfigError) as err:
        config.parse('[cameras.0]\nsource = "picamera:1"\n', "/etc/rva/rva.toml")
    message = str(err.value)
    assert message.startswith("/etc/rva/rva.toml: cameras.0.source: source picamera needs")
    assert "apt install python3-picamera2" in message and 'source = "auto"' in message


@pytest.mark.skipif(PICAMERA2_HERE, reason="picamera2 is installed here")
def test_rva_config_check_fails_for_picamera_without_picamera2(tmp_path: Path) -> None:
    cfg = tmp_path / "rva.toml"
    cfg.write_text('[cameras.0]\nsource = "picamera"\n')
    check = subprocess.run(
        [sys.executable, "-m", "rva", "config", "check", "--config", str(cfg)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 2, check.stdout
    assert "cameras.0.source" in check.stderr and "python3-picamera2" in check.stderr
    cfg.write_text('[cameras.0]\nsource = "auto"\n')
    ok = subprocess.run(
        [sys.executable, "-m", "rva", "config", "check", "--config", str(cfg)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr


# -- the capture loop: status line, camera:<id>:source, /healthz, rva status ----------------------
class FakeRuntime:
    """What capture reports to (a Progress): READY and STATUS as systemd would see them."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.readies: list[str] = []
        self.statuses: list[str] = []
        self.ticks = 0

    @property
    def notifier(self) -> FakeRuntime:
        return self

    def ready(self, status: str) -> None:
        self.readies.append(status)

    def tick(self, status: str | None = None) -> None:
        self.ticks += 1
        if status is not None:
            self.statuses.append(status)

    def beat(self, client: object) -> None:
        pass


def _capture_in_thread(
    url: str, cam: CameraSection, runtime: FakeRuntime, frames: int = 0
) -> tuple[threading.Thread, list[int]]:
    written: list[int] = []
    thread = threading.Thread(
        target=lambda: written.append(
            capture.run(url, "0", cam, frames=frames, runtime=runtime)  # type: ignore[arg-type]
        ),
        daemon=True,
    )
    thread.start()
    return thread, written


def test_auto_capture_waits_ready_for_a_camera_then_captures_and_says_which(
    redis_plain: RedisServer, sample_image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugged: list[Candidate] = []
    monkeypatch.setattr(sources, "find_cameras", lambda: (list(plugged), ["no picamera2 here"]))
    client = redis_plain.client()
    runtime = FakeRuntime()
    cam = CameraSection(source="auto", fps=10)
    thread, written = _capture_in_thread(redis_plain.url, cam, runtime, frames=5)
    try:
        wait_for(lambda: runtime.readies, 20, what="READY while no camera is there")
        expected = (
            "no camera found: plug one in or set [cameras.0] source in "
            f"{config.config_path()} (no picamera2 here)"
        )
        assert runtime.readies == [expected]
        src = health.snapshot(client, ["0"], "rva-gears").cameras["0"]
        assert src.source["state"] == "waiting" and src.source["detail"] == expected
        assert f"camera: {expected}" in src.problems
        plugged.append(Candidate(str(sample_image), "V4L2 /dev/video0 (stand-in)"))
        thread.join(60)  # found at the next look (backoff: < 1 s, then < 2 s, ...)
        assert written == [5]
    finally:
        runtime.stop.set()
        thread.join(10)
    assert client.xlen(keys.frames("0")) == 5
    snap = health.snapshot(client, ["0"], "rva-gears")
    source = snap.as_dict()["cameras"]["0"]["source"]  # what /healthz serves
    assert source["configured"] == "auto" and source["state"] == "capturing"
    assert source["in_use"] == "V4L2 /dev/video0 (stand-in)"
    assert "source: auto -> V4L2 /dev/video0 (stand-in), capturing" in status.render(snap)
    # A configured source the description names is said once, not "x -> V4L2 x".
    named = {"configured": "/dev/video0", "in_use": "V4L2 /dev/video0 (vivid)"}
    named["state"] = "capturing"
    assert status.describe_source(named) == "V4L2 /dev/video0 (vivid), capturing"
    assert status.describe_source({"configured": "auto", "state": "waiting"}) == "auto, waiting"
    assert runtime.readies[-1] == "capturing V4L2 /dev/video0 (stand-in) into camera:0"


def test_a_source_that_cannot_work_is_reported_not_retried(
    redis_plain: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    opens: list[int] = []

    def broken_open(self: picamera.PiCamera) -> None:
        opens.append(1)
        raise SourceUnusable("source picamera needs picamera2, which does not import (test)")

    monkeypatch.setattr(picamera.PiCamera, "open", broken_open)
    runtime = FakeRuntime()
    # As if picamera2 had passed `rva config check` and broke later (an upgrade, an ABI clash).
    cam = CameraSection.model_construct(**{**CameraSection().model_dump(), "source": "picamera"})
    thread, written = _capture_in_thread(redis_plain.url, cam, runtime)
    try:
        wait_for(lambda: runtime.readies, 20, what="READY with the error in STATUS")
        ticks = runtime.ticks
        time.sleep(2.5)
        assert runtime.ticks > ticks  # the watchdog is still fed: no restart by systemd
        assert thread.is_alive() and opens == [1]  # and no retry loop
        assert runtime.readies == [
            "cannot capture: source picamera needs picamera2, which does not import (test)"
        ]
        snap = health.snapshot(redis_plain.client(), ["0"], "rva-gears")
        assert snap.cameras["0"].source["state"] == "error"
        assert any("needs picamera2" in p for p in snap.cameras["0"].problems)
        assert "source: picamera, error" in status.render(snap)
    finally:
        runtime.stop.set()
        thread.join(10)
    assert written == [0] and not thread.is_alive()


def test_a_camera_that_fails_to_open_is_still_retried(tmp_path: Path) -> None:
    # Not every failure is permanent: a /dev/videoN that is not there (yet) is reopened.
    with pytest.raises(SourceError) as err:
        open_source(str(tmp_path / "missing.avi"), 640, 480, 15).open()
    assert not isinstance(err.value, SourceUnusable)


@pytest.fixture
def sample_image(tmp_path: Path, sample_frames: dict) -> Path:
    path = tmp_path / "frame.jpg"
    cv2.imwrite(str(path), next(iter(sample_frames.values())))
    return path


# -- PiCamera against picamera2's API -------------------------------------------------------------
class FakePicamera2:
    """picamera2.Picamera2 as RVA uses it, answering like libcamera's virtual camera (which
    adjusts RGB888 to NV12: read from Debian's libcamera 0.4, see image-build/README.md)."""

    opened: list[FakePicamera2] = []  # noqa: RUF012 - the instances, for the test to look at

    def __init__(self, index: int) -> None:
        self.index, self.camera, self.allocator = index, object(), "DmaAllocator"
        self.closed = False
        self.fmt = "NV12"
        # Camera Module 3 lists AfMode; the others (v1, v2, HQ) have a fixed-focus lens.
        self.camera_controls: dict[str, tuple] = {}
        self.controls: dict[str, object] = {}
        self.waits: list[float | None] = []
        self.stalled = self.stop_fails = False
        FakePicamera2.opened.append(self)

    def create_video_configuration(self, main: dict, controls: dict, buffer_count: int) -> dict:
        return {"main": dict(main), "controls": controls, "buffer_count": buffer_count}

    def configure(self, config: dict) -> None:
        if self.fmt == "fail":
            raise RuntimeError("Failed to allocate buffers")
        self.config = {**config, "main": {**config["main"], "format": self.fmt}}

    def camera_configuration(self) -> dict:
        return self.config

    def start(self) -> None:
        pass

    def set_controls(self, controls: dict) -> None:
        self.controls.update(controls)

    def capture_array(self, name: str = "main", wait: float | None = None) -> np.ndarray:
        self.waits.append(wait)
        if self.stalled:  # picamera2: the request's future times out after `wait` seconds
            raise TimeoutError()
        width, height = self.config["main"]["size"]
        bgr = np.zeros((height, width, 3), np.uint8)
        bgr[:, : width // 2] = (255, 0, 0)  # blue left half, red right half
        bgr[:, width // 2 :] = (0, 0, 255)
        i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)  # Y plane, then U and V
        y, uv = i420[:height], i420[height:].reshape(2, -1)
        nv12 = np.concatenate([y.ravel(), np.stack(uv, axis=1).ravel()])
        return nv12.reshape(height * 3 // 2, width)

    def stop(self) -> None:
        if self.stop_fails:
            raise RuntimeError("Camera frontend has timed out!")

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_picamera2(monkeypatch: pytest.MonkeyPatch) -> type[FakePicamera2]:
    _fake_picamera2(monkeypatch, [])
    sys.modules["picamera2"].Picamera2 = FakePicamera2  # type: ignore[attr-defined]
    allocators = types.ModuleType("picamera2.allocators")

    class LibcameraAllocator:
        def __init__(self, camera: object) -> None:
            self.camera = camera

    allocators.LibcameraAllocator = LibcameraAllocator  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "picamera2.allocators", allocators)
    FakePicamera2.opened = []
    return FakePicamera2


def test_pi_camera_converts_what_libcamera_delivers_to_bgr(
    fake_picamera2: type[FakePicamera2], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(picamera, "PICAMERA2_DMA_HEAPS", ("/nonexistent/linux,cma",))
    with open_source("picamera:1", 64, 48, 15) as camera:
        frame = camera.read()
    picam = fake_picamera2.opened[0]
    assert picam.index == 1 and picam.closed
    # No DMA heap (Debian's kernels): libcamera's own allocator instead of picamera2's default.
    assert type(picam.allocator).__name__ == "LibcameraAllocator"
    assert picam.config["main"]["size"] == (64, 48) and picam.config["controls"] == {
        "FrameRate": 15
    }
    assert frame.shape == (48, 64, 3)
    assert frame[24, 10].tolist() == pytest.approx([255, 0, 0], abs=12)  # blue, in BGR order
    assert frame[24, 54].tolist() == pytest.approx([0, 0, 255], abs=12)


def test_pi_camera_releases_the_camera_when_it_cannot_be_configured(
    fake_picamera2: type[FakePicamera2], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(FakePicamera2, "__init__", _init_with("fail"))
    with pytest.raises(SourceError, match="cannot open Pi camera 0: Failed to allocate"):
        open_source("picamera", 64, 48, 15).open()
    assert fake_picamera2.opened[0].closed  # or the next attempt finds it busy
    monkeypatch.setattr(FakePicamera2, "__init__", _init_with("SGRBG10"))
    with pytest.raises(SourceUnusable, match="delivers SGRBG10, which RVA cannot convert"):
        open_source("picamera", 64, 48, 15).open()
    assert fake_picamera2.opened[1].closed


def _init_with(fmt: str) -> Callable:
    original = FakePicamera2.__init__

    def init(self: FakePicamera2, index: int) -> None:
        original(self, index)
        self.fmt = fmt

    return init


def test_pi_camera_waits_a_bounded_time_for_a_frame_and_says_when_none_came(
    fake_picamera2: type[FakePicamera2], monkeypatch: pytest.MonkeyPatch
) -> None:
    """picamera2's capture_array() waits forever without wait=: a stalled camera would only
    be noticed by the watchdog restarting the whole service."""
    monkeypatch.setattr(picamera, "PICAMERA2_DMA_HEAPS", ("/nonexistent/linux,cma",))
    camera = open_source("picamera", 64, 48, 15)
    camera.open()
    picam = fake_picamera2.opened[0]
    camera.read()
    assert picam.waits == [picamera.CAPTURE_TIMEOUT_S]
    picam.stalled = True
    with pytest.raises(SourceError, match="Pi camera 0 delivered no frame in 5 s"):
        camera.read()
    camera.close()
    assert picam.closed
    slow = open_source("picamera", 64, 48, 0.2)  # one frame every 5 s: three periods
    slow.open()
    slow.read()
    assert fake_picamera2.opened[1].waits == [15.0]
    slow.close()


def test_pi_camera_is_closed_even_when_stopping_it_fails(
    fake_picamera2: type[FakePicamera2], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(picamera, "PICAMERA2_DMA_HEAPS", ("/nonexistent/linux,cma",))
    camera = open_source("picamera", 64, 48, 15)
    camera.open()
    fake_picamera2.opened[0].stop_fails = True
    camera.close()  # no exception: capture reopens with backoff
    assert fake_picamera2.opened[0].closed


def test_pi_camera_with_autofocus_focuses_continuously(
    fake_picamera2: type[FakePicamera2], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(picamera, "PICAMERA2_DMA_HEAPS", ("/nonexistent/linux,cma",))
    original = FakePicamera2.__init__

    def module_3(self: FakePicamera2, index: int) -> None:
        original(self, index)
        self.camera_controls = {"AfMode": (0, 2, 0), "LensPosition": (0.0, 15.0, 1.0)}

    with open_source("picamera", 64, 48, 15):
        pass
    assert fake_picamera2.opened[0].controls == {}  # fixed focus: nothing to set
    monkeypatch.setattr(FakePicamera2, "__init__", module_3)
    with open_source("picamera", 64, 48, 15):
        pass
    # libcamera's controls.AfModeEnum.Continuous
    assert fake_picamera2.opened[1].controls == {"AfMode": 2}


def test_pi_camera_says_the_dma_heaps_are_not_open_to_it_instead_of_busy(
    fake_picamera2: type[FakePicamera2], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Debian's udev has no rule for /dev/dma_heap/*: the kernel makes them root-only and
    rva-capture (user rva, group video) cannot allocate frame buffers. Said before the camera
    is acquired, so that no later try finds it busy."""
    heap = tmp_path / "linux,cma"
    heap.write_bytes(b"")
    monkeypatch.setattr(picamera, "PICAMERA2_DMA_HEAPS", (str(heap),))
    monkeypatch.setattr(picamera.os, "access", lambda _path, _mode: False)
    with pytest.raises(SourceError) as raised:
        open_source("picamera", 64, 48, 15).open()
    message = str(raised.value)
    assert "camera found but cannot open its buffers (permissions of /dev/dma_heap" in message
    assert str(heap) in message and "60-rva-dma-heap.rules" in message
    assert fake_picamera2.opened == []  # never acquired
    # Allowed by the file mode but refused all the same (an LSM, a cgroup): picamera2 raises
    # PermissionError after acquiring the camera, which is released and named the same way.
    monkeypatch.setattr(picamera.os, "access", lambda _path, _mode: True)

    def denied(self: FakePicamera2, index: int) -> None:
        FakePicamera2.opened.append(self)
        self.closed = False
        raise PermissionError(13, "Permission denied", str(heap))

    monkeypatch.setattr(FakePicamera2, "__init__", denied)
    with pytest.raises(SourceError, match="cannot open its buffers"):
        open_source("picamera", 64, 48, 15).open()
