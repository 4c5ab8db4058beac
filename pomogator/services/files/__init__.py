"""Turn users' files into model input: text extracted from documents, data-URL parts for images and scans.

Pure Python, no Telegram: the bot downloads the bytes and passes them here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .detect import MAX_DOWNLOAD_BYTES, FileKind, check_size, detect_kind, sniff_image, sniff_signature
from .document import MAX_DOCUMENTS_CHARS, DocumentKind, ExtractedDocument, PictureLoss, cut_further, cut_to_fit
from .docx import MAX_UNCOMPRESSED_BYTES, check_zip_bounds
from .extract import declared_kind, extract_document
from .pdf import pdf_file_part
from .prompt import DEFAULT_QUESTION, document_content, document_prompt, truncation_note

if TYPE_CHECKING:
    from .images import (
        MAX_IMAGE_BYTES,
        MAX_REQUEST_MEDIA_BYTES,
        MAX_SCAN_BYTES,
        check_media_total,
        image_part,
        in_image_workers,
        media_bytes,
    )
    from .isolated import ReadLimits, read_document, read_image
    from .pictures import MAX_DOCUMENT_PICTURES, fit_pictures

# Loaded on first use: the child process that reads a document (``isolated``) starts by importing this package, and
# needs neither images.py (Pillow, loguru) nor isolated.py (asyncio) — about 40 ms of its start-up.
_LAZY = {
    "MAX_IMAGE_BYTES": "images",
    "MAX_REQUEST_MEDIA_BYTES": "images",
    "MAX_SCAN_BYTES": "images",
    "check_media_total": "images",
    "media_bytes": "images",
    "image_part": "images",
    "in_image_workers": "images",
    "ReadLimits": "isolated",
    "read_document": "isolated",
    "read_image": "isolated",
    "MAX_DOCUMENT_PICTURES": "pictures",
    "fit_pictures": "pictures",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


__all__ = [
    "DEFAULT_QUESTION",
    "MAX_DOCUMENTS_CHARS",
    "MAX_DOCUMENT_PICTURES",
    "MAX_DOWNLOAD_BYTES",
    "MAX_IMAGE_BYTES",
    "MAX_REQUEST_MEDIA_BYTES",
    "MAX_SCAN_BYTES",
    "MAX_UNCOMPRESSED_BYTES",
    "DocumentKind",
    "ExtractedDocument",
    "FileKind",
    "PictureLoss",
    "ReadLimits",
    "check_media_total",
    "check_size",
    "check_zip_bounds",
    "cut_further",
    "cut_to_fit",
    "declared_kind",
    "detect_kind",
    "document_content",
    "document_prompt",
    "extract_document",
    "fit_pictures",
    "image_part",
    "in_image_workers",
    "media_bytes",
    "pdf_file_part",
    "read_document",
    "read_image",
    "sniff_image",
    "sniff_signature",
    "truncation_note",
]
