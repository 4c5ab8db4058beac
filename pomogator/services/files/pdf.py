"""PDF: read the text layer page by page, only as far as the model's context can hold."""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING, Any

from pomogator.errors import CorruptFile, EncryptedFile, FileError

from .document import ExtractedDocument, cut_to_fit

if TYPE_CHECKING:
    from pypdf import PdfReader

MAX_BLANK_PAGES = 50
"""A PDF whose first pages carry no text at all is taken for a scan without reading the rest."""

PAGE_SEPARATOR = "\n\n"


def _open(data: bytes, filename: str) -> PdfReader:
    if b"%PDF-" not in data[:1024]:
        raise CorruptFile(filename)
    # Imported on first use: few messages carry a PDF, and pypdf costs the bot ~7 MiB of memory from the start.
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError

    try:
        reader = PdfReader(io.BytesIO(data))
        # The reader has already tried the empty password: owner-only protection (no printing, no copying)
        # does not stop reading.
        if reader.is_encrypted and not reader.decrypt(""):
            raise EncryptedFile(filename)
        _ = len(reader.pages)
    except FileError:
        raise
    except (DependencyError, FileNotDecryptedError) as exc:
        # AES needs an optional crypto library; without it an encrypted file cannot be read at all.
        raise EncryptedFile(filename) from exc
    except Exception as exc:  # pypdf raises many kinds of errors on damaged input
        raise CorruptFile(filename) from exc
    return reader


def extract_pdf(data: bytes, filename: str, max_chars: int) -> ExtractedDocument:
    """Read the text of a PDF, stopping at the first page that takes the text over ``max_chars``.

    Pages are marked ``--- page N ---`` when the file has more than one. A page that cannot be parsed is
    marked as unreadable and skipped. A PDF without any text becomes ``needs_file_part=True`` with empty text.
    """
    if max_chars <= 0:
        raise ValueError("max_chars must be positive")
    reader = _open(data, filename)
    total = len(reader.pages)
    parts: list[str] = []
    length = 0
    pages_read = 0
    seen_text = False
    for number in range(total):
        if not seen_text and number >= MAX_BLANK_PAGES:
            break
        try:
            page_text = reader.pages[number].extract_text() or ""
        except Exception:  # one broken page should not cost the rest of the document
            page_text = "[this page could not be read]"
        else:
            seen_text = seen_text or bool(page_text.strip())
        pages_read += 1
        chunk = (f"--- page {number + 1} ---\n" if total > 1 else "") + page_text.strip()
        parts.append(chunk)
        length += len(chunk) + len(PAGE_SEPARATOR)
        if length > max_chars:
            break
    if not seen_text:
        return ExtractedDocument(
            filename=filename,
            kind="pdf",
            text="",
            pages_read=pages_read,
            pages_total=total,
            needs_file_part=True,
        )
    text = PAGE_SEPARATOR.join(parts)
    cut, truncated = cut_to_fit(text, max_chars)
    read_all = pages_read == total
    return ExtractedDocument(
        filename=filename,
        kind="pdf",
        text=cut,
        truncated=truncated or not read_all,
        total_chars=len(text) if read_all else None,
        pages_read=pages_read,
        pages_total=total,
    )


def pdf_file_part(data: bytes, filename: str) -> dict[str, Any]:
    """An OpenRouter ``file`` content part carrying the whole PDF, for models to read a scan themselves."""
    encoded = base64.b64encode(data).decode("ascii")
    return {
        "type": "file",
        "file": {
            "filename": filename or "document.pdf",
            "file_data": f"data:application/pdf;base64,{encoded}",
        },
    }
