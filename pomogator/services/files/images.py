"""Photos and image files: check the bytes really are an image a model can see, shrink big ones, then encode them."""

from __future__ import annotations

import asyncio
import base64
import functools
import io
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from loguru import logger

from pomogator.errors import CorruptFile, ImagesTooLarge, ImageTooLarge, UnsupportedFile

from .detect import IMAGE_MIME_TYPES, MAX_DOWNLOAD_BYTES, ImageFormat, check_size, sniff_image, sniff_signature

if TYPE_CHECKING:
    from PIL import Image

MAX_IMAGE_BYTES = MAX_DOWNLOAD_BYTES
"""An image file as big as a bot may download (a 50 MP photo, a 5K screenshot) is read: every image is shrunk to
``MAX_SIDE`` before it is sent, and decoding is bounded by pixels (``MAX_DECODED_PIXELS``, Pillow's own bomb limit),
not by bytes."""

MAX_SIDE = 2048
"""The longest side sent: providers scale images down to about this before the model sees (and bills) them."""

SHRINK_OVER_BYTES = 1024 * 1024
"""An image no longer than ``MAX_SIDE`` and no bigger than this goes as it came, byte for byte."""

MIN_DRAFT_SIDE = 1536
"""A big JPEG is decoded at a reduced scale while its longest side stays at least this long (see ``_shrink``)."""

JPEG_QUALITY = 85

MAX_PNG_BYTES = 1024 * 1024
"""A shrunk image with transparency, or a scaled-down PNG or GIF (a screenshot, a chart: sharp edges, few colours),
stays PNG up to this size; a bigger one goes as JPEG, put on white if it has transparency."""

MAX_DECODED_PIXELS = 30_000_000
"""The most pixels one image is decoded to (about 120 MB as RGBA); more is refused. A big JPEG is decoded at 1/2, 1/4
or 1/8 of its size (``MIN_DRAFT_SIDE``), so for a JPEG it is Pillow's own limit on the header that counts
(``PIL.Image.MAX_IMAGE_PIXELS``, about 89 MP)."""

DECODE_SLOTS = 2
"""How many images are decoded at the same time in the whole process: each may take ``MAX_DECODED_PIXELS``."""

MAX_REQUEST_MEDIA_BYTES = 20 * 1024 * 1024
"""The images and scanned PDFs (``file`` parts) of one request together, after shrinking, the new message's and those
kept from the conversation (``pomogator.services.chat.with_recent_media``): the request body and every stored copy
stay bounded, under what providers take in one request (OpenAI and Anthropic 32 MB of base64, Gemini about 20 MB)."""

MAX_SCAN_BYTES = 15 * 1024 * 1024
"""One scanned PDF, which goes to the model whole as a ``file`` part: a bigger one is refused."""

_PIL_FORMATS: dict[ImageFormat, str] = {"jpeg": "JPEG", "png": "PNG", "gif": "GIF", "webp": "WEBP"}
_decoding = threading.BoundedSemaphore(DECODE_SLOTS)
# Images are decoded, shrunk and encoded on threads of their own: on the event loop's default pool, requests with
# many big photos would take its threads, which aiohttp also resolves host names on, and wait there for a slot.
_workers = ThreadPoolExecutor(max_workers=DECODE_SLOTS, thread_name_prefix="images")

_P = ParamSpec("_P")
_T = TypeVar("_T")


