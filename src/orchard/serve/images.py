"""Request bytes -> model pixels, with the pipeline's preprocessing, and the HTTP status of
each way an upload can be bad.

The pixels come from orchard.pipeline.preprocess (decode, any colour mode to RGB, bilinear
resize to 224x224, decompression-bomb limit), so that training and serving agree. Phone photos
carry their rotation in EXIF; the pipeline does not apply it (the training images have none),
so the service turns the photo upright first (`upright`), and only when the EXIF says so.
"""
from __future__ import annotations

import io
import warnings
from typing import Dict, List, Optional, Tuple

import numpy as np
from PIL import Image, ImageOps

from orchard.pipeline.preprocess import MAX_PIXELS, ImageError, preprocess

ORIENTATION_TAG = 0x0112  # EXIF Orientation: 1 upright, 2-8 mirrored and/or rotated
PNG_MODES = ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16")


class BadInput(Exception):
    """An upload the service refuses: `status` (4xx) and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# preprocess's reasons (ImageError messages) -> HTTP status; anything else is 422
REASON_STATUS: List[Tuple[str, int]] = [
    ("empty file", 400),
    ("not an image", 415),
    ("not a decodable image", 415),
    ("refused as a decompression bomb", 413),
]


def status_of(reason: str) -> int:
    """The HTTP status for one of preprocess's reasons."""
    for start, status in REASON_STATUS:
        if reason.startswith(start):
            return status
    return 422  # corrupt or truncated image, unexpected shape


def upright(data: bytes, size: int = 224) -> bytes:
    """`data` with its EXIF orientation applied (re-encoded losslessly as PNG), or `data`
    itself when it has no orientation to apply, or when its EXIF (or the image) cannot be read:
    preprocess then gives the reason, if any."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > MAX_PIXELS:
                return data
            orientation = image.getexif().get(ORIENTATION_TAG, 1)
            if orientation not in range(2, 9):
                return data
            if image.format == "JPEG":
                image.draft("RGB", (2 * size, 2 * size))  # as preprocess decodes a large JPEG
            turned = ImageOps.exif_transpose(image)
            if turned.mode not in PNG_MODES:
                turned = turned.convert("RGB")
            buffer = io.BytesIO()
            turned.save(buffer, format="PNG", compress_level=1)
            return buffer.getvalue()
    except Exception:  # corrupt EXIF, truncated data, bombs: left to preprocess
        return data


def pixels_of(data: bytes, size: int = 224) -> np.ndarray:
    """uint8 [size, size, 3] RGB pixels of an uploaded image, upright. Raises BadInput."""
    if not data:
        raise BadInput(400, "empty upload: the request carried no image bytes")
    try:
        return preprocess(upright(data, size), size).array
    except ImageError as error:
        raise BadInput(status_of(str(error)), str(error)) from None
    except Exception as error:  # any other decoder failure is the upload's fault, never a 500
        raise BadInput(422, f"could not decode image: {type(error).__name__}: {error}") from None


def form_parts(body: bytes, content_type: str) -> Dict[str, Tuple[Optional[str], bytes]]:
    """Fields of a multipart/form-data body, in memory: name -> (file name or None, bytes).

    Nothing is written to disk (Starlette's form parser spools uploads over 1 MB to a
    temporary file). Raises BadInput(400) for a body that is not valid multipart.
    """
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise BadInput(400, "multipart/form-data without a boundary")
    parts: Dict[str, Tuple[Optional[str], bytes]] = {}
    state = {"headers": {}, "field": b"", "value": b"", "data": io.BytesIO()}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["field"].lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_part_begin() -> None:
        state["headers"], state["data"] = {}, io.BytesIO()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        state["data"].write(data[start:end])

    def on_part_end() -> None:
        _, disposition = parse_options_header(state["headers"].get(b"content-disposition", b""))
        name = disposition.get(b"name", b"").decode("utf-8", "replace")
        filename = disposition.get(b"filename")
        parts.setdefault(name, (filename.decode("utf-8", "replace") if filename is not None else None,
                                state["data"].getvalue()))

    callbacks = {"on_header_field": on_header_field, "on_header_value": on_header_value,
                 "on_header_end": on_header_end, "on_part_begin": on_part_begin,
                 "on_part_data": on_part_data, "on_part_end": on_part_end}
    try:
        parser = MultipartParser(boundary, callbacks)
        parser.write(body)
        parser.finalize()
    except FormParserError as error:
        raise BadInput(400, f"malformed multipart/form-data body: {error}") from None
    return parts
