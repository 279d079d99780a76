"""Request bytes -> model pixels, with the pipeline's preprocessing, and the HTTP status of
each way an upload can be bad.

The pixels come from orchard.pipeline.preprocess (decode, any colour mode to RGB, bilinear
resize to 224x224, decompression-bomb limit, EXIF orientation applied), so that training and
serving agree.
"""
from __future__ import annotations

import io
from typing import Dict, List, Optional, Tuple

import numpy as np

from orchard.pipeline.preprocess import ImageError, preprocess


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
    ("HEIC/HEIF image, but no HEIC decoder", 415),
    ("refused as a decompression bomb", 413),
]


def status_of(reason: str) -> int:
    """The HTTP status for one of preprocess's reasons."""
    for start, status in REASON_STATUS:
        if reason.startswith(start):
            return status
    return 422  # corrupt or truncated image, unexpected shape


def pixels_of(data: bytes, size: int = 224) -> np.ndarray:
    """uint8 [size, size, 3] RGB pixels of an uploaded image, upright. Raises BadInput."""
    if not data:
        raise BadInput(400, "empty upload: the request carried no image bytes")
    try:
        return preprocess(data, size).array
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
