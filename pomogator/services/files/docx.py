"""DOCX: check the zip container against decompression bombs, then read paragraphs and tables in order."""

from __future__ import annotations

import io
import zipfile
from typing import TYPE_CHECKING

from pomogator.errors import CorruptFile, FileTooLarge

from .document import ExtractedDocument, cut_to_fit

if TYPE_CHECKING:
    from docx.table import Table
    from docx.text.paragraph import Paragraph

MAX_UNCOMPRESSED_BYTES = 50 * 1024 * 1024
"""The most a DOCX may unpack to; python-docx keeps every part of the package in memory."""

MAX_COMPRESSION_RATIO = 100
"""Word's XML compresses about 5-20 times; a member that shrank far more is a decompression bomb."""

RATIO_CHECK_MIN_BYTES = 1024 * 1024
"""Small members are not checked for the ratio: a few kilobytes of repeated XML are harmless."""

MAX_MEMBERS = 10_000


def check_zip_bounds(
    data: bytes,
    filename: str,
    *,
    max_uncompressed: int = MAX_UNCOMPRESSED_BYTES,
    max_ratio: int = MAX_COMPRESSION_RATIO,
) -> None:
    """Refuse a zip container before anything in it is decompressed.

    Only the central directory is read. The declared sizes are a real bound: ``zipfile`` never returns more
    than a member's declared size, and python-docx opens the package with ``zipfile`` too. A member with a
    suspicious compression ratio makes the file ``CorruptFile``; a package that unpacks to more than
    ``max_uncompressed`` bytes makes it ``FileTooLarge``.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except Exception as exc:  # BadZipFile, but also ValueError/OSError/EOFError on mangled directories
        raise CorruptFile(filename) from exc
    if len(members) > MAX_MEMBERS:
        raise CorruptFile(filename)
    total = 0
    for member in members:
        if member.file_size < 0 or member.compress_size < 0:
            raise CorruptFile(filename)
        # Embedded pictures are exempt: an uncompressed bitmap of a plain screenshot legitimately shrinks
        # a thousand times, and the total bound below still applies to them.
        suspicious = (
            member.file_size > RATIO_CHECK_MIN_BYTES
            and member.file_size > max_ratio * max(member.compress_size, 1)
            and not member.filename.startswith("word/media/")
        )
        if suspicious:
            raise CorruptFile(filename)
        total += member.file_size
    if total > max_uncompressed:
        raise FileTooLarge(total, max_uncompressed)


def _paragraph_text(paragraph: Paragraph) -> str:
    text = paragraph.text.strip()
    if not text:
        return ""
    style = paragraph.style.name if paragraph.style is not None else ""
    if style and style.startswith("Heading "):
        level = style.removeprefix("Heading ").strip()
        if level.isdigit():
            return "#" * min(int(level), 6) + " " + text
    if style == "Title":
        return "# " + text
    return text


def _cell_text(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _table_text(table: Table) -> str:
    """A table as Markdown-like rows; cells merged across columns are written once."""
    rows: list[str] = []
    for row in table.rows:
        cells: list[str] = []
        previous = None
        for cell in row.cells:
            if previous is not None and cell._tc is previous:
                continue
            previous = cell._tc
            cells.append(_cell_text(cell.text))
        if any(cells):
            rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def extract_docx(data: bytes, filename: str, max_chars: int) -> ExtractedDocument:
    """Read the body of a DOCX: paragraphs (headings marked with ``#``) and tables, in document order."""
    check_zip_bounds(data, filename)
    # Imported on first use: few messages carry a DOCX, and python-docx costs the bot ~7 MiB of memory from the start.
    from docx import Document
    from docx.text.paragraph import Paragraph

    try:
        document = Document(io.BytesIO(data))
        blocks: list[str] = []
        for block in document.iter_inner_content():
            text = _paragraph_text(block) if isinstance(block, Paragraph) else _table_text(block)
            if text:
                blocks.append(text)
    except Exception as exc:  # python-docx and lxml raise many kinds of errors on damaged input
        raise CorruptFile(filename) from exc
    text = "\n\n".join(blocks)
    cut, truncated = cut_to_fit(text, max_chars)
    return ExtractedDocument(filename=filename, kind="docx", text=cut, truncated=truncated, total_chars=len(text))
