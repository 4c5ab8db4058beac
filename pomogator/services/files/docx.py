"""DOCX: check the zip container against decompression bombs, then read the body's XML in document order.

The body is parsed as a stream and only as far as the model's context can hold. Text is taken from every ``w:t``
that Word would show: inside content controls, tracked insertions, smart tags, simple fields, hyperlinks and text
boxes, but not from tracked deletions. Headings (by their style's name) are marked with ``#``, tables become
Markdown-like rows, and footnotes and endnotes follow the body. The page headers go before the body and the footers
after it, each different text once (a letterhead, a title, "Confidential"); those without a letter (page numbers
alone) are left out.
"""

from __future__ import annotations

import io
import posixpath
import zipfile
from collections.abc import Collection, Iterator
from typing import IO, Protocol

from pomogator.errors import CorruptFile, EmptyFile, FileError, UnpackedTooLarge

from .document import ExtractedDocument, cut_to_fit

MAX_UNCOMPRESSED_BYTES = 50 * 1024 * 1024
"""The most the XML parts other than the body and the notes may unpack to together: relationships, styles, page
headers and footers are parsed whole. The body and the notes are read as a stream and only as far as the model's
context holds (``READ_AHEAD_CHARS``), so their size is not bounded here: a long document is cut, as a PDF is."""

MAX_COMPRESSION_RATIO = 100
"""Word's XML compresses about 5-20 times; a part read whole that shrank far more is a decompression bomb."""

MAX_STREAMED_RATIO = 400
"""The same for the body and the notes. Generated tables of empty bordered cells shrink about 160 times; XML of empty
paragraphs, the cheapest bomb, 700 and more. What passes is parsed within the reader process's time and memory."""

STREAMED_PARTS = frozenset({"word/document.xml", "word/footnotes.xml", "word/endnotes.xml"})

RATIO_CHECK_MIN_BYTES = 1024 * 1024
"""Small members are not checked for the ratio: a few kilobytes of repeated XML are harmless."""

MAX_MEMBERS = 10_000

READ_AHEAD_CHARS = 100_000
"""How far past ``max_chars`` the body is read: a document only a little too long still reports its length."""

BLOCK_SEPARATOR = "\n\n"

MAX_MARGIN_PART_BYTES = 256 * 1024
"""A page header or footer part larger than this (unpacked) is not read: a real one is a few kilobytes of XML, and
it is parsed whole."""

MAX_MARGIN_CHARS = 1000
"""How much of one page header's or footer's text is kept: it must not take the body's place in the context."""


def check_zip_bounds(
    data: bytes,
    filename: str,
    *,
    max_uncompressed: int = MAX_UNCOMPRESSED_BYTES,
    max_ratio: int = MAX_COMPRESSION_RATIO,
) -> None:
    """Refuse a zip container before anything in it is decompressed.

    Only the central directory is read. The declared sizes are a real bound: ``zipfile`` never returns more
    than a member's declared size. A member with a suspicious compression ratio (``max_ratio``, or
    ``MAX_STREAMED_RATIO`` for the body and the notes) makes the file ``CorruptFile``; XML parts other than the body
    and the notes that unpack to more than ``max_uncompressed`` bytes together make it ``UnpackedTooLarge``.
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
        streamed = member.filename in STREAMED_PARTS
        # Embedded pictures are exempt: an uncompressed bitmap of a plain screenshot legitimately shrinks
        # a thousand times, and they are never unpacked.
        suspicious = (
            member.file_size > RATIO_CHECK_MIN_BYTES
            and member.file_size > (MAX_STREAMED_RATIO if streamed else max_ratio) * max(member.compress_size, 1)
            and not member.filename.startswith("word/media/")
        )
        if suspicious:
            raise CorruptFile(filename)
        if not streamed and member.filename.endswith((".xml", ".rels")):
            total += member.file_size
    if total > max_uncompressed:
        raise UnpackedTooLarge(filename, total, max_uncompressed)


# --- XML --------------------------------------------------------------------------------------------------


class _Element(Protocol):
    """The part of lxml's element API used here; lxml ships no type information."""

    @property
    def tag(self) -> object: ...  # a str; a factory function for entity references left unexpanded

    @property
    def text(self) -> str | None: ...

    def __iter__(self) -> Iterator[_Element]: ...

    def __delitem__(self, index: int) -> None: ...

    def get(self, key: str) -> str | None: ...

    def find(self, path: str) -> _Element | None: ...

    def getparent(self) -> _Element | None: ...

    def getprevious(self) -> _Element | None: ...

    def clear(self) -> None: ...


