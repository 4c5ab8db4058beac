"""DOCX: check the zip container against decompression bombs, then read the body's XML in document order.

The body is parsed as a stream and only as far as the model's context can hold. Text is taken from every ``w:t``
that Word would show: inside content controls, tracked insertions, smart tags, simple fields, hyperlinks and text
boxes, but not from tracked deletions. Headings (by their style's name) are marked with ``#``, tables become
Markdown-like rows, and footnotes and endnotes follow the body. The page headers go before the body and the footers
after it, each different text once (a letterhead, a title, "Confidential"); those without a letter (page numbers
alone) are left out. The pictures the body shows go to a model that sees as images, in the order the body shows them
(``pictures.py``).
"""

from __future__ import annotations

import io
import posixpath
import re
import zipfile
from collections.abc import Collection, Iterator
from typing import IO, Any, Protocol

from pomogator.errors import CorruptFile, EmptyFile, FileError, UnpackedTooLarge, UnsupportedFile

from .document import ExtractedDocument, PictureLoss, cut_to_fit

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
_R = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
# A DrawingML picture, and a VML one (older documents, and the fallback of shapes with a picture fill).
_BLIP = "{http://schemas.openxmlformats.org/drawingml/2006/main}blip"
_IMAGEDATA = "{urn:schemas-microsoft-com:vml}imagedata"
_PICTURES: dict[object, str] = {_BLIP: _R + "embed", _IMAGEDATA: _R + "id"}
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


