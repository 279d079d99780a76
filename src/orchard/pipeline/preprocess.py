"""Image bytes -> model input pixels: decode with Pillow, turn upright, convert to RGB, resize.

Default: Pillow decode (HEIC/HEIF through the pillow-heif plugin when installed), the EXIF
orientation applied (a corrupt EXIF block leaves the image as stored), any mode converted to
RGB (transparent pixels composited on white: alpha channels, and tRNS colour keys in RGB, L
and P images),
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
from PIL import Image, ImageOps, UnidentifiedImageError

try:  # HEIC/HEIF (iPhone photos): the pillow-heif plugin, when installed
    from pillow_heif import register_heif_opener
except ImportError:  # pragma: no cover - then HEIC files are error rows that say so
    register_heif_opener = None
else:
    register_heif_opener()

MAX_PIXELS = 89_478_485  # Pillow's default Image.MAX_IMAGE_PIXELS (about 0.25 GB of RGBA)
# The one place that decides which files are images: the extensions Pillow (with its plugins)
# registers for these formats, in any letter case.
IMAGE_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF", "GIF", "HEIF", "AVIF")
ORIENTATION_TAG = 0x0112  # EXIF Orientation: 5-8 swap width and height
HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")
AVIF_BRANDS = (b"avif", b"avis")


def image_extensions() -> tuple:
    """Lower-case extensions ('.jpg', ...) of the IMAGE_FORMATS this Pillow can open."""
    Image.init()
    return tuple(sorted(ext.lower() for ext, name in Image.registered_extensions().items()
                        if name in IMAGE_FORMATS and name in Image.OPEN))


IMAGE_EXTENSIONS = image_extensions()


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


def sniff_format(data: bytes) -> Optional[str]:
    """The format named by the first bytes of a file (magic bytes), or None when unknown."""
    head = data[:64]
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in HEIF_BRANDS:
            return "HEIC/HEIF"
        if brand in AVIF_BRANDS:
            return "AVIF"
        return f"ISO media (brand {brand.decode('ascii', 'replace').strip()}: a video?)"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    signatures = (
        (b"\xff\xd8\xff", "JPEG"), (b"\x89PNG", "PNG"), (b"GIF8", "GIF"), (b"BM", "BMP"),
        (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"%PDF", "PDF"), (b"PK\x03\x04", "ZIP"),
        (b"\x1f\x8b", "gzip"), (b"8BPS", "Photoshop PSD"), (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    )
    for magic, name in signatures:
        if head.startswith(magic):
            return name
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html")):
        return "HTML"
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in data[:1024].lower()):
        return "SVG"
    if text.startswith((b"<?xml", b"<")):
        return "XML"
    return None


def displayed_size(image: Image.Image) -> Tuple[int, int]:
    """(width, height) as the image is displayed: swapped by EXIF orientations 5-8."""
    width, height = image.size
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Corrupt EXIF data": the image is shown as stored
            orientation = image.getexif().get(ORIENTATION_TAG, 1)
    except Exception:  # a corrupt EXIF block: shown as stored
        return width, height
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def upright(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation says (ImageOps.exif_transpose); as stored when
    the EXIF block is corrupt."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ImageOps.exif_transpose(image)
    except Exception:
        image.load()
        return image


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB; alpha and colour-key (tRNS) transparency composited on white."""
    if "transparency" in image.info and image.mode in ("P", "RGB", "L"):
        image = image.convert("RGBA")
    if image.mode == "RGB":
        return image
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
        warnings.simplefilter("ignore", UserWarning)  # "Corrupt EXIF data": the image is shown as stored
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise ImageError(undecodable_reason(data)) from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise ImageError(f"refused as a decompression bomb: {error}") from None
        except (OSError, SyntaxError, ValueError) as error:  # a known format, broken bytes
            raise ImageError(f"corrupt or truncated image ({sniff_format(data) or 'unknown format'}): "
                             f"{error}") from None
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"refused as a decompression bomb: {width}x{height} = {width * height} pixels "
            f"exceeds the limit of {MAX_PIXELS}"
        )
    return image


def undecodable_reason(data: bytes) -> str:
    """Why Pillow could not open `data`, naming the real format found in its bytes."""
    found = sniff_format(data)
    if found is None:
        return f"not a decodable image: unknown format ({len(data)} bytes)"
    if found == "HEIC/HEIF" and register_heif_opener is None:
        return "HEIC/HEIF image, but no HEIC decoder is installed (pip install pillow-heif)"
    if found in ("HTML", "XML", "SVG", "PDF", "ZIP", "gzip") or found.startswith("ISO media"):
        return f"not an image: the file holds {found} data ({len(data)} bytes)"
    return f"not a decodable image: {found} data that Pillow cannot open ({len(data)} bytes)"


def preprocess(data: bytes, size: int = 224) -> Pixels:
    """Decode `data` and return RGB uint8 pixels of size x size; raise ImageError with a reason."""
    image = _open(data)
    width, height = displayed_size(image)
    try:
        if image.format == "JPEG":
            image.draft("RGB", (2 * size, 2 * size))
        image.load()
        rgb = _to_rgb(upright(image))
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
        found = sniff_format(data or b"") or "unknown format"
        return None, f"could not decode image ({found}): {type(error).__name__}: {error}"
