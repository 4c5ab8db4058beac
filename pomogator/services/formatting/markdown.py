"""Markdown (as LLMs write it) to the HTML subset Telegram accepts.

markdown-it-py does the parsing, so half-written Markdown from a stream degrades the CommonMark way:
an unclosed fence is a code block up to the end, an unclosed ``**`` or ``[link](`` stays literal text.
Raw HTML in the Markdown is never passed through. The few tags models write for formatting mean what they say
(``html_tags``): ``<br>`` is a line break, ``<b>``, ``<i>``, ``<u>``, ``<s>`` and their synonyms style text,
``<kbd>`` and ``<code>`` are code, ``<sup>`` and ``<sub>`` become Unicode super- and subscripts, ``<details>`` and
``<summary>`` plain lines, and comments vanish; any other tag, and one left unclosed, is shown as text. LaTeX
formulas become code (see ``math``). Bare addresses are text that Telegram links itself, safe from emphasis
(``bare_urls``); so are an asterisk between two letters or digits, as in "2*3*4", and a Python name such as
``__init__`` (``emphasis``). A task list's "[ ]" and "[x]" are drawn as boxes. Link reference
definitions are not read: a "[1]: https://…" list of sources stays as it was written. A link keeps its address only
if Telegram takes it (``links``).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

from pomogator.services.formatting.bare_urls import bare_urls_plugin
from pomogator.services.formatting.emphasis import emphasis_plugin
from pomogator.services.formatting.footnotes import footnotes_plugin
from pomogator.services.formatting.html_tags import html_plugin
from pomogator.services.formatting.links import WEB_SCHEMES, link_allowed
from pomogator.services.formatting.math import math_plugin
from pomogator.services.formatting.text import escape_attr, escape_text, visible_text

_LANGUAGE = re.compile(r"[A-Za-z0-9_+#.-]{1,32}")
_BULLETS = ("•", "◦", "▪")
# A task list's box ("- [ ] купить", "- [x] сделано"), drawn as the box it means.
_TASK = re.compile(r"\[([ xX])\] ")
_TASK_BOXES = {" ": "☐", "x": "☑", "X": "☑"}
_INDENT = "   "
_RULE = "──────────"
_STYLE_TAGS = {"strong": "b", "em": "i", "s": "s", "u": "u"}
# Wider tables become "header: value" records: a wide <pre> wraps on phones and loses its alignment.
_MAX_TABLE_WIDTH = 40
# So do tables with a link (or an image, drawn as one): a <pre> holds plain text, which keeps a link's label and
# loses its address. "label (address)" in the <pre> would keep it, but not clickable, and an address rarely fits
# the width anyway; a record keeps the link as it is. And tables with a line break (``<br>``) in a cell: a <pre>
# row is one line; a record keeps the cell's lines.
_LINK_TAG = "<a "
# ``<sup>`` and ``<sub>`` (read by ``html_tags``) drawn with Unicode's super- and subscript characters.
_SUPERSCRIPTS = str.maketrans("0123456789+-−=()abcdefghijklmnoprstuvwxyz", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁻⁼⁽⁾ᵃᵇᶜᵈᵉᶠᵍʰⁱʲᵏˡᵐⁿᵒᵖʳˢᵗᵘᵛʷˣʸᶻ")
_SUBSCRIPTS = str.maketrans("0123456789+-−=()aehijklmnoprstuvx", "₀₁₂₃₄₅₆₇₈₉₊₋₋₌₍₎ₐₑₕᵢⱼₖₗₘₙₒₚᵣₛₜᵤᵥₓ")
# What has them all; spaces stay spaces ("n + 1" is "ⁿ ⁺ ¹"). Capitals have no superscripts every phone draws.
_SCRIPTABLE = {
    "sup": (re.compile(r"[0-9+\-−=()a-pr-z ]+"), _SUPERSCRIPTS, "^"),
    "sub": (re.compile(r"[0-9+\-−=()aehijklmnoprstuvx ]+"), _SUBSCRIPTS, "_"),
}


_PARSER = (
    MarkdownIt("commonmark", {"html": False})
    .enable(["strikethrough", "table"])
    # A link reference definition ("[1]: https://…") is shown as written, not read: models write them for a list
    # of sources that would otherwise vanish whole. Numbered footnotes ("[^1]", "[^1]: …") become superscripts.
    .disable("reference")
    .use(math_plugin)
    .use(html_plugin)
    .use(bare_urls_plugin)
    .use(emphasis_plugin)
    .use(footnotes_plugin)
)
# Markdown with a letter or digit shows something unless it holds one of these, the only ways letters and digits
# vanish: a code fence's info string, a character reference (``&nbsp;``), the address of a link or an image without
# a label (``![](data:…)``, ``[](#x)``), an autolink, raw HTML (a ``<br>``, a comment).
_WORD = re.compile(r"[^\W_]")
_CAN_HIDE_WORDS = ("```", "~~~", "&", "](", "<")


# The last few conversions are kept: the chat service asks whether a finished answer shows anything
# (``shows_nothing``), then the bot renders the same text to send it.
@functools.lru_cache(maxsize=4)
def markdown_to_html(md: str) -> str:
    """Converts Markdown to Telegram HTML that is valid for any input, including unfinished Markdown."""
    root = SyntaxTreeNode(_PARSER.parse(md))
    return _Renderer().blocks(root.children, depth=0).strip()


def shows_nothing(md: str) -> bool:
    """Whether ``md`` has nothing visible once rendered (``render_answer`` makes no message of it): blank, or only
    markup, such as an empty code fence or ``&nbsp;``. Renders only what might be so: most answers have a word that
    nothing can hide."""
    if _WORD.search(md) and not any(mark in md for mark in _CAN_HIDE_WORDS):
        return False
    return not visible_text(markdown_to_html(md)).strip()


def _display_width(s: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in s)


def _continued(block: str, indent: str) -> str:
    """``block``'s later lines start under the item's text, not under its marker; a code block's lines stay as
    they are (they are its content)."""
    if "\n" not in block or "<pre>" in block:
        return block
    return block.replace("\n", "\n" + indent)


class _Renderer:
    def __init__(self) -> None:
        self.in_quote = False
        self.in_link = False
        # How many times each style tag is open; nested duplicates add nothing visible.
        self.open_styles: Counter[str] = Counter()

    # Blocks

    def blocks(self, nodes: list[SyntaxTreeNode], depth: int, separator: str = "\n\n") -> str:
        parts = [self.block(node, depth) for node in nodes]
        return separator.join(part for part in parts if part)

    def block(self, node: SyntaxTreeNode, depth: int) -> str:
        kind = node.type
        if kind == "paragraph":
            return self.inline_children(node)
        if kind == "heading":
            return self.style("b", node)
        if kind in ("bullet_list", "ordered_list"):
            return self.list_block(node, depth)
        if kind == "blockquote":
            return self.blockquote(node, depth)
        if kind in ("fence", "code_block"):
            return self.code_block(node)
        if kind == "table":
            return self.table(node)
        if kind == "hr":
            return _RULE
        if node.children:
            return self.blocks(node.children, depth)
        return escape_text(node.content)

    def list_block(self, node: SyntaxTreeNode, depth: int) -> str:
        ordered = node.type == "ordered_list"
        start = int(str(node.attrs.get("start", 1)))
        lines = []
        for index, item in enumerate(node.children):
            # Numbered from the list's start as Markdown has it: "1." written for every item is 1, 2, 3.
            marker = f"{start + index}." if ordered else _BULLETS[depth % len(_BULLETS)]
            rendered = [(child, self.block(child, depth + 1)) for child in item.children]
            rendered = [(child, part) for child, part in rendered if part]
            # A paragraph or a heading opening the item goes on the marker's line.
            head = rendered.pop(0)[1] if rendered and rendered[0][0].type in ("paragraph", "heading") else ""
            task = _TASK.match(head)
            if task:
                box = _TASK_BOXES[task.group(1)]
                marker = f"{marker} {box}" if ordered else box
                head = head[task.end() :]
            inner = _INDENT * (depth + 1)
            lines.append(f"{_INDENT * depth}{marker} {_continued(head, inner)}".rstrip())
            for child, part in rendered:
                nested = child.type in ("bullet_list", "ordered_list")
                lines.append(part if nested else f"{inner}{_continued(part, inner)}")
        return "\n".join(lines)

    def blockquote(self, node: SyntaxTreeNode, depth: int) -> str:
        if self.in_quote:
            # Telegram rejects nested blockquotes; the inner one just joins the outer.
            return self.blocks(node.children, depth)
        self.in_quote = True
        try:
            inner = self.blocks(node.children, depth)
        finally:
            self.in_quote = False
        return f"<blockquote>{inner}</blockquote>" if visible_text(inner).strip() else ""

    def code_block(self, node: SyntaxTreeNode) -> str:
        content = node.content.rstrip("\n")
        if not content.strip():
            return ""
        words = node.info.split()
        language = words[0] if words else ""
        if _LANGUAGE.fullmatch(language):
            return f'<pre><code class="language-{escape_attr(language)}">{escape_text(content)}</code></pre>'
        return f"<pre>{escape_text(content)}</pre>"

    def table(self, node: SyntaxTreeNode) -> str:
        rows: list[list[SyntaxTreeNode]] = []
        for section in node.children:
            for row in section.children:
                rows.append([cell for cell in row.children])
        if not rows:
            return ""
        header, body = rows[0], rows[1:]
        cells_html = [[self.inline_children(cell) for cell in row] for row in rows]
        # A title is one line: a break in it ("Price<br>(USD)") is a space.
        cells_html[0] = [" ".join(title.split("\n")) for title in cells_html[0]]
        cells_text = [[visible_text(cell).strip() for cell in row] for row in cells_html]
        columns = len(header)
        widths = [max(_display_width(row[c]) if c < len(row) else 0 for row in cells_text) for c in range(columns)]
        narrow = sum(widths) + 3 * (columns - 1) <= _MAX_TABLE_WIDTH
        linked = any(_LINK_TAG in cell for row in cells_html for cell in row)
        broken = any("\n" in cell for row in cells_text for cell in row)
        if narrow and not linked and not broken and any(any(row) for row in cells_text):
            return self.monospaced_table(cells_text, widths)
        if not body:
            return " | ".join(cell for cell in cells_html[0] if visible_text(cell).strip())
        records = []
        for cells in cells_html[1:]:
            lines = []
            for c, title in enumerate(cells_html[0]):
                cell = cells[c] if c < len(cells) else ""
                # Empty cells still get their line, or a column empty in every row would vanish.
                value = cell if visible_text(cell).strip() else "—"
                lines.append(f"<b>{title}:</b> {value}" if visible_text(title).strip() else value)
            records.append("\n".join(lines))
        return "\n\n".join(records)

    @staticmethod
    def monospaced_table(cells: list[list[str]], widths: list[int]) -> str:
        def line(row: list[str]) -> str:
            padded = [
                (row[c] if c < len(row) else "") + " " * (widths[c] - _display_width(row[c] if c < len(row) else ""))
                for c in range(len(widths))
            ]
            return " | ".join(padded).rstrip()

        rule = "-+-".join("-" * width for width in widths)
        text = "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])
        return f"<pre>{escape_text(text)}</pre>"

    # Inline

    def inline_children(self, node: SyntaxTreeNode) -> str:
        return "".join(self.inline(child) for child in node.children)

    def inline(self, node: SyntaxTreeNode) -> str:
        kind = node.type
        if kind == "text":
            return escape_text(node.content)
        if kind == "inline":
            # Its source parsed to no tokens: it was only line breaks (``<br>``).
            return self.inline_children(node)
        if kind in ("softbreak", "hardbreak"):
            return "\n"
        if kind == "code_inline":
            # Telegram does not allow code inside a link.
            code = escape_text(node.content)
            return code if self.in_link else f"<code>{code}</code>"
        if kind in _STYLE_TAGS:
            return self.style(_STYLE_TAGS[kind], node)
        if kind in _SCRIPTABLE:
            return self.script(kind, node)
        if kind == "kbd":
            # A key ("<kbd>Ctrl</kbd>") is code, of its text: Telegram allows no formatting in code.
            key = escape_text(visible_text(self.inline_children(node)))
            return key if self.in_link or not key.strip() else f"<code>{key}</code>"
        if kind == "link":
            return self.link(str(node.attrs.get("href", "")), node)
        if kind == "image":
            return self.link(str(node.attrs.get("src", "")), node, fallback="🖼")
        if node.children:
            return self.inline_children(node)
        return escape_text(node.content)

    def style(self, tag: str, node: SyntaxTreeNode) -> str:
        self.open_styles[tag] += 1
        try:
            inner = self.inline_children(node)
        finally:
            self.open_styles[tag] -= 1
        if not visible_text(inner).strip() or self.open_styles[tag]:
            return inner
        return f"<{tag}>{inner}</{tag}>"

    def script(self, kind: str, node: SyntaxTreeNode) -> str:
        """``<sup>`` or ``<sub>``: Unicode's super- or subscript characters ("mc²", "H₂O") when its text has them
        all, otherwise "^(…)" or "_(…)"."""
        inner = self.inline_children(node)
        text = visible_text(inner)
        if not text.strip():
            return inner
        scriptable, characters, mark = _SCRIPTABLE[kind]
        if inner == escape_text(text) and scriptable.fullmatch(text):
            return escape_text(text.translate(characters))
        return f"{mark}({inner})"

    def link(self, href: str, node: SyntaxTreeNode, fallback: str = "🔗") -> str:
        if self.in_link:
            return self.inline_children(node)
        if not link_allowed(href):
            return self.refused_link(href, node)
        self.in_link = True
        try:
            label = self.inline_children(node)
        finally:
            self.in_link = False
        if not visible_text(label).strip():
            label = fallback
        return f'<a href="{escape_attr(href)}">{label}</a>'

    def refused_link(self, href: str, node: SyntaxTreeNode) -> str:
        """A link whose address Telegram would refuse: its label, and a web address after it in parentheses (the
        person may still copy "http://localhost:8000" or see what "https://<домен>/api" stands for); other schemes
        (``javascript:``, a relative path, ``data:`` of an image) only as the label."""
        label = self.inline_children(node)
        if not href.lower().startswith(WEB_SCHEMES):
            return label
        address = _PARSER.normalizeLinkText(href)
        shown = visible_text(label).strip()
        if not shown:
            return escape_text(address)
        if shown == address:
            return label
        return f"{label} ({escape_text(address)})"
