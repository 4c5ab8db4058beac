"""Wrap an extracted document and the user's question into the text sent to the model."""

from __future__ import annotations

import html
import re
from typing import Any

from .document import ExtractedDocument
from .pdf import pdf_file_part

DEFAULT_QUESTION = "Summarise the main points of this file."

MAX_NAME_CHARS = 200

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_CLOSING_TAG = re.compile(r"</(file)", re.IGNORECASE)


def safe_filename(filename: str) -> str:
    """The file name as an attribute value: control characters removed, length bounded, markup escaped."""
    name = _CONTROL.sub(" ", filename).strip() or "file"
    if len(name) > MAX_NAME_CHARS:
        name = name[: MAX_NAME_CHARS - 1] + "…"
    return html.escape(name, quote=True)


_STOPPED = {
    "pages": "Only the first pages of the file were read (the reader's page limit, not the model's context)",
    "cap": "The file was cut to the text one request may carry (the bot's limit, not the model's context)",
    "time": "Reading the file stopped early: it took too long",
    "unreadable": "Reading the file stopped early: too many of its pages could not be read",
}


def truncation_note(doc: ExtractedDocument) -> str | None:
    """The note telling the model (and the user) that only part of the file is in the prompt, and why."""
    if not doc.truncated:
        return None
    reason = _STOPPED.get(doc.stopped_by or "", "The file was cut to fit the model's context")
    if doc.total_chars is not None:
        return f"[{reason}: {len(doc.text)} of {doc.total_chars} characters]"
    if doc.pages_read is not None and doc.pages_total is not None:
        return f"[{reason}: {len(doc.text)} characters from the first {doc.pages_read} of {doc.pages_total} pages]"
    return f"[{reason}: {len(doc.text)} characters]"


def page_ranges(pages: tuple[int, ...]) -> str:
    """Page numbers as ranges: (2, 3, 4, 7) is "2-4, 7"."""
    ranges: list[list[int]] = []
    for page in pages:
        if ranges and page == ranges[-1][1] + 1:
            ranges[-1][1] = page
        else:
            ranges.append([page, page])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def scanned_pages_note(doc: ExtractedDocument) -> str | None:
    """The note telling the model that pages of a PDF sent as text are pictures it does not get."""
    if not doc.scanned_pages or doc.needs_file_part:
        return None
    return (
        f"[Pages {page_ranges(doc.scanned_pages)} of this file are scanned images with little or no text layer: "
        "the images are not available, only the text above, if any]"
    )


def pictures_note(doc: ExtractedDocument) -> str | None:
    """The note telling the model which pictures of a DOCX follow the text as images, and which it does not get."""
    if not doc.picture_count:
        return None
    gone = tuple(number for number, _ in doc.pictures_left_out)
    if not doc.pictures:
        return f"[The pictures of this file ({doc.picture_count}) are not available: only its text is]"
    sent = "Its picture follows" if len(doc.pictures) == 1 else f"Its {len(doc.pictures)} pictures follow"
    note = f"{sent} as images, after the text, in the order of the file"
    if gone:
        note += f"; pictures {page_ranges(gone)} of {doc.picture_count} are not available"
    return f"[{note}]"


def document_prompt(
    doc: ExtractedDocument,
    question: str | None,
    *,
    default_question: str = DEFAULT_QUESTION,
) -> str:
    """The document as ``<file name="...">text</file>``, the truncation note if any, then the question.

    The name is escaped, and a ``</file`` inside the text is written as ``<\\/file`` so the content cannot
    close the wrapper early. A scanned PDF (``needs_file_part``) is referred to by name only: its pages go
    to the model as a file part (see ``document_content``); so is a DOCX of pictures alone, whose pictures go as
    images, with a note on them (``pictures_note``).
    """
    name = safe_filename(doc.filename)
    ask = question.strip() if question and question.strip() else default_question
    if doc.needs_file_part:
        return f'<file name="{name}" attached="true" />\n\n{ask}'
    body = _CLOSING_TAG.sub(r"<\\/\1", doc.text)
    parts = [f'<file name="{name}">\n{body}\n</file>' if body.strip() else f'<file name="{name}" attached="true" />']
    parts.extend(note for note in (truncation_note(doc), scanned_pages_note(doc), pictures_note(doc)) if note)
    parts.append(ask)
    return "\n\n".join(parts)


def document_content(
    doc: ExtractedDocument,
    data: bytes,
    question: str | None,
    *,
    default_question: str = DEFAULT_QUESTION,
) -> list[dict[str, Any]]:
    """The user message content parts for a document: the prompt text, plus the PDF itself for a scan and the
    pictures of a DOCX."""
    parts: list[dict[str, Any]] = [
        {"type": "text", "text": document_prompt(doc, question, default_question=default_question)}
    ]
    if doc.needs_file_part:
        parts.append(pdf_file_part(data, doc.filename))
    parts.extend(doc.pictures)
    return parts
