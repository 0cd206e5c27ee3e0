"""rva.images decodes JPEGs through simplejpeg (libjpeg-turbo) where installed: the very pixels
OpenCV gives, for every frame capture writes; what simplejpeg refuses or what carries EXIF data
is left to OpenCV, as before."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from rva import images

simplejpeg = pytest.importorskip("simplejpeg")  # a default dependency on x86_64 and aarch64


def _opencv(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


@pytest.mark.parametrize("quality", [60, 80, 95])
def test_frames_as_capture_writes_them_decode_to_opencvs_pixels(
    sample_frames: dict[int, np.ndarray], quality: int
) -> None:
    for frame in sample_frames.values():
        data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()
        assert images._turbo_jpeg(data) is not None  # the fast path is taken
        decoded = images.decode(data)
        assert decoded.dtype == np.uint8 and decoded.flags.writeable
        assert np.array_equal(decoded, _opencv(data))


def test_a_cut_jpeg_and_one_with_exif_are_left_to_opencv(
    sample_frames: dict[int, np.ndarray],
) -> None:
    data = cv2.imencode(".jpg", sample_frames[0])[1].tobytes()
    cut = data[: len(data) // 2]
    assert images._turbo_jpeg(cut) is None  # libjpeg-turbo complains: OpenCV decides
    exif = data[:2] + b"\xff\xe1\x00\x10Exif\x00\x00" + bytes(8) + data[2:]
    assert images._turbo_jpeg(exif) is None
    assert np.array_equal(images.decode(exif), _opencv(exif))


def test_the_gears_fast_decode_is_within_a_few_levels_of_opencvs(
    sample_frames: dict[int, np.ndarray],
) -> None:
    """The gear decodes with libjpeg-turbo's fast DCT and upsampling (its people counts are held
    to the labels in test_count_labels.py): the same picture, a few grey levels apart."""
    for frame in sample_frames.values():
        data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()
        fast, exact = images.decode(data, fast=True), _opencv(data)
        assert fast.shape == exact.shape and not np.array_equal(fast, exact)
        diff = np.abs(fast.astype(np.int16) - exact)
        assert diff.mean() < 1.5 and np.percentile(diff, 99) <= 8, (diff.mean(), diff.max())