_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_BODY = _W + "body"
_P = _W + "p"
_TBL = _W + "tbl"
_TR = _W + "tr"
_TC = _W + "tc"
_T = _W + "t"
_TEXT_BOX = _W + "txbxContent"
_MARGINS = {"header": _W + "hdr", "footer": _W + "ftr"}
_STYLE = _W + "style"
_VAL = _W + "val"
_ALTERNATE_CONTENT = "{http://schemas.openxmlformats.org/markup-compatibility/2006}AlternateContent"
_RELATIONSHIP = "{http://schemas.openxmlformats.org/package/2006/relationships}Relationship"

_NOTE_REFERENCES: dict[object, str] = {_W + "footnoteReference": "footnote", _W + "endnoteReference": "endnote"}

_CHARACTERS: dict[object, str] = {
    _W + "tab": "\t",
    _W + "ptab": "\t",
    _W + "br": "\n",
    _W + "cr": "\n",
    _W + "noBreakHyphen": "-",
}
"""Run content that stands for a character; a page or column break is a new line too, to keep words apart."""

_SKIPPED = frozenset(
    _W + name
    for name in (
        # Tracked deletions and the old place of moved text: not part of the document any more.
        "del",
        "moveFrom",
        "delText",
        "delInstrText",
        # Field codes: the field's result follows them as ordinary runs.
        "instrText",
        # Properties, and the phonetic guide above East Asian text.
        "pPr",
        "rPr",
        "sdtPr",
        "sdtEndPr",
        "tblPr",
        "tblGrid",
        "trPr",
        "tcPr",
        "sectPr",
        "rt",
    )
)