_STRICT_NAMESPACES = {
    b"http://purl.oclc.org/ooxml/wordprocessingml/main": b"http://schemas.openxmlformats.org/wordprocessingml/2006/main",
    b"http://purl.oclc.org/ooxml/officeDocument/relationships": (
        b"http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    ),
    b"http://purl.oclc.org/ooxml/drawingml/main": b"http://schemas.openxmlformats.org/drawingml/2006/main",
}
"""Word's "Strict Open XML Document" names its elements in namespaces of its own; its layout is the same."""
_STRICT = re.compile(b"|".join(re.escape(namespace) for namespace in _STRICT_NAMESPACES))
_STRICT_TAIL = max(map(len, _STRICT_NAMESPACES)) - 1


class _Transitional:
    """A part's XML as it streams, with Strict OOXML's namespaces written as the transitional ones the reader knows.
    A namespace is the value of an attribute: a document's text seldom holds one."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._pending = b""
        self._done = False

    @staticmethod
    def _translated(data: bytes) -> bytes:
        return _STRICT.sub(lambda match: _STRICT_NAMESPACES[match.group()], data)

    def read(self, size: int = -1) -> bytes:
        while not self._done:
            chunk = self._stream.read(size if size > 0 else -1)
            data = self._pending + chunk
            if not chunk:
                self._done, self._pending = True, b""
                return self._translated(data)
            # A namespace cut by the chunk's end waits for the rest of it.
            cut = max(len(data) - _STRICT_TAIL, 0)
            for match in _STRICT.finditer(data, max(cut - _STRICT_TAIL, 0)):
                if match.start() < cut < match.end():
                    cut = match.end()
            head, self._pending = data[:cut], data[cut:]
            if head:
                return self._translated(head)
        return b""


def _iterparse(stream: IO[bytes], events: tuple[str, ...], tags: Collection[str]) -> Iterator[tuple[str, _Element]]:
    # Imported on first use: few messages carry a DOCX, and lxml costs the bot memory from the start.
    from lxml import etree  # type: ignore[import-untyped]

    # The XML comes from a stranger: entities stay unexpanded, nothing is fetched, and libxml2 keeps its
    # limits on depth and text size.
    parser: Iterator[tuple[str, _Element]] = etree.iterparse(
        _Transitional(stream),
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
    return (part for _, part in _relationships(archive, rels, kind))


def _relationships(archive: zipfile.ZipFile, rels: str, kind: str) -> Iterator[tuple[str, str]]:
    """The ids and parts of the relationships in ``rels`` for ``kind`` whose parts the package has, in their order."""
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
                    yield relationship.get("Id") or "", found


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


_NUM_PR = f"{_W}pPr/{_W}numPr"


def _num_pr(element: _Element) -> tuple[str | None, int | None]:
    """The list (``w:numId``) and level (``w:ilvl``) that a paragraph's or a style's properties give, if any."""
    found = element.find(_NUM_PR)
    if found is None:
        return None, None
    num = found.find(_W + "numId")
    level = _int(found, _W + "ilvl", -1)
    return (num.get(_VAL) if num is not None else None), (level if 0 <= level < MAX_LIST_LEVELS else None)


MAX_STYLE_DEPTH = 16
"""How many styles up the ``w:basedOn`` chain a style's list is looked for: Word's own chains are a few styles
long, and the bound stops a cycle (a style based on itself, or two on each other)."""


class _Styles:
    """The Markdown prefix of each paragraph style (``#`` marks for headings and the title, nothing otherwise), the
    list each style numbers its paragraphs in, if any (its own or the one of the style it is based on), and the
    document's ``numbering``."""

    def __init__(
        self,
        prefixes: dict[str, str],
        default: str,
        lists: dict[str, tuple[str | None, int | None]] | None = None,
        numbering: _Numbering | None = None,
        *,
        based_on: dict[str, str] | None = None,
        default_id: str | None = None,
    ) -> None:
        self._prefixes = prefixes
        self._default = default
        self._lists = lists or {}
        """The list and level each style's own properties give, either or both of them unset."""
        self._based_on = based_on or {}
        self._default_id = default_id
        self._resolved: dict[str, tuple[str | None, int | None]] = {}
        self.numbering = numbering or _Numbering({}, {})

    @classmethod
    def read(cls, archive: zipfile.ZipFile, part: str | None, numbering: _Numbering | None = None) -> _Styles:
        prefixes: dict[str, str] = {}
        lists: dict[str, tuple[str | None, int | None]] = {}
        based_on: dict[str, str] = {}
        default = ""
        default_id = None
        if part is None:
            return cls(prefixes, default, lists, numbering)
        with archive.open(part) as stream:
            for _, style in _iterparse(stream, ("end",), (_STYLE,)):
                if style.get(_W + "type") in (None, "paragraph"):
                    name = style.find(_W + "name")
                    prefix = _heading_prefix((name.get(_VAL) if name is not None else None) or "")
                    style_id = style.get(_W + "styleId")
                    if style_id is not None and style_id not in prefixes:
                        prefixes[style_id] = prefix
                        num_id, level = _num_pr(style)
                        if num_id is not None or level is not None:
                            lists[style_id] = (num_id, level)
                        parent = style.find(_W + "basedOn")
                        parent_id = parent.get(_VAL) if parent is not None else None
                        if parent_id is not None:
                            based_on[style_id] = parent_id
                    if style.get(_W + "default") in ("1", "true", "on"):
                        default = prefix
                        default_id = style_id
                _release(style)
        return cls(prefixes, default, lists, numbering, based_on=based_on, default_id=default_id)

    def _style_id(self, paragraph: _Element) -> str | None:
        style = paragraph.find(f"{_W}pPr/{_W}pStyle")
        return style.get(_VAL) if style is not None else None

    def mark(self, paragraph: _Element, text: str) -> str:
        # A paragraph without a style, or with one the styles part lacks, has the default paragraph style.
        style_id = self._style_id(paragraph)
        prefix = self._default if style_id is None else self._prefixes.get(style_id, self._default)
        return prefix + text

    def _style_list(self, style_id: str) -> tuple[str | None, int | None]:
        """The list and level a style numbers its paragraphs at: each from the nearest style up its ``w:basedOn``
        chain that sets it."""
        found = self._resolved.get(style_id)
        if found is not None:
            return found
        num_id: str | None = None
        level: int | None = None
        current: str | None = style_id
        seen: set[str] = set()
        while current is not None and current not in seen and len(seen) < MAX_STYLE_DEPTH:
            seen.add(current)
            own_num, own_level = self._lists.get(current, (None, None))
            num_id = num_id if num_id is not None else own_num
            level = level if level is not None else own_level
            if num_id is not None and level is not None:
                break
            current = self._based_on.get(current)
        self._resolved[style_id] = (num_id, level)
        return num_id, level

    def label(self, paragraph: _Element) -> str:
        """The number or bullet Word shows before ``paragraph`` ("3.2.", "•"), counting it; "" when it has none.

        The paragraph's own ``w:numPr`` comes first, what it leaves unset from its style's; ``w:numId`` 0 switches
        numbering off."""
        num_id, level = _num_pr(paragraph)
        if num_id is None or level is None:
            # A paragraph without a style, or with one the styles part lacks, has the default paragraph style.
            style_id = self._style_id(paragraph)
            if style_id is None or style_id not in self._prefixes:
                style_id = self._default_id
            if style_id is not None:
                style_num, style_level = self._style_list(style_id)
                num_id = num_id if num_id is not None else style_num
                level = level if level is not None else style_level
        if num_id is None or num_id == "0":
            return ""
        return self.numbering.label(num_id, level or 0)


# --- automatic numbering ----------------------------------------------------------------------------------

MAX_LIST_LEVELS = 9
"""Word's list levels: ``w:ilvl`` 0 to 8."""

MAX_NUMBERING_BYTES = 2 * 1024 * 1024
"""A numbering part larger than this (unpacked) is not read: the text still goes, without list numbers."""

_ABSTRACT_NUM = _W + "abstractNum"
_NUM = _W + "num"
_LVL = _W + "lvl"
_RUSSIAN_LETTERS = "абвгдежзиклмнопрстуфхцчшщэюя"


def _roman(value: int) -> str:
    out = []
    for number, letters in (
        (1000, "m"), (900, "cm"), (500, "d"), (400, "cd"), (100, "c"), (90, "xc"),
        (50, "l"), (40, "xl"), (10, "x"), (9, "ix"), (5, "v"), (4, "iv"), (1, "i"),
    ):  # fmt: skip
        count, value = divmod(value, number)
        out.append(letters * count)
    return "".join(out)


def _letters(value: int, alphabet: str) -> str:
    """Word's letter numbering: a, b, ... z, aa, bb, ..."""
    return alphabet[(value - 1) % len(alphabet)] * ((value - 1) // len(alphabet) + 1)


def _format_number(value: int, number_format: str) -> str:
    """``value`` as a list level of ``number_format`` shows it; formats not known here show as decimals."""
    if value < 1:
        return str(value)
    match number_format:
        case "lowerLetter" | "upperLetter":
            letters = _letters(value, "abcdefghijklmnopqrstuvwxyz")
        case "russianLower" | "russianUpper":
            letters = _letters(value, _RUSSIAN_LETTERS)
        case "lowerRoman" | "upperRoman":
            letters = _roman(value)
        case "decimalZero":
            return f"{value:02d}"
        case "none":
            return ""
        case _:
            return str(value)
    return letters.upper() if number_format.startswith("upper") or number_format == "russianUpper" else letters


class _Level:
    def __init__(self, number_format: str, text: str, start: int) -> None:
        self.format = number_format
        self.text = text
        self.start = start


class _Numbering:
    """The document's lists (``word/numbering.xml``) and their counters while the body is read in order. Lists
    (``w:num``) that share a definition (``w:abstractNum``) share their counters, as in Word, unless one restarts
    a level (``w:startOverride``)."""

    def __init__(self, definitions: dict[str, dict[int, _Level]], lists: dict[str, tuple[str, dict[int, int]]]) -> None:
        self._definitions = definitions
        self._lists = lists
        """Each list's definition and the levels it restarts, with their start."""
        self._counters: dict[str, list[int | None]] = {}
        self._started: set[str] = set()

    @classmethod
    def read(cls, archive: zipfile.ZipFile, part: str | None) -> _Numbering:
        definitions: dict[str, dict[int, _Level]] = {}
        lists: dict[str, tuple[str, dict[int, int]]] = {}
        if part is None or archive.getinfo(part).file_size > MAX_NUMBERING_BYTES:
            return cls(definitions, lists)
        with archive.open(part) as stream:
            for _, element in _iterparse(stream, ("end",), (_ABSTRACT_NUM, _NUM)):
                if element.tag == _ABSTRACT_NUM:
                    levels: dict[int, _Level] = {}
                    for lvl in element:
                        level = _int_attribute(lvl, _W + "ilvl") if lvl.tag == _LVL else None
                        if level is not None and level < MAX_LIST_LEVELS:
                            number_format = lvl.find(_W + "numFmt")
                            text = lvl.find(_W + "lvlText")
                            levels[level] = _Level(
                                (number_format.get(_VAL) if number_format is not None else None) or "decimal",
                                (text.get(_VAL) if text is not None else None) or "",
                                _int(lvl, _W + "start", 1),
                            )
                    definitions.setdefault(element.get(_W + "abstractNumId") or "", levels)
                else:
                    restarts = {}
                    for override in element:
                        level = _int_attribute(override, _W + "ilvl") if override.tag == _W + "lvlOverride" else None
                        if level is not None and override.find(_W + "startOverride") is not None:
                            restarts[level] = _int(override, _W + "startOverride", 1)
                    abstract = element.find(_W + "abstractNumId")
                    abstract_id = (abstract.get(_VAL) if abstract is not None else None) or ""
                    lists.setdefault(element.get(_W + "numId") or "", (abstract_id, restarts))
                _release(element)
        return cls(definitions, lists)

    def label(self, num_id: str, level: int) -> str:
        found = self._lists.get(num_id)
        levels = self._definitions.get(found[0]) if found is not None else None
        if found is None or levels is None or level not in levels:
            return ""
        abstract, restarts = found
        counters = self._counters.setdefault(abstract, [None] * MAX_LIST_LEVELS)
        if num_id not in self._started:
            self._started.add(num_id)
            for restarted, start in restarts.items():
                if restarted < MAX_LIST_LEVELS:
                    counters[restarted] = start - 1
        current = counters[level]
        counters[level] = levels[level].start if current is None else current + 1
        for deeper in range(level + 1, MAX_LIST_LEVELS):
            counters[deeper] = None
        if levels[level].format == "bullet":
            return "•"
        text = levels[level].text
        for shown in range(level + 1):
            value = counters[shown]
            if value is None:
                value = levels[shown].start if shown in levels else 1
            number_format = levels[shown].format if shown in levels else "decimal"
            text = text.replace(f"%{shown + 1}", _format_number(value, number_format))
        return text.strip()


def _int_attribute(element: _Element, name: str) -> int | None:
    value = element.get(name)
    return int(value) if value is not None and value.isdecimal() and len(value) <= 4 else None


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


def _paragraph(paragraph: _Element, styles: _Styles | None, in_cell: bool = False) -> Iterator[str]:
    parts: list[str] = []
    boxes: list[_Element] = []
    _collect_inline(paragraph, parts, boxes)
    text = "".join(parts).strip()
    # A numbered paragraph counts even when empty, as Word shows its number.
    label = styles.label(paragraph) if styles is not None else ""
    if text:
        text = f"{label} {text}" if label else text
        yield styles.mark(paragraph, text) if styles is not None and not in_cell else text
    for box in boxes:
        yield from _blocks(box, styles, in_cell)


def _blocks(container: _Element, styles: _Styles | None, in_cell: bool = False) -> Iterator[str]:
    """The paragraphs and tables inside ``container``. Inside a table cell (``in_cell``) all is plain text but the
    list numbers; with ``styles`` None (notes, page headers and footers) there are no list numbers either."""
    for child in container:
        tag = child.tag
        if tag == _P:
            yield from _paragraph(child, styles, in_cell)
        elif tag == _TBL:
            yield _table(child, styles, in_cell)
        elif tag == _ALTERNATE_CONTENT:
            for branch in child:
                found = list(_blocks(branch, styles, in_cell))
                if any(found):
                    yield from found
                    break
        elif tag not in _SKIPPED:
            # Content controls, custom XML and the like wrap paragraphs and tables.
            yield from _blocks(child, styles, in_cell)


def _children(element: _Element, tag: str) -> Iterator[_Element]:
    """Rows of a table or cells of a row, also those wrapped in content controls."""
    for child in element:
        if child.tag == tag:
            yield child
        elif child.tag not in _SKIPPED:
            yield from _children(child, tag)


def _cell_text(cell: _Element, styles: _Styles | None) -> str:
    return " ".join(" ".join(_blocks(cell, styles, in_cell=True)).split()).replace("|", "\\|")


class _Table:
    """A table as Markdown-like rows; a cell merged across columns is written once, one merged down repeats."""

    def __init__(self, styles: _Styles | None) -> None:
        self._styles = styles
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
                text = _cell_text(cell, self._styles)
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


def _table(table: _Element, styles: _Styles | None, in_cell: bool = False) -> str:
    if in_cell or styles is None:
        # A table inside a table cell: its text joins the cell's.
        return " ".join(_cell_text(cell, styles) for row in _children(table, _TR) for cell in _children(row, _TC))
    rows = _Table(styles)
    for row in _children(table, _TR):
        rows.add(row)
    return rows.text()


# --- the body ---------------------------------------------------------------------------------------------


def _read_body(
    stream: IO[bytes], styles: _Styles, limit: int, filename: str, pictures: list[str] | None = None
) -> tuple[list[str], bool]:
    """Read the body's blocks in order until their text is longer than ``limit``; tell whether all was read.

    Body-level paragraphs and the rows of body-level tables are handled as soon as they are parsed, then freed;
    what is inside a table cell or a text box is read together with the paragraph or row around it. The
    relationship ids of the pictures met on the way are added to ``pictures``, in order.
    """
    blocks: list[str] = []
    length = 0
    inside = 0  # open table cells and text boxes
    table: _Table | None = None
    in_body = seen_body = False
    tags = (_BODY, _P, _TBL, _TR, _TC, _TEXT_BOX, _BLIP, _IMAGEDATA)
    for event, element in _iterparse(stream, ("start", "end"), tags):
        tag = element.tag
        if tag in _PICTURES:
            picture = element.get(_PICTURES[tag]) if event == "end" and in_body else None
            if picture and pictures is not None:
                pictures.append(picture)
        elif tag in (_TC, _TEXT_BOX):
            inside += 1 if event == "start" else -1
        elif tag == _BODY:
            in_body = event == "start"
            seen_body = True
        elif inside or not in_body:
            continue
        elif tag == _TBL and event == "start":
            table = _Table(styles)
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


def _numbering(archive: zipfile.ZipFile, rels: str) -> _Numbering:
    """The document's lists; a damaged numbering part costs the numbers, not the text."""
    try:
        return _Numbering.read(archive, _target(archive, rels, "numbering"))
    except FileError:
        raise
    except Exception:  # zipfile, zlib and lxml raise many kinds of errors on damaged input
        return _Numbering({}, {})


def _picture_parts(archive: zipfile.ZipFile, rels: str, ids: list[str], alone: bool) -> list[str]:
    """The picture parts the body shows (``ids``: its relationship ids, in order), each once, in order. A document of
    nothing but pictures the body does not name (made by a program that places them some other way) has the pictures
    of the package, in its order; the pictures of page headers (a letterhead's logo) stay out otherwise."""
    images = dict(_relationships(archive, rels, "image"))
    parts = list(dict.fromkeys(images[picture] for picture in ids if picture in images))
    if not parts and alone:
        parts = [name for name in archive.namelist() if name.startswith("word/media/") and not name.endswith("/")]
    return parts


def extract_docx(
    data: bytes, filename: str, max_chars: int, *, vision: bool = False, max_picture_bytes: int | None = None
) -> ExtractedDocument:
    """Read the body of a DOCX: paragraphs (headings marked with ``#``) and tables, in document order.

    Footnotes and endnotes follow the body as ``[^1]: ...`` and ``[^e1]: ...``, where the body has ``[^1]``. The
    page headers come first (``Header: ...``) and the footers last (``Footer: ...``). The pictures of the part of
    the body read come as ``pictures`` for a model with ``vision``, no more than ``max_picture_bytes`` of them (what
    is left of the request's media budget); without it they are only counted, as left out (see
    ``pictures.read_pictures``).

    Reading stops ``READ_AHEAD_CHARS`` past ``max_chars``; the result is then ``truncated`` with
    ``total_chars=None``.
    Raises ``EmptyFile`` when there is no text and no picture, ``UnsupportedFile`` when there is no text but
    pictures: kind ``"docx-images"`` without ``vision``, ``"docx-pictures"`` when none of the pictures can be read;
    ``ImagesTooLarge`` when none of them fits ``max_picture_bytes``; ``CorruptFile`` for a damaged file and
    ``UnpackedTooLarge`` for one whose parts read whole unpack to too much.
    """
    if max_chars <= 0:
        raise ValueError("max_chars must be positive")
    check_zip_bounds(data, filename)
    pictures: tuple[dict[str, Any], ...] = ()
    left_out: tuple[tuple[int, PictureLoss], ...] = ()
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            document = _target(archive, "_rels/.rels", "officeDocument") or "word/document.xml"
            rels = _rels_of(document)
            styles = _Styles.read(archive, _target(archive, rels, "styles"), _numbering(archive, rels))
            limit = max_chars + READ_AHEAD_CHARS
            ids: list[str] = []
            with archive.open(document) as stream:
                blocks, read_all = _read_body(stream, styles, limit, filename, ids)
            for kind in ("footnote", "endnote"):
                if read_all:
                    read_all = _read_notes(archive, _target(archive, rels, kind + "s"), kind, blocks, limit)
            blocks = _margins(archive, rels, "header") + blocks
            if read_all:
                blocks += _margins(archive, rels, "footer")
            text = BLOCK_SEPARATOR.join(blocks)
            alone = not text.strip()
            parts = _picture_parts(archive, rels, ids, alone)
            if parts and (vision or not alone):
                # Imported here: it brings Pillow, which a document without pictures does not need.
                from .pictures import read_pictures

                pictures, left_out = read_pictures(
                    archive, parts, filename, vision=vision, alone=alone, max_bytes=max_picture_bytes
                )
    except FileError:
        raise
    except Exception as exc:  # zipfile, zlib and lxml raise many kinds of errors on damaged input
        raise CorruptFile(filename) from exc
    if alone and not pictures:
        # Pages scanned or screenshots pasted into Word: not empty, but nothing the model can be given.
        if not parts:
            raise EmptyFile(filename)
        raise UnsupportedFile(filename, "docx-pictures" if vision else "docx-images")
    cut, truncated = cut_to_fit(text, max_chars)
    return ExtractedDocument(
        filename=filename,
        kind="docx",
        text=cut,
        truncated=truncated or not read_all,
        total_chars=len(text) if read_all else None,
        stopped_by="context" if truncated or not read_all else None,
        pictures=pictures,
        pictures_left_out=left_out,
    )
