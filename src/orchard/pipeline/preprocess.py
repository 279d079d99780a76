"""Image bytes -> model input pixels: decode with Pillow, convert to RGB, resize.

Default: Pillow decode, any mode converted to RGB (transparent pixels composited on white),
resized to size x size with bilinear filtering, as uint8 HxWx3. Large JPEGs are decoded at a
reduced scale first (Pillow `draft`, never below 2x the target size). Images larger than
`MAX_PIXELS` are refused as decompression bombs.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
from PIL import Image, UnidentifiedImageError

MAX_PIXELS = 89_478_485  # Pillow's default Image.MAX_IMAGE_PIXELS (about 0.25 GB of RGBA)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


class ImageError(ValueError):
    """An input file that cannot become model pixels; the message is the reason shown to users."""


@dataclass
class Pixels:
    """Preprocessed pixels and the original size of the image they came from."""

    array: np.ndarray  # uint8 [size, size, 3]
    width: int
    height: int


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB; alpha (and palette transparency) composited on white."""
    if image.mode == "RGB":
        return image
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        scaled = np.asarray(image, dtype=np.float64)
        peak = scaled.max() or 1.0
        image = Image.fromarray((scaled * (255.0 / peak)).astype(np.uint8), mode="L")
    return image.convert("RGB")


def _open(data: bytes) -> Image.Image:
    if not data:
        raise ImageError("empty file (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            head = data[:64].lstrip().lower()
            if head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<")):
                raise ImageError("not an image: the file holds HTML/XML text") from None
            raise ImageError(
                f"not a decodable image: unknown format ({len(data)} bytes, starts {data[:8].hex()})"
            ) from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise ImageError(f"refused as a decompression bomb: {error}") from None
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"refused as a decompression bomb: {width}x{height} = {width * height} pixels "
            f"exceeds the limit of {MAX_PIXELS}"
        )
    return image


def preprocess(data: bytes, size: int = 224) -> Pixels:
    """Decode `data` and return RGB uint8 pixels of size x size; raise ImageError with a reason."""
    image = _open(data)
    width, height = image.size
    try:
        if image.format == "JPEG":
            image.draft("RGB", (2 * size, 2 * size))
        image.load()
        rgb = _to_rgb(image)
        resized = rgb.resize((size, size), Image.BILINEAR)
        array = np.asarray(resized, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"corrupt or truncated image ({image.format}): {error}") from None
    if array.shape != (size, size, 3):
        raise ImageError(f"unexpected pixel array shape {array.shape} after conversion")
    return Pixels(array=array, width=width, height=height)


def try_preprocess(data: Optional[bytes], size: int = 224) -> Tuple[Optional[Pixels], Optional[str]]:
    """Like preprocess, but return (pixels, None) or (None, reason) instead of raising."""
    try:
        return preprocess(data or b"", size), None
    except ImageError as error:
        return None, str(error)
    except Exception as error:  # any decoder failure is an error row, never a crashed task
        return None, f"could not decode image: {type(error).__name__}: {error}"
