import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from orchard.pipeline.preprocess import ImageError, is_image_name, preprocess, try_preprocess


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def gradient(mode: str = "RGB", size=(120, 80)) -> Image.Image:
    x = np.linspace(0, 255, size[0], dtype=np.uint8)
    rgb = np.stack([np.tile(x, (size[1], 1))] * 3, axis=-1)
    rgb[..., 1] = 60
    return Image.fromarray(rgb, "RGB").convert(mode)


@pytest.mark.parametrize("mode,fmt", [
    ("RGB", "JPEG"), ("L", "JPEG"), ("CMYK", "JPEG"), ("RGB", "PNG"), ("RGBA", "PNG"),
    ("LA", "PNG"), ("P", "PNG"), ("I;16", "PNG"), ("1", "PNG"),
])
def test_every_mode_becomes_rgb_224(mode, fmt):
    pixels = preprocess(encode(gradient(mode), fmt))
    assert pixels.array.shape == (224, 224, 3) and pixels.array.dtype == np.uint8
    assert (pixels.width, pixels.height) == (120, 80)


def test_transparent_pixels_are_composited_on_white():
    image = Image.new("RGBA", (50, 50), (255, 0, 0, 0))
    pixels = preprocess(encode(image, "PNG"))
    assert pixels.array.min() == 255


def test_resize_is_bilinear_on_the_rgb_image():
    image = gradient()
    expected = np.asarray(image.resize((224, 224), Image.BILINEAR))
    assert np.array_equal(preprocess(encode(image, "PNG")).array, expected)


def test_large_jpeg_is_drafted_but_keeps_its_original_size():
    big = gradient(size=(2000, 1500))
    pixels = preprocess(encode(big, "JPEG", quality=90))
    assert (pixels.width, pixels.height) == (2000, 1500)
    reference = np.asarray(big.resize((224, 224), Image.BILINEAR), dtype=np.int16)
    assert np.abs(pixels.array.astype(np.int16) - reference).mean() < 4


def png_header_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("data,reason", [
    (b"", "empty file"),
    (b"<!DOCTYPE html><html><body>404 Not Found</body></html>", "HTML"),
    (bytes(range(256)) * 8, "unknown format"),
    (png_header_claiming(20000, 20000), "decompression bomb"),
    (png_header_claiming(10000, 9000), "decompression bomb"),
])
def test_bad_bytes_give_a_reason(data, reason):
    with pytest.raises(ImageError, match=reason):
        preprocess(data)


def test_truncated_jpeg_gives_a_reason():
    data = encode(gradient(size=(300, 300)), "JPEG")
    pixels, error = try_preprocess(data[: len(data) // 2])
    assert pixels is None and "truncated" in error


def test_try_preprocess_never_raises():
    assert try_preprocess(None) == (None, "empty file (0 bytes)")


@pytest.mark.parametrize("name,expected", [
    ("a.jpg", True), ("B.JPG", True), ("c.JpEg", True), ("d.png", True), ("e.PNG", True),
    ("f.gif", False), ("g.txt", False), ("jpg", False), ("h.jpg.bak", False),
])
def test_image_names(name, expected):
    assert is_image_name(name) is expected