def _iterparse(stream: IO[bytes], events: tuple[str, ...], tags: Collection[str]) -> Iterator[tuple[str, _Element]]:
    # Imported on first use: few messages carry a DOCX, and lxml costs the bot memory from the start.
    from lxml import etree  # type: ignore[import-untyped]

    # The XML comes from a stranger: entities stay unexpanded, nothing is fetched, and libxml2 keeps its
    # limits on depth and text size.
    parser: Iterator[tuple[str, _Element]] = etree.iterparse(
        stream,
        events=events,
        tag=tuple(tags),
        resolve_entities=False,
        no_network=True,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
    return parser


def _release(element: _Element) -> None:
    """Free an element that has been read, and everything before it in the document."""
    element.clear()
    node = element
    while (parent := node.getparent()) is not None:
        while node.getprevious() is not None:
            del parent[0]
        node = parent


def _int(element: _Element, path: str, default: int) -> int:
    found = element.find(path)
    value = found.get(_VAL) if found is not None else None
    if value is None or not value.isdecimal() or len(value) > 4:
        return default
    return int(value)


# --- the package ------------------------------------------------------------------------------------------


def _target(archive: zipfile.ZipFile, rels: str, kind: str) -> str | None:
    """The part that the relationships in ``rels`` name for ``kind`` (e.g. "styles"), if the package has it."""
    return next(_targets(archive, rels, kind), None)


def _targets(archive: zipfile.ZipFile, rels: str, kind: str) -> Iterator[str]:
    """The parts the package has of those the relationships in ``rels`` name for ``kind``, in their order."""
    try:
        stream = archive.open(rels)
    except KeyError:
        return
    base = posixpath.dirname(posixpath.dirname(rels))
    with stream:
        for _, relationship in _iterparse(stream, ("end",), (_RELATIONSHIP,)):
            # Transitional and strict OOXML name the type with different prefixes.
            if (relationship.get("Type") or "").endswith("/" + kind) and relationship.get("TargetMode") != "External":
                target = relationship.get("Target") or ""
                name = target.lstrip("/") if target.startswith("/") else posixpath.join(base, target)
                found = _existing(archive, posixpath.normpath(name))
                if found is not None:
                    yield found


def _existing(archive: zipfile.ZipFile, name: str) -> str | None:
    try:
        archive.getinfo(name)
    except KeyError:
        return None
    return name


def _rels_of(part: str) -> str:
    return posixpath.join(posixpath.dirname(part), "_rels", posixpath.basename(part) + ".rels")


def _heading_prefix(style_name: str) -> str:
    name = style_name.strip().lower()
    if name == "title":
        return "# "
    if name.startswith("heading "):
        level = name.removeprefix("heading ").strip()
        if level.isdecimal() and len(level) <= 2:
            return "#" * min(max(int(level), 1), 6) + " "
    return ""


class _Styles:
    """The Markdown prefix of each paragraph style: ``#`` marks for headings and the title, nothing otherwise."""

    def __init__(self, prefixes: dict[str, str], default: str) -> None:
        self._prefixes = prefixes
        self._default = default

    @classmethod
    def read(cls, archive: zipfile.ZipFile, part: str | None) -> _Styles:
        prefixes: dict[str, str] = {}
        default = ""
        if part is None:
            return cls(prefixes, default)
        with archive.open(part) as stream:
            for _, style in _iterparse(stream, ("end",), (_STYLE,)):
                if style.get(_W + "type") in (None, "paragraph"):
                    name = style.find(_W + "name")
                    prefix = _heading_prefix((name.get(_VAL) if name is not None else None) or "")
                    style_id = style.get(_W + "styleId")
                    if style_id is not None:
                        prefixes.setdefault(style_id, prefix)
                    if style.get(_W + "default") in ("1", "true", "on"):
                        default = prefix
                _release(style)
        return cls(prefixes, default)

    def mark(self, paragraph: _Element, text: str) -> str:
        # A paragraph without a style, or with one the styles part lacks, has the default paragraph style.
        style = paragraph.find(f"{_W}pPr/{_W}pStyle")
        style_id = style.get(_VAL) if style is not None else None
        prefix = self._default if style_id is None else self._prefixes.get(style_id, self._default)
        return prefix + text


# --- paragraphs and tables --------------------------------------------------------------------------------


def _collect_inline(element: _Element, parts: list[str], boxes: list[_Element]) -> None:
    """Gather the text shown inside ``element``; text boxes met on the way are kept aside, to follow it."""
    for child in element:
        tag = child.tag
        if tag == _T:
            parts.append(child.text or "")
        elif tag in _CHARACTERS:
            parts.append(_CHARACTERS[tag])
        elif tag in _NOTE_REFERENCES:
            parts.append(_note_label(_NOTE_REFERENCES[tag], child.get(_W + "id")))
        elif tag == _TEXT_BOX:
            boxes.append(child)
        elif tag == _ALTERNATE_CONTENT:
            # The same drawing in several forms (a modern text box and its VML fallback): read only one.
            for branch in child:
                found = len(parts), len(boxes)
                _collect_inline(branch, parts, boxes)
                if (len(parts), len(boxes)) != found:
                    break
        elif tag not in _SKIPPED:
            # Runs, hyperlinks, insertions, content controls, smart tags, fields, drawings: all may hold text.
            _collect_inline(child, parts, boxes)


def _note_label(kind: str, note_id: str | None) -> str:
    prefix = "e" if kind == "endnote" else ""
    return f"[^{prefix}{note_id or ''}]"


def _paragraph(paragraph: _Element, styles: _Styles | None) -> Iterator[str]:
    parts: list[str] = []
    boxes: list[_Element] = []
    _collect_inline(paragraph, parts, boxes)
    text = "".join(parts).strip()
    if text:
        yield styles.mark(paragraph, text) if styles is not None else text
    for box in boxes:
        yield from _blocks(box, styles)


def _blocks(container: _Element, styles: _Styles | None) -> Iterator[str]:
    """The paragraphs and tables inside ``container``; ``styles`` is None inside a table cell, where all is plain."""
    for child in container:
        tag = child.tag
        if tag == _P:
            yield from _paragraph(child, styles)
        elif tag == _TBL:
            yield _table(child, styles)
        elif tag == _ALTERNATE_CONTENT:
            for branch in child:
                found = list(_blocks(branch, styles))
                if any(found):
                    yield from found
                    break
        elif tag not in _SKIPPED:
            # Content controls, custom XML and the like wrap paragraphs and tables.
            yield from _blocks(child, styles)


def _children(element: _Element, tag: str) -> Iterator[_Element]:
    """Rows of a table or cells of a row, also those wrapped in content controls."""
    for child in element:
        if child.tag == tag:
            yield child
        elif child.tag not in _SKIPPED:
            yield from _children(child, tag)


def _cell_text(cell: _Element) -> str:
    return " ".join(" ".join(_blocks(cell, None)).split()).replace("|", "\\|")


class _Table:
    """A table as Markdown-like rows; a cell merged across columns is written once, one merged down repeats."""

    def __init__(self) -> None:
        self.rows: list[str] = []
        self._above: dict[int, str] = {}
        """The text of each cell in the previous row, by the grid column it starts at."""

    def add(self, row: _Element) -> int:
        """Add a row; return the length of the text it added."""
        cells: list[str] = []
        above: dict[int, str] = {}
        column = _int(row, f"{_W}trPr/{_W}gridBefore", 0)
        for cell in _children(row, _TC):
            merge = cell.find(f"{_W}tcPr/{_W}vMerge")
            if merge is not None and merge.get(_VAL) in (None, "continue"):
                text = self._above.get(column, "")
            else:
                text = _cell_text(cell)
            cells.append(text)
            above[column] = text
            column += max(_int(cell, f"{_W}tcPr/{_W}gridSpan", 1), 1)
        self._above = above
        if not any(cells):
            return 0
        self.rows.append("| " + " | ".join(cells) + " |")
        return len(self.rows[-1]) + 1

    def text(self) -> str:
        return "\n".join(self.rows)


def _table(table: _Element, styles: _Styles | None) -> str:
    if styles is None:
        # A table inside a table cell: its text joins the cell's.
        return " ".join(_cell_text(cell) for row in _children(table, _TR) for cell in _children(row, _TC))
    rows = _Table()
    for row in _children(table, _TR):
        rows.add(row)
    return rows.text()


# --- the body ---------------------------------------------------------------------------------------------


def _read_body(stream: IO[bytes], styles: _Styles, limit: int, filename: str) -> tuple[list[str], bool]:
    """Read the body's blocks in order until their text is longer than ``limit``; tell whether all was read.

    Body-level paragraphs and the rows of body-level tables are handled as soon as they are parsed, then freed;
    what is inside a table cell or a text box is read together with the paragraph or row around it.
    """
    blocks: list[str] = []
    length = 0
    inside = 0  # open table cells and text boxes
    table: _Table | None = None
    in_body = seen_body = False
    for event, element in _iterparse(stream, ("start", "end"), (_BODY, _P, _TBL, _TR, _TC, _TEXT_BOX)):
        tag = element.tag
        if tag in (_TC, _TEXT_BOX):
            inside += 1 if event == "start" else -1
        elif tag == _BODY:
            in_body = event == "start"
            seen_body = True
        elif inside or not in_body:
            continue
        elif tag == _TBL and event == "start":
            table = _Table()
        elif tag == _TR and event == "end" and table is not None:
            length += table.add(element)
            _release(element)
        elif tag == _TBL and event == "end" and table is not None:
            if table.rows:
                blocks.append(table.text())
                length += len(BLOCK_SEPARATOR)
            table = None
            _release(element)
        elif tag == _P and event == "end":
            for block in _paragraph(element, styles):
                if block:
                    blocks.append(block)
                    length += len(block) + len(BLOCK_SEPARATOR)
            _release(element)
        if length > limit:
            if table is not None and table.rows:
                blocks.append(table.text())
            return blocks, False
    if not seen_body:
        raise CorruptFile(filename)
    return blocks, True


def _read_notes(archive: zipfile.ZipFile, part: str | None, kind: str, blocks: list[str], limit: int) -> bool:
    """Add the footnotes or endnotes after the body as Markdown footnotes; tell whether all of them were read."""
    if part is None:
        return True
    length = sum(len(block) + len(BLOCK_SEPARATOR) for block in blocks)
    with archive.open(part) as stream:
        for _, note in _iterparse(stream, ("end",), (_W + kind,)):
            # The other types are the separator lines Word draws above the notes.
            if note.get(_W + "type") in (None, "normal"):
                text = " ".join(_blocks(note, None)).strip()
                if text:
                    blocks.append(f"{_note_label(kind, note.get(_W + 'id'))}: {text}")
                    length += len(blocks[-1]) + len(BLOCK_SEPARATOR)
            _release(note)
            if length > limit:
                return False
    return True


def _margins(archive: zipfile.ZipFile, rels: str, kind: str) -> list[str]:
    """The page headers or footers (``kind``) as blocks ``Header: text``, each different text once, in the order the
    document's relationships name them; those without a letter (a page number) are left out, and so are damaged
    ones: the body is what was asked about."""
    label = kind.capitalize()
    texts: list[str] = []
    for part in _targets(archive, rels, kind):
        if archive.getinfo(part).file_size > MAX_MARGIN_PART_BYTES:
            continue
        try:
            found = _margin_texts(archive, part, kind)
        except Exception:  # zipfile, zlib and lxml raise many kinds of errors on damaged input
            continue
        texts.extend(text for text in found if any(char.isalpha() for char in text) and text not in texts)
    return [f"{label}: {text}" for text in texts]


def _margin_texts(archive: zipfile.ZipFile, part: str, kind: str) -> list[str]:
    texts = []
    with archive.open(part) as stream:
        for _, margin in _iterparse(stream, ("end",), (_MARGINS[kind],)):
            texts.append("\n".join(block for block in _blocks(margin, None) if block).strip()[:MAX_MARGIN_CHARS])
            _release(margin)
    return texts


def extract_docx(data: bytes, filename: str, max_chars: int) -> ExtractedDocument:
    """Read the body of a DOCX: paragraphs (headings marked with ``#``) and tables, in document order.

    Footnotes and endnotes follow the body as ``[^1]: ...`` and ``[^e1]: ...``, where the body has ``[^1]``. The
    page headers come first (``Header: ...``) and the footers last (``Footer: ...``).

    Reading stops ``READ_AHEAD_CHARS`` past ``max_chars``; the result is then ``truncated`` with
    ``total_chars=None``.
    Raises ``EmptyFile`` when there is no text, ``CorruptFile`` for a damaged file and ``UnpackedTooLarge`` for one
    whose parts read whole unpack to too much.
    """
    if max_chars <= 0:
        raise ValueError("max_chars must be positive")
    check_zip_bounds(data, filename)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            document = _target(archive, "_rels/.rels", "officeDocument") or "word/document.xml"
            rels = _rels_of(document)
            styles = _Styles.read(archive, _target(archive, rels, "styles"))
            limit = max_chars + READ_AHEAD_CHARS
            with archive.open(document) as stream:
                blocks, read_all = _read_body(stream, styles, limit, filename)
            for kind in ("footnote", "endnote"):
                if read_all:
                    read_all = _read_notes(archive, _target(archive, rels, kind + "s"), kind, blocks, limit)
            blocks = _margins(archive, rels, "header") + blocks
            if read_all:
                blocks += _margins(archive, rels, "footer")
    except FileError:
        raise
    except Exception as exc:  # zipfile, zlib and lxml raise many kinds of errors on damaged input
        raise CorruptFile(filename) from exc
    text = BLOCK_SEPARATOR.join(blocks)
    if not text.strip():
        raise EmptyFile(filename)
    cut, truncated = cut_to_fit(text, max_chars)
    return ExtractedDocument(
        filename=filename,
        kind="docx",
        text=cut,
        truncated=truncated or not read_all,
        total_chars=len(text) if read_all else None,
        stopped_by="context" if truncated or not read_all else None,
    )
