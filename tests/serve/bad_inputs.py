"""Bad uploads, each with the status and the words of the answer the service must give."""
from __future__ import annotations

import io
import struct
import zlib
from typing import List, NamedTuple, Optional

from PIL import Image

from tests.conftest import SAMPLE

SAMPLE_JPEG = SAMPLE / "Test" / "Banana" / sorted(p.name for p in (SAMPLE / "Test" / "Banana").iterdir())[0]


class BadInput(NamedTuple):
    name: str
    status: int
    words: str  # a part of the "detail" message
    body: bytes
    content_type: Optional[str] = None  # raw body with this type; None: multipart field `field`
    field: str = "file"


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A valid PNG header declaring width x height pixels (400 M here), with almost no data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def over_limit_jpeg(limit: int) -> bytes:
    """A real JPEG padded past `limit` bytes (a comment segment would not be enough: pad after EOI)."""
    return SAMPLE_JPEG.read_bytes() + b"\x00" * (limit + 1)


def cases(limit: int = 10 * 1024 * 1024) -> List[BadInput]:
    jpeg = SAMPLE_JPEG.read_bytes()
    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), (200, 30, 30)).save(buffer, format="JPEG", quality=90)
    big_jpeg = buffer.getvalue()
    return [
        BadInput("not an image", 415, "not a decodable image", b"just some text, not a photo\n"),
        BadInput("html page", 415, "not an image: the file holds HTML", b"<!doctype html><html></html>"),
        BadInput("empty body", 400, "empty", b"", content_type="image/jpeg"),
        BadInput("empty file field", 400, "empty", b""),
        BadInput("truncated jpeg", 422, "corrupt or truncated", big_jpeg[: len(big_jpeg) // 2]),
        BadInput("decompression bomb", 413, "decompression bomb", png_bomb()),
        BadInput("over the size limit", 413, "over the limit", over_limit_jpeg(limit), content_type="image/jpeg"),
        BadInput("wrong field name", 422, "no form field 'file'", jpeg, field="photo"),
        BadInput("not an image content type", 415, "unsupported Content-Type 'text/plain'", b"hello",
                 content_type="text/plain"),
    ]
