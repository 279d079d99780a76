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
    ("f.gif", True), ("g.txt", False), ("jpg", False), ("h.jpg.bak", False),
])
def test_image_names(name, expected):
    assert is_image_name(name) is expected


# --------------------------------------------------------------------------- inputs from the field (issue 11)


def test_image_extensions_come_from_what_pillow_opens():
    from orchard.pipeline.preprocess import IMAGE_EXTENSIONS

    assert {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".heic", ".heif"} <= set(IMAGE_EXTENSIONS)
    assert is_image_name("IMG_0001.HEIC") and is_image_name("a.WebP") and not is_image_name("notes.txt")


@pytest.mark.parametrize("data,name", [
    (b"\x00\x00\x00\x1cftypheic" + b"\x00" * 40, "HEIC"),
    (b"\x00\x00\x00\x1cftypavif" + b"\x00" * 40, "AVIF"),
    (b"RIFF\x00\x10\x00\x00WEBPVP8 " + b"\x02" * 40, "WebP"),
    (b"%PDF-1.4\n" + b"x" * 40, "PDF"),
    (b"  <!DOCTYPE html><html></html>", "HTML"),
])
def test_an_undecodable_file_names_the_format_in_its_bytes(data, name):
    pixels, reason = try_preprocess(data)
    assert pixels is None and name in reason
    assert data[:8].hex() not in reason  # never a hex dump


def test_unknown_bytes_say_unknown_format_without_a_hex_dump():
    _, reason = try_preprocess(bytes(range(7, 200)))
    assert reason == "not a decodable image: unknown format (193 bytes)"


@pytest.mark.parametrize("orientation,stored", [(3, Image.ROTATE_180), (6, Image.ROTATE_90), (8, Image.ROTATE_270)])
def test_exif_orientation_is_applied_and_sizes_are_as_displayed(orientation, stored):
    upright = gradient(size=(120, 80))
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(upright.transpose(stored), "PNG", exif=exif)
    pixels = preprocess(data, size=32)
    reference = preprocess(encode(upright, "PNG"), size=32)
    assert (pixels.width, pixels.height) == (120, 80)
    assert np.abs(pixels.array.astype(int) - reference.array.astype(int)).max() <= 2


def test_a_corrupt_exif_block_leaves_the_image_as_stored():
    data = encode(gradient(size=(120, 80)), "JPEG", exif=b"Exif\x00\x00MM\x00*garbage")
    pixels = preprocess(data, size=32)
    assert (pixels.width, pixels.height) == (120, 80)


def test_heic_is_decoded():
    pytest.importorskip("pillow_heif")
    data = encode(gradient(size=(64, 48)), "HEIF", quality=90)
    pixels = preprocess(data, size=32)
    assert (pixels.width, pixels.height) == (64, 48)


@pytest.mark.parametrize("mode,key", [("RGB", (0, 0, 0)), ("L", 0), ("P", 0)])
def test_colour_key_transparency_is_composited_on_white(mode, key):
    black = Image.new(mode, (40, 40), 0 if mode != "RGB" else (0, 0, 0))
    if mode == "P":
        black.putpalette([0, 0, 0] + [255, 0, 0] * 255)
    data = encode(black, "PNG", transparency=key)
    pixels = preprocess(data, size=16)
    assert pixels.array.min() == 255  # every pixel is transparent: white
