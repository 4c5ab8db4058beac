"""PDF: read the text layer page by page, only as far as the model's context, a page cap and a time budget allow.

A small crafted PDF can make pypdf work for seconds on every page (many pages sharing one enormous content
stream) or hold gigabytes of decoded streams. The caps below keep an ordinary reading short; the hard limits
(wall clock, memory, CPU) come from the child process the bot reads documents in (``isolated.py``).
"""

from __future__ import annotations

import base64
import io
import time
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from pomogator.errors import CorruptFile, EmptyFile, EncryptedFile, FileError, FileTooComplex

from .document import PAGE_MARKER, ExtractedDocument, StopReason, cut_to_fit

if TYPE_CHECKING:
    from pypdf import PdfReader

MAX_BLANK_PAGES = 50
"""A PDF whose first pages carry no text at all is taken for a scan without reading the rest."""

MAX_PAGES = 500
"""Pages read at most. A document long enough to fill a context is cut by ``max_chars`` well before this; the cap
stops files of nearly empty pages (or of pages that only fail) from being read to the end."""

MAX_UNREADABLE_PAGES = 10
"""Reading stops once this many pages could not be parsed and they outnumber the pages that could."""

TIME_BUDGET_S = 30.0
"""Reading stops between pages after this long and the model gets the pages read so far. Half the reader process's
wall-clock limit (``isolated.READ_TIMEOUT_S``): the page being read when the budget runs out must still finish."""

DECODED_STREAM_LIMIT = 20 * 1024 * 1024
"""pypdf decodes a stream to at most this many bytes (its default, 75 MB, is kept in memory for every page that
shares or repeats such a stream). A text page's content stream is kilobytes; the pages over it are reported as
unreadable."""

PARSING_WORK_LIMIT = 500_000
"""pypdf's budget of tokens per content stream (its default is 2 million, about 10 s of work per page). A page of
dense text has a few thousand; only huge vector drawings come near it."""

SCANNED_PAGE_MAX_LETTERS = 200
"""A page with fewer letters than this in its text layer and a page-sized picture is taken for a scan: its text is
a page number, an e-signature stamp or a scanner's watermark, not what the page says."""

SCANNED_PAGE_MIN_PIXELS = 500_000
"""The pixels of a picture that can be a scanned page (A4 at 100 dpi has about 970 000); a logo has far fewer."""

SCANNED_SHARE = 0.25
"""The share of the pages read that must look scanned for the whole PDF to go to the model as a file. A cover photo,
a full-page picture or a brochure's spread in a document with a text layer is one such page among many: the
document goes as its text."""

MAX_FORM_FIELDS = 1000
"""Filled form fields added to the text at most; a value is cut at ``MAX_FIELD_CHARS``."""
MAX_FIELD_CHARS = 2000
FORM_HEADER = "--- form fields ---"

PAGE_SEPARATOR = "\n\n"
UNREADABLE_PAGE = "[this page could not be read]"


def _limits() -> AbstractContextManager[Any]:
    # Imported on first use: few messages carry a PDF, and pypdf costs ~7 MiB of memory and ~0.1 s to import.
    from pypdf import apply_configuration

    # A context variable: the limits hold for this reading only, whatever thread it runs in.
    return apply_configuration(
        zlib_maximum_output_length=DECODED_STREAM_LIMIT,
        lzw_maximum_output_length=DECODED_STREAM_LIMIT,
        run_length_maximum_output_length=DECODED_STREAM_LIMIT,
        brotli_maximum_output_length=DECODED_STREAM_LIMIT,
        array_based_stream_maximum_output_length=DECODED_STREAM_LIMIT,
        stream_parsing_work_maximum_count=PARSING_WORK_LIMIT,
    )


def _open(data: bytes, filename: str) -> PdfReader:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError

    try:
        reader = PdfReader(io.BytesIO(data))
        # The reader has already tried the empty password: owner-only protection (no printing, no copying)
        # does not stop reading.
        if reader.is_encrypted and not reader.decrypt(""):
            raise EncryptedFile(filename)
        _ = len(reader.pages)
    except (FileError, MemoryError):
        raise
    except (DependencyError, FileNotDecryptedError) as exc:
        # AES needs an optional crypto library; without it an encrypted file cannot be read at all.
        raise EncryptedFile(filename) from exc
    except Exception as exc:  # pypdf raises many kinds of errors on damaged input
        raise CorruptFile(filename) from exc
    return reader


def _has_page_image(page: Any) -> bool:
    """Whether ``page`` draws a picture big enough to be a scanned page, directly or inside a form it draws."""
    from pypdf.generic import DictionaryObject

    def images_in(resources: Any, depth: int) -> bool:
        resources = resources.get_object() if resources is not None else None
        if not isinstance(resources, DictionaryObject):
            return False
        xobjects = resources.get("/XObject")
        xobjects = xobjects.get_object() if xobjects is not None else None
        if not isinstance(xobjects, DictionaryObject):
            return False
        for value in xobjects.values():
            xobject = value.get_object()
            if not isinstance(xobject, DictionaryObject):
                continue
            subtype = xobject.get("/Subtype")
            if subtype == "/Image":
                width, height = xobject.get("/Width", 0), xobject.get("/Height", 0)
                if isinstance(width, int) and isinstance(height, int) and width * height >= SCANNED_PAGE_MIN_PIXELS:
                    return True
            elif subtype == "/Form" and depth < 2 and images_in(xobject.get("/Resources"), depth + 1):
                return True
        return False

    try:
        return images_in(page.get("/Resources"), 0)
    except MemoryError:
        raise
    except Exception:  # damaged resources: the page is judged by its text alone
        return False


