"""The single entry point that turns a downloaded document into text for the model."""

from __future__ import annotations

from pomogator.errors import UnsupportedFile

from .detect import check_size, detect_kind
from .document import ExtractedDocument
from .docx import extract_docx
from .pdf import extract_pdf
from .text import extract_text


def extract_document(data: bytes, filename: str, mime_type: str | None, max_chars: int) -> ExtractedDocument:
    """Read a user's document and return at most ``max_chars`` characters of its text.

    Raises ``FileTooLarge`` over Telegram's download limit, ``UnsupportedFile`` (with ``kind``: "image",
    "archive", "executable", "audio", "video", "legacy-office", "spreadsheet", "presentation",
    "other-document", "rtf", "binary") for files it does not read, ``CorruptFile`` and ``EncryptedFile``.
    An image yields ``UnsupportedFile(kind="image")``: send it with ``image_part`` instead.
    This is CPU-bound work; run it in a worker thread from async code.
    """
    if max_chars <= 0:
        raise ValueError("max_chars must be positive")
    check_size(len(data))
    kind = detect_kind(data, filename, mime_type)
    if kind == "pdf":
        return extract_pdf(data, filename, max_chars)
    if kind == "docx":
        return extract_docx(data, filename, max_chars)
    if kind in ("text", "markdown", "csv", "json", "code"):
        return extract_text(data, filename, kind, max_chars)
    raise UnsupportedFile(filename, kind)
