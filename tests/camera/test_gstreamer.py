"""GStreamer sources through PyGObject, with real pipelines: videotestsrc, vtest.avi through
decodebin, a live source read newest-frame-only, elements that are not installed, and
`rva count` / `rva capture` / `rva config check` on gst: sources against a real redis-server."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from rva.camera import SourceError, SourceUnusable, open_source
from rva.camera.gstreamer import EndOfStream, GstCamera, pipeline_problem
from rva.health import source_key
from tests.conftest import RedisServer, Services, rva, wait_for, write_config

RED = "videotestsrc num-buffers=3 pattern=solid-color foreground-color=0xffff0000"


def vtest_pipeline(path: Path) -> str:
    return f"filesrc location={path} ! decodebin ! videoconvert ! appsink"


@pytest.mark.parametrize(
    ("caps", "width"),
    [
        ("video/x-raw,format=BGR", 320),
        ("video/x-raw,format=BGR", 322),
        ("video/x-raw,format=BGRx", 322),
    ],
)
def test_frames_are_bgr_whatever_the_row_padding(caps: str, width: int) -> None:
    # 322 px of BGR is 966 bytes, padded to 968 a row: the padding must not shear the picture.
    pipeline = f"{RED} ! {caps},width={width},height=240 ! appsink"
    with open_source(f"gst:{pipeline}", width, 240, 10) as camera:
        frame = camera.read()
    assert frame.shape == (240, width, 3) and frame.dtype == np.uint8
    assert (frame == (0, 0, 255)).all()  # red, in BGR order, in every pixel


def test_vtest_through_decodebin_every_frame_then_end_of_stream(vtest_path: Path) -> None:
    cap = cv2.VideoCapture(str(vtest_path))
    _, first_by_opencv = cap.read()
    cap.release()
    camera = GstCamera(vtest_pipeline(vtest_path), 768, 576, 10)
    with camera:
        first = camera.read()
        assert not camera.paced  # a file: capture paces it to its own rate
        assert camera.native_fps == 10.0
        assert camera.sink.get_property("drop") is False  # not live: no frame dropped
        frames = 1
        with pytest.raises(EndOfStream):
            while True:
                camera.read()
                frames += 1
    assert frames == 795  # all of vtest.avi's frames
    assert first.shape == (576, 768, 3)
    # Another decoder and colour conversion than OpenCV's FFmpeg: the same picture within a few
    # levels on average.
    assert np.abs(first.astype(int) - first_by_opencv.astype(int)).mean() < 4


def test_a_live_pipeline_hands_over_the_newest_frame_only() -> None:
    pipeline = (
        "videotestsrc is-live=true ! video/x-raw,width=160,height=120,framerate=30/1 ! "
        "videoconvert ! appsink"
    )
    with open_source(f"gst:{pipeline}", 160, 120, 30) as camera:
        assert isinstance(camera, GstCamera)
        assert camera.paced and camera.native_fps == 0.0
        assert camera.sink.get_property("drop") is True
        assert camera.sink.get_property("max-buffers") == 1
        camera.read()
        before = camera.pts_ns
        time.sleep(1.0)
        camera.read()
        # A queue would hand over the frame 33 ms later; the newest is about a second later.
        assert camera.pts_ns - before >= 900_000_000


def test_resize_gives_the_configured_size() -> None:
    pipeline = f"{RED} ! videoconvert ! video/x-raw,width=320,height=240 ! appsink"
    with open_source(f"gst:{pipeline}", 160, 120, 10, resize=True) as camera:
        assert camera.read().shape == (120, 160, 3)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "jetson-csi:1",
            "no GStreamer element 'nvarguscamerasrc' here (it comes with "
            "nvidia-l4t-gstreamer (JetPack))",
        ),
        (
            "gst:videotestsrc ! nosuchelement ! appsink",
            "no GStreamer element 'nosuchelement' here (gst-inspect-1.0 nosuchelement)",
        ),
        ("gst:videotestsrc ! ! appsink", "GStreamer cannot build the pipeline: syntax error"),
        ("gst:videotestsrc ! fakesink", "a gst: pipeline must end in an appsink"),
    ],
)
def test_a_pipeline_that_can_never_work_here_says_why(source: str, message: str) -> None:
    camera = open_source(source, 640, 480, 10)
    with pytest.raises(SourceUnusable, match=message.replace("(", r"\(").replace(")", r"\)")):
        camera.open()


def test_a_pipeline_that_fails_to_start_is_retried_not_given_up() -> None:
    camera = open_source("gst:v4l2src device=/dev/video97 ! videoconvert ! appsink", 640, 480, 10)
    with pytest.raises(SourceError) as caught:
        camera.open()
    assert not isinstance(caught.value, SourceUnusable)  # the camera may be plugged in later
    assert "/dev/video97" in str(caught.value)
    assert camera.pipeline is None  # closed again


def test_pipeline_problem_builds_without_starting() -> None:
    assert pipeline_problem("v4l2src device=/dev/video97 ! videoconvert ! appsink") == ""
    assert "nvvidconv" in pipeline_problem("videotestsrc ! nvvidconv ! appsink")


def test_config_check_names_the_missing_element_and_passes_a_good_pipeline(
    tmp_path: Path,
) -> None:
    good = write_config(tmp_path / "good.toml", "redis://127.0.0.1:1/0", f"gst:{RED} ! appsink")
    result = rva("config", "check", env={"RVA_CONFIG": str(good)})
    assert result.returncode == 0, result.stdout + result.stderr
    bad = write_config(tmp_path / "bad.toml", "redis://127.0.0.1:1/0", "jetson-csi")
    result = rva("config", "check", env={"RVA_CONFIG": str(bad)})
    assert result.returncode != 0
    assert (
        "cameras.0.source: jetson-csi: no GStreamer element 'nvarguscamerasrc' here (it comes "
        "with nvidia-l4t-gstreamer (JetPack))" in result.stdout + result.stderr
    )


def test_rva_count_reads_a_pipeline_like_the_file(vtest_path: Path) -> None:
    by_file = rva("count", str(vtest_path), "--every", "200", "--json")
    by_gst = rva("count", f"gst:{vtest_pipeline(vtest_path)}", "--every", "200", "--json")
    assert by_gst.returncode == 0, by_gst.stderr
    rows = [json.loads(line) for line in by_gst.stdout.splitlines()]
    expected = [json.loads(line) for line in by_file.stdout.splitlines()]
    assert [r["frame"] for r in rows] == [0, 200, 400, 600]  # to the end of the file, then done
    assert [r["people"] for r in rows] == [r["people"] for r in expected]


def test_rva_count_says_why_a_pipeline_cannot_work() -> None:
    result = rva("count", "gst:videotestsrc ! nosuchelement ! appsink")
    assert result.returncode != 0
    assert "no GStreamer element 'nosuchelement' here" in result.stderr


def test_capture_writes_frames_of_a_live_pipeline_to_redis(
    redis_ts: RedisServer, tmp_path: Path, services: Callable[[Path], Services]
) -> None:
    pipeline = (
        "videotestsrc is-live=true ! video/x-raw,width=320,height=240 ! videoconvert ! appsink"
    )
    config = write_config(
        tmp_path / "rva.toml", redis_ts.url, f"gst:{pipeline}", camera={"fps": 10}
    )
    svc = services(config)
    svc.run("init")
    svc.start("capture")
    client = redis_ts.client()
    wait_for(lambda: client.xlen("camera:0") >= 5, 60, what="frames from the pipeline")
    entry = client.xrevrange("camera:0", count=1)[0][1]
    image = cv2.imdecode(np.frombuffer(entry[b"image"], np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[:2] == (240, 320)
    state = {k.decode(): v.decode() for k, v in client.hgetall(source_key("0")).items()}
    assert state["state"] == "capturing" and state["in_use"] == "GStreamer pipeline"


def test_capture_reports_a_missing_element_and_waits(
    redis_ts: RedisServer, tmp_path: Path, services: Callable[[Path], Services]
) -> None:
    config = write_config(tmp_path / "rva.toml", redis_ts.url, "jetson-csi:0")
    svc = services(config)
    svc.run("init")
    svc.start("capture")
    client = redis_ts.client()
    wait_for(lambda: client.hget(source_key("0"), "state") == b"error", 60, what="the error state")
    detail = client.hget(source_key("0"), "detail").decode()
    assert "nvarguscamerasrc" in detail and "nvidia-l4t-gstreamer" in detail
    assert client.xlen("camera:0") == 0
