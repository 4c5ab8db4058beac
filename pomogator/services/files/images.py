"""Photos and image files: check the bytes really are an image a model can see, then encode them."""

from __future__ import annotations

import base64
from typing import Any

from pomogator.errors import CorruptFile, UnsupportedFile

from .detect import IMAGE_MIME_TYPES, check_size, sniff_image, sniff_signature

MAX_IMAGE_BYTES = 10 * 1024 * 1024
"""Larger images are refused: providers reject them or bill them heavily."""


def image_part(
    data: bytes,
    mime_type: str | None = None,
    *,
    filename: str = "image",
    max_bytes: int = MAX_IMAGE_BYTES,
) -> dict[str, Any]:
    """An OpenAI ``image_url`` content part with the image as a data URL.

    The format is taken from the bytes (JPEG, PNG, GIF or WEBP), not from ``mime_type``. Another image format
    (HEIC, BMP, TIFF...) or a file of another kind raises ``UnsupportedFile``; bytes that claim to be a
    supported image (by ``mime_type`` or ``filename``) but are not one raise ``CorruptFile``.
    """
    check_size(len(data), max_bytes)
    image_format = sniff_image(data)
    if image_format is None:
        other = sniff_signature(data)
        if other is None and _claims_image(mime_type, filename):
            raise CorruptFile(filename)
        raise UnsupportedFile(filename, other or "unknown")
    encoded = base64.b64encode(data).decode("ascii")
    return {
        "type": "image_url",
        "image_url": {"url": f"data:{IMAGE_MIME_TYPES[image_format]};base64,{encoded}"},
    }


def _claims_image(mime_type: str | None, filename: str) -> bool:
    if mime_type and mime_type.split(";", 1)[0].strip().lower() in (*IMAGE_MIME_TYPES.values(), "image/jpg"):
        return True
    return filename.lower().endswith((".jpg", ".jpeg", ".jpe", ".png", ".gif", ".webp"))