async def in_image_workers(work: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """Run CPU-heavy image or file work (``image_part``, encoding a scan) on the image threads; requests beyond
    ``DECODE_SLOTS`` wait their turn there."""
    return await asyncio.get_running_loop().run_in_executor(_workers, functools.partial(work, *args, **kwargs))


def image_part(
    data: bytes,
    mime_type: str | None = None,
    *,
    filename: str = "image",
    max_bytes: int = MAX_IMAGE_BYTES,
) -> dict[str, Any]:
    """An OpenAI ``image_url`` content part with the image as a data URL.

    The format is taken from the bytes (JPEG, PNG, GIF or WEBP), not from ``mime_type``; BMP and TIFF are
    converted (``convert_image``). Another image format (HEIC, PSD...) or a file of another kind raises
    ``UnsupportedFile``; bytes that claim to be a supported image (by ``mime_type`` or ``filename``) but are not one
    raise ``CorruptFile``. An image with more
    pixels than can be decoded safely (a decompression bomb) raises ``ImageTooLarge``.

    A big image is shrunk (see ``shrink_image``): this is CPU-bound. The bot makes its photos' parts in a child
    process (``isolated.read_image``); in this process call it through ``in_image_workers``.
    """
    check_size(len(data), max_bytes)
    image_format = sniff_image(data)
    if image_format is None and convertible(data):
        data, image_format = convert_image(data, filename)
    elif image_format is None:
        other = sniff_signature(data)
        if other is None and _claims_image(mime_type, filename):
            raise CorruptFile(filename)
        if other == "image" and data[4:8] == b"ftyp" and data[8:12] != b"avif":
            raise UnsupportedFile(filename, "heic")
        raise UnsupportedFile(filename, other or "unknown")
    else:
        data, image_format = shrink_image(data, image_format, filename)
    encoded = base64.b64encode(data).decode("ascii")
    return {
        "type": "image_url",
        "image_url": {"url": f"data:{IMAGE_MIME_TYPES[image_format]};base64,{encoded}"},
    }


def convertible(data: bytes) -> bool:
    """BMP (a Windows bitmap header) and TIFF (office scanners, fax software), which models do not take but Pillow
    reads."""
    return (data[:2] == b"BM" and data[6:10] == b"\x00\x00\x00\x00") or data[:4] in (b"II*\x00", b"MM\x00*")


def convert_image(data: bytes, filename: str = "image") -> tuple[bytes, ImageFormat]:
    """A BMP or TIFF (its first page) as PNG or JPEG no longer than ``MAX_SIDE``, under the same pixel limits as
    ``shrink_image``. Raises ``ImageTooLarge`` for too many pixels and ``CorruptFile`` when Pillow cannot read it."""
    from PIL import Image, ImageOps

    try:
        with Image.open(io.BytesIO(data), formats=["BMP", "TIFF"]) as image:
            width, height = image.size
            limit = min(Image.MAX_IMAGE_PIXELS or MAX_DECODED_PIXELS, MAX_DECODED_PIXELS)
            if width * height > limit:
                raise ImageTooLarge(filename, limit, (width, height))
            with _decoding:
                image.load()
                if image.mode == "1":  # a fax or a bilevel scan: greys keep it sharp when scaled
                    converted = image.convert("L")
                elif image.mode not in ("RGB", "RGBA", "L", "LA"):
                    converted = image.convert("RGBA" if _has_alpha(image) else "RGB")
                else:
                    converted = image.copy()
                converted.thumbnail((MAX_SIDE, MAX_SIDE))
                return _encode(ImageOps.exif_transpose(converted), try_png=True)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(filename, Image.MAX_IMAGE_PIXELS or 0) from exc
    except ImageTooLarge:
        raise
    except Exception as exc:  # Pillow raises many kinds of errors on damaged or unusual input
        raise CorruptFile(filename) from exc


def shrink_image(data: bytes, image_format: ImageFormat, filename: str = "image") -> tuple[bytes, ImageFormat]:
    """The image as it goes to the model: no longer than ``MAX_SIDE`` on its longest side, re-encoded as JPEG
    (quality ``JPEG_QUALITY``; PNG while it has transparency and stays under ``MAX_PNG_BYTES``) when it is longer
    than that or over ``SHRINK_OVER_BYTES``. Other images come back unchanged, byte for byte, as do images Pillow
    cannot read (the provider judges them, as it did before). The EXIF orientation is applied and the rest of the
    metadata (GPS included) dropped. Raises ``ImageTooLarge`` for a decompression bomb.
    """
    # Imported on first use: a process that never sees an image does not pay Pillow's ~3-4 MiB.
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=[_PIL_FORMATS[image_format]]) as image:
            width, height = image.size
            if Image.MAX_IMAGE_PIXELS is not None and width * height > Image.MAX_IMAGE_PIXELS:
                # Pillow only warns up to twice its limit; such an image is refused all the same.
                raise ImageTooLarge(filename, Image.MAX_IMAGE_PIXELS, (width, height))
            if max(width, height) <= MAX_SIDE and len(data) <= SHRINK_OVER_BYTES:
                return data, image_format
            with _decoding:
                shrunk, shrunk_format = _shrink(image, filename)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # The warning is raised where warnings are errors (as in the tests); either way the size is only in the text.
        raise ImageTooLarge(filename, Image.MAX_IMAGE_PIXELS or 0) from exc
    except ImageTooLarge:
        raise
    except Exception as exc:  # Pillow raises many kinds of errors on damaged or unusual input
        logger.warning("Image {!r} ({} bytes) goes unchanged: Pillow cannot read it: {!r}", filename, len(data), exc)
        return data, image_format
    if max(width, height) <= MAX_SIDE and shrunk_format == image_format and len(shrunk) >= len(data):
        # Re-encoding saved nothing.
        return data, image_format
    return shrunk, shrunk_format


