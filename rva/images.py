"""Frames read from Redis, decoded only after their header says they are a sane size.

Anything that can write to ``camera:<id>`` decides what the gears and the web decode. A 48 KB
PNG may declare 20000×20000 pixels (a 1.2 GB decode), an empty field makes ``cv2.imdecode``
assert. So every reader goes through ``decode``: the size of the field, then the dimensions
read from the header alone (JPEG SOF, PNG IHDR, WebP, BMP, GIF, TIFF, PNM/PAM/PFM), then the
decode. A format whose header is not read here (JPEG 2000, AVIF, OpenEXR, HDR, …; RVA's own
frames are JPEG) is refused before OpenCV sees it.

JPEGs are decoded by libjpeg-turbo through simplejpeg where it is installed (x86_64, aarch64):
the same pixels as cv2.imdecode in less than half the CPU time (1.2 against 2.7 ms for a
768×576 frame here), and the decode is on the gear's path of every frame. A JPEG simplejpeg
refuses, or one with EXIF data (OpenCV applies its orientation), goes to OpenCV as before.
"""

from __future__ import annotations

import re
import struct

import cv2
import numpy as np

try:
    import simplejpeg
except ImportError:  # no wheel for this platform (32-bit ARM): OpenCV decodes every format
    simplejpeg = None

MAX_BYTES = 16 * 1024 * 1024  # a frame field larger than this is refused unread
MAX_SIDE = 8192
MAX_PIXELS = 8192 * 4608  # 37.7 MP: an 8K frame, about 113 MB decoded


