"""The result of reading a user's document, and the shared cut-to-fit rule."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Literal

DocumentKind = Literal["text", "markdown", "csv", "json", "code", "pdf", "docx"]

StopReason = Literal["context", "cap", "pages", "time", "unreadable"]
"""Why a document was not read whole: its text is longer than the model's context holds, or than the text one request
may carry (``MAX_DOCUMENTS_CHARS``), or a PDF's reading stopped at the page cap, at the time budget or after too many
pages that could not be read."""

MAX_DOCUMENTS_CHARS = 400_000
"""The text of one request's documents together, whatever the model's context (about 130k tokens, a 250-page
book). The text stays in the conversation and goes to the model again with every follow-up question, while the
quota counts requests, not tokens: on a million-token model one document could cost dollars per question."""

PictureLoss = Literal["vision", "format", "unreadable", "count", "size", "time"]
"""Why a picture of a DOCX does not go to the model: the model cannot see; a format models do not take (EMF, WMF);
damaged or too big to decode; over the pictures one document may give; over the bytes of media a request may carry;
reading the pictures took too long."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtractedDocument:
    """Text taken from a user's file, ready to be wrapped into a prompt.

    ``total_chars`` is the length of the whole text before it was cut; it is ``None`` when the text was not
    read to the end (a long PDF is read only page by page until the limit is reached). ``pages_read`` and
    ``pages_total`` are set for PDFs only. ``needs_file_part`` means the text layer is empty (a scanned PDF)
    and the original file should be sent to the model as a file part instead; a PDF with text whose
    ``scanned_pages`` (numbered from 1) are pictures of pages needs it too, and keeps its ``text`` for when the file
    cannot be sent. ``stopped_by`` says why a ``truncated`` document was not read whole.

    ``pictures`` are the ``image_url`` parts of the pictures a DOCX shows, in document order, ready for a model that
    sees; ``pictures_left_out`` numbers (from 1, counting all the pictures of the document) those that do not go,
    each with why. Decorative pictures (a few pixels high, a line, a bullet) are in neither.
    """

    filename: str
    kind: DocumentKind
    text: str
    truncated: bool = False
    total_chars: int | None = None
    pages_read: int | None = None
    pages_total: int | None = None
    needs_file_part: bool = False
    encoding: str | None = None
    stopped_by: StopReason | None = None
    scanned_pages: tuple[int, ...] = ()
    pictures: tuple[dict[str, Any], ...] = ()
    pictures_left_out: tuple[tuple[int, PictureLoss], ...] = ()

    @property
    def picture_count(self) -> int:
        """The pictures of the document, those that go to the model and those left out."""
        return len(self.pictures) + len(self.pictures_left_out)


PAGE_MARKER = "--- page {} ---"
"""What heads each page's text of a PDF of more than one page."""
_PAGE_MARKERS = re.compile(r"^--- page (\d+) ---$", re.MULTILINE)


def cut_further(doc: ExtractedDocument, max_chars: int, stopped_by: StopReason) -> ExtractedDocument:
    """``doc`` cut to ``max_chars`` after it was read (``cut_to_fit``), for ``stopped_by``; a PDF's ``pages_read``
    then counts the pages whose text is left, the last one perhaps in part."""
    text, _ = cut_to_fit(doc.text, max_chars)
    pages_read = doc.pages_read
    if doc.kind == "pdf" and pages_read is not None:
        markers = _PAGE_MARKERS.findall(text)
        pages_read = int(markers[-1]) if markers else min(pages_read, 1)
    return replace(doc, text=text, truncated=True, stopped_by=stopped_by, pages_read=pages_read)


def cut_to_fit(text: str, max_chars: int) -> tuple[str, bool]:
    """Return ``text`` cut to at most ``max_chars`` characters, preferably at a line boundary.

    A cut falls at the last line break inside the limit; when the only line break is in the first half (one
    enormous line), the cut falls at the last whitespace, and failing that exactly at the limit.
    """
    if max_chars <= 0:
        raise ValueError("max_chars must be positive")
    if len(text) <= max_chars:
        return text, False
    head = text[:max_chars]
    newline = head.rfind("\n")
    if newline >= max_chars // 2:
        return head[:newline].rstrip(), True
    space = max(head.rfind(" "), head.rfind("\t"))
    if space >= max_chars // 2:
        return head[:space].rstrip(), True
    return head, True