def _shrink(image: Image.Image, filename: str) -> tuple[bytes, ImageFormat]:
    from PIL import ImageOps

    width, height = image.size
    source = image.format
    if source == "JPEG" and max(width, height) > MIN_DRAFT_SIDE:
        # libjpeg decodes at 1/2, 1/4 or 1/8 of the size in a fraction of the time and memory (a 50 MP photo takes
        # ~20 MB, not 150); down to MIN_DRAFT_SIDE, which providers scale to anyway.
        scale = MIN_DRAFT_SIDE / max(width, height)
        image.draft(None, (max(1, round(width * scale)), max(1, round(height * scale))))
    decoded_width, decoded_height = image.size
    if decoded_width * decoded_height > MAX_DECODED_PIXELS:
        raise ImageTooLarge(filename, MAX_DECODED_PIXELS, (width, height))
    if image.mode not in ("RGB", "RGBA", "L", "LA"):
        # Palette (GIF, some PNGs), 16-bit, CMYK...: resampled smoothly, and encoded below, only in these modes.
        image = image.convert("RGBA" if _has_alpha(image) else "RGB")
    image.thumbnail((MAX_SIDE, MAX_SIDE))
    # A big screenshot or chart scaled down often stays smaller, and sharper, as PNG.
    scaled_graphics = source in ("PNG", "GIF") and max(width, height) > MAX_SIDE
    return _encode(ImageOps.exif_transpose(image), try_png=scaled_graphics)


def _encode(image: Image.Image, *, try_png: bool) -> tuple[bytes, ImageFormat]:
    """PNG when the image (RGB, RGBA, L or LA) has transparency or ``try_png``, and the PNG stays under
    ``MAX_PNG_BYTES``; else JPEG."""
    from PIL import Image

    transparent = False
    if image.mode in ("RGBA", "LA"):
        alpha_min, _ = image.getchannel("A").getextrema()
        transparent = isinstance(alpha_min, int | float) and alpha_min < 255
        if not transparent:
            image = image.convert("L" if image.mode == "LA" else "RGB")
    if transparent or try_png:
        png = _save(image, "PNG")
        if len(png) <= MAX_PNG_BYTES:
            return png, "png"
    if transparent:
        flat = Image.new("RGB", image.size, (255, 255, 255))
        flat.paste(image, mask=image.getchannel("A"))
        image = flat
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    return _save(image, "JPEG", quality=JPEG_QUALITY), "jpeg"


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info)


def _save(image: Image.Image, pil_format: str, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, pil_format, **options)
    return out.getvalue()


def _data_url_bytes(url: str) -> int:
    if not url.startswith("data:"):
        return 0
    payload = url.partition(",")[2]
    return len(payload) * 3 // 4 - payload[-2:].count("=")


def media_bytes(parts: Iterable[dict[str, Any]]) -> int:
    """How many bytes the images (``image_url`` parts with data URLs) and files (``file`` parts: scanned PDFs) of
    ``parts`` carry, decoded."""
    total = 0
    for part in parts:
        kind = part.get("type")
        if kind == "image_url":
            total += _data_url_bytes(str(part.get("image_url", {}).get("url", "")))
        elif kind == "file":
            total += _data_url_bytes(str(part.get("file", {}).get("file_data", "")))
    return total


def check_media_total(parts: Iterable[dict[str, Any]], limit: int = MAX_REQUEST_MEDIA_BYTES) -> None:
    """Raise ``ImagesTooLarge`` when the images and files of one message carry more than ``limit`` bytes together."""
    media = [part for part in parts if part.get("type") in ("image_url", "file")]
    total = media_bytes(media)
    if total > limit:
        raise ImagesTooLarge(total, limit, len(media))


def _claims_image(mime_type: str | None, filename: str) -> bool:
    if mime_type and mime_type.split(";", 1)[0].strip().lower() in (*IMAGE_MIME_TYPES.values(), "image/jpg"):
        return True
    return filename.lower().endswith((".jpg", ".jpeg", ".jpe", ".png", ".gif", ".webp"))