def _is_scanned(page: Any, text: str) -> bool:
    return sum(char.isalpha() for char in text) < SCANNED_PAGE_MAX_LETTERS and _has_page_image(page)


def _form_values(reader: PdfReader) -> list[str]:
    """The filled fields of the PDF's form as ``label: value`` lines (the label is the field's description, else its
    name; a checkbox is ☑ or ☐): ``extract_text`` reads only what the pages draw, not the values typed into a form.
    Fields without a value and signatures are left out."""
    from pypdf.generic import NameObject

    try:
        fields = reader.get_fields() or {}
    except MemoryError:
        raise
    except Exception:  # a damaged form: the pages' text still goes
        return []
    lines: list[str] = []
    for name, field in fields.items():
        value = field.get("/V")
        kind = field.get("/FT")
        if value is None or kind == "/Sig" or len(lines) >= MAX_FORM_FIELDS:
            continue
        radio = int(field.get("/Ff", 0) or 0) & (1 << 15)
        if kind == "/Btn" and isinstance(value, NameObject) and not radio:
            shown = "☐" if value == "/Off" else "☑"
        elif isinstance(value, list):
            shown = ", ".join(str(item) for item in value)
        else:
            shown = str(value).removeprefix("/") if isinstance(value, NameObject) else str(value)
        shown = " ".join(shown.split())[:MAX_FIELD_CHARS]
        if shown and not (radio and shown == "Off"):
            label = " ".join(str(field.get("/TU") or name).split())
            lines.append(f"{label}: {shown}")
    return lines


def extract_pdf(data: bytes, filename: str, max_chars: int, *, time_budget: float = TIME_BUDGET_S) -> ExtractedDocument:
    """Read the text of a PDF, stopping at the first page that takes the text over ``max_chars``.

    Pages are marked ``--- page N ---`` when the file has more than one. A page that cannot be parsed is
    marked as unreadable and skipped. A PDF without any text becomes ``needs_file_part=True`` with empty text; one
    with pages that are pictures of pages (a scan with a page number, a stamp or a watermark in its text layer, or
    partly scanned) too, with those pages in ``scanned_pages`` and the text read kept. The values filled into the
    PDF's form follow the pages (``_form_values``). Pages that look scanned count only when they are at least
    ``SCANNED_SHARE`` of the pages read.
    Reading also stops after ``MAX_PAGES`` pages, after ``MAX_UNREADABLE_PAGES`` failed ones, and between pages
    once ``time_budget`` seconds have passed: what was read goes on, cut, and ``stopped_by`` says why. Raises
    ``FileTooComplex`` when the time ran out, or pages hit pypdf's limits, before any text was found;
    ``EmptyFile`` for a PDF without pages, ``EncryptedFile`` and ``CorruptFile``.
    """
    if max_chars <= 0:
        raise ValueError("max_chars must be positive")
    if b"%PDF-" not in data[:1024]:
        raise CorruptFile(filename)
    from pypdf.errors import LimitReachedError

    deadline = time.monotonic() + time_budget
    with _limits():
        reader = _open(data, filename)
        total = len(reader.pages)
        if total == 0:
            raise EmptyFile(filename)
        parts: list[str] = []
        length = 0
        pages_read = 0
        unreadable = 0
        over_limits = False
        seen_text = False
        scanned: list[int] = []
        stopped_by: StopReason | None = "pages" if total > MAX_PAGES else None
        for number in range(min(total, MAX_PAGES)):
            if not seen_text and number >= MAX_BLANK_PAGES:
                break
            if unreadable >= MAX_UNREADABLE_PAGES and unreadable * 2 > pages_read:
                stopped_by = "unreadable"
                break
            if number and time.monotonic() >= deadline:
                if not seen_text:
                    raise FileTooComplex(filename)
                stopped_by = "time"
                break
            try:
                page = reader.pages[number]
                page_text = page.extract_text() or ""
                if _is_scanned(page, page_text):
                    scanned.append(number + 1)
            except MemoryError:
                raise
            except Exception as exc:  # one broken page should not cost the rest of the document
                page_text = UNREADABLE_PAGE
                unreadable += 1
                over_limits = over_limits or isinstance(exc, LimitReachedError)
            else:
                seen_text = seen_text or bool(page_text.strip())
            pages_read += 1
            chunk = (PAGE_MARKER.format(number + 1) + "\n" if total > 1 else "") + page_text.strip()
            parts.append(chunk)
            length += len(chunk) + len(PAGE_SEPARATOR)
            if length > max_chars:
                stopped_by = "context"
                break
    if not seen_text and over_limits:
        # Not a scan: pages that hit the limits above would only make the model's provider do the same work.
        raise FileTooComplex(filename)
    if not seen_text:
        return ExtractedDocument(
            filename=filename,
            kind="pdf",
            text="",
            pages_read=pages_read,
            pages_total=total,
            needs_file_part=True,
        )
    with _limits():
        form = _form_values(reader)
    if form:
        parts.append("\n".join([FORM_HEADER, *form]))
    text = PAGE_SEPARATOR.join(parts)
    cut, truncated = cut_to_fit(text, max_chars)
    read_all = pages_read == total
    if len(scanned) < SCANNED_SHARE * pages_read:
        scanned = []
    if truncated:
        stopped_by = "context"
    return ExtractedDocument(
        filename=filename,
        kind="pdf",
        text=cut,
        truncated=truncated or not read_all,
        total_chars=len(text) if read_all else None,
        pages_read=pages_read,
        pages_total=total,
        stopped_by=(stopped_by or "context") if truncated or not read_all else None,
        needs_file_part=bool(scanned),
        scanned_pages=tuple(scanned),
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