class ImageRejected(ValueError):
    """A frame that is not decoded; ``kind`` is the rva:errors kind it is counted as."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic; not DHT/JPG/DAC).
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg(data: bytes) -> tuple[int, int]:
    pos, end = 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            raise ImageRejected("corrupt_frame", "JPEG: no marker where one should be")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no frame header came
            break
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if marker in _SOF:
            if pos + 9 > end:
                break
            height, width = struct.unpack_from(">HH", data, pos + 5)
            return width, height
        pos += 2 + length
    raise ImageRejected("corrupt_frame", "JPEG without a frame header")


def _webp(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    raise ImageRejected("corrupt_frame", "WebP without a readable header")


def _tiff(data: bytes) -> tuple[int, int]:
    order = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(order + "I", data, 4)
    if ifd + 2 > len(data):
        raise ImageRejected("corrupt_frame", "TIFF: first directory outside the file")
    (entries,) = struct.unpack_from(order + "H", data, ifd)
    found: dict[int, int] = {}
    for i in range(entries):
        at = ifd + 2 + 12 * i
        if at + 12 > len(data):
            break
        tag, kind = struct.unpack_from(order + "HH", data, at)
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT or LONG
            fmt = "H" if kind == 3 else "I"
            (found[tag],) = struct.unpack_from(order + fmt, data, at + 8)
    if 256 not in found or 257 not in found:
        raise ImageRejected("corrupt_frame", "TIFF without width and height")
    return found[256], found[257]


_PNM_TOKEN = re.compile(rb"(?:\s|#[^\n\r]*)*(\S+)")


def _pnm(data: bytes) -> tuple[int, int]:
    head = data[:4096]
    if head[:2] == b"P7":  # PAM: WIDTH and HEIGHT lines before ENDHDR
        width = re.search(rb"\nWIDTH\s+(\d+)", head)
        height = re.search(rb"\nHEIGHT\s+(\d+)", head)
        if not (width and height):
            raise ImageRejected("corrupt_frame", "PAM without WIDTH and HEIGHT")
        return int(width.group(1)), int(height.group(1))
    tokens: list[int] = []
    pos = 2
    while len(tokens) < 2:
        match = _PNM_TOKEN.match(head, pos)
        if not match or not match.group(1).isdigit():
            raise ImageRejected("corrupt_frame", "PNM without width and height")
        tokens.append(int(match.group(1)))
        pos = match.end()
    return tokens[0], tokens[1]


def dimensions(data: bytes) -> tuple[str, int, int]:
    """(format, width, height) from the header alone. Raises ImageRejected for an empty field,
    a format not read here (unsupported_format) or a header that does not parse."""
    if not data:
        raise ImageRejected("empty_frame", "empty image field")
    try:
        if data[:3] == b"\xff\xd8\xff":
            return ("JPEG", *_jpeg(data))
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            return ("PNG", *struct.unpack_from(">II", data, 16))
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return ("WebP", *_webp(data))
        if data[:2] == b"BM":
            if struct.unpack_from("<I", data, 14)[0] == 12:  # OS/2 core header
                return ("BMP", *struct.unpack_from("<HH", data, 18))
            width, height = struct.unpack_from("<ii", data, 18)
            return "BMP", abs(width), abs(height)
        if data[:6] in (b"GIF87a", b"GIF89a"):
            return ("GIF", *struct.unpack_from("<HH", data, 6))
        if data[:4] in (b"II*\x00", b"MM\x00*"):
            return ("TIFF", *_tiff(data))
        if data[:1] == b"P" and len(data) > 1 and data[1] in b"1234567":
            return ("PNM", *_pnm(data))
        if data[:2] in (b"PF", b"Pf"):
            return ("PFM", *_pnm(data))
    except struct.error:
        raise ImageRejected("corrupt_frame", "image header cut short") from None
    raise ImageRejected("unsupported_format", f"not an image format RVA reads ({data[:8]!r})")


def _turbo_jpeg(data: bytes, fast: bool = False) -> np.ndarray | None:
    """The BGR frame of a JPEG through simplejpeg, or None to leave it to OpenCV: simplejpeg not
    installed, EXIF data in the first 64 KB, or anything libjpeg-turbo complains about."""
    if simplejpeg is None or data.find(b"Exif\x00\x00", 0, 65536) != -1:
        return None
    try:
        frame: np.ndarray = simplejpeg.decode_jpeg(
            data, colorspace="BGR", fastdct=fast, fastupsample=fast
        )
    except ValueError:
        return None
    return frame


def decode(
    data: bytes,
    *,
    max_bytes: int = MAX_BYTES,
    max_side: int = MAX_SIDE,
    max_pixels: int = MAX_PIXELS,
    fast: bool = False,
) -> np.ndarray:
    """The BGR frame in ``data``, or ImageRejected (kind: empty_frame, oversized,
    unsupported_format, corrupt_frame) before any pixel is decoded when it cannot be one.

    ``fast``: libjpeg-turbo's faster inverse DCT and chroma upsampling (the gear's input, about
    12 % less time: docs/performance.md, "Measured"); pixels then differ from OpenCV's by a few
    levels."""
    if len(data) > max_bytes:
        raise ImageRejected("oversized", f"image of {len(data)} bytes (at most {max_bytes})")
    fmt, width, height = dimensions(data)
    if width < 1 or height < 1:
        raise ImageRejected("corrupt_frame", f"{fmt} of {width}x{height}")
    if max(width, height) > max_side or width * height > max_pixels:
        raise ImageRejected(
            "oversized",
            f"{fmt} of {width}x{height} (at most {max_side} a side, {max_pixels} pixels)",
        )
    frame = _turbo_jpeg(data, fast) if fmt == "JPEG" else None
    try:
        if frame is None:
            frame = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ImageRejected("corrupt_frame", f"{fmt} does not decode: {exc}") from None
    if frame is None:
        raise ImageRejected("corrupt_frame", f"{fmt} of {width}x{height} does not decode")
    if max(frame.shape[:2]) > max_side:  # the header lied the other way
        raise ImageRejected("oversized", f"{fmt} decoded to {frame.shape[1]}x{frame.shape[0]}")
    return frame
