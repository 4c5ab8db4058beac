"""Markdown (as LLMs write it) to the HTML subset Telegram accepts.

markdown-it-py does the parsing, so half-written Markdown from a stream degrades the CommonMark way:
an unclosed fence is a code block up to the end, an unclosed ``**`` or ``[link](`` stays literal text.
Raw HTML in the Markdown is never passed through; it is shown as text, except ``<br>`` (``<br/>``, ``<br />``, in
any case), which models write for a line break, in table cells above all: it is one. LaTeX formulas become code (see
``math``).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter

from markdown_it import MarkdownIt
from markdown_it.rules_inline import StateInline
from markdown_it.tree import SyntaxTreeNode

from pomogator.services.formatting.math import math_plugin
from pomogator.services.formatting.text import escape_attr, escape_text, html_to_text

_ALLOWED_SCHEMES = ("http://", "https://", "tg://", "mailto:")
_LANGUAGE = re.compile(r"[A-Za-z0-9_+#.-]{1,32}")
_BULLETS = ("•", "◦", "▪")
_INDENT = "   "
_RULE = "──────────"
_STYLE_TAGS = {"strong": "b", "em": "i", "s": "s"}
# Wider tables become "header: value" records: a wide <pre> wraps on phones and loses its alignment.
_MAX_TABLE_WIDTH = 40
# So do tables with a link (or an image, drawn as one): a <pre> holds plain text, which keeps a link's label and
# loses its address. "label (address)" in the <pre> would keep it, but not clickable, and an address rarely fits
# the width anyway; a record keeps the link as it is. And tables with a line break (``<br>``) in a cell: a <pre>
# row is one line; a record keeps the cell's lines.
_LINK_TAG = "<a "
_BREAK_TAG = re.compile(r"<br\s*/?>", re.IGNORECASE)
_BLANK_OR_BREAKS = re.compile(r"(?:\s|<br\s*/?>)*", re.IGNORECASE)


def breaks_plugin(md: MarkdownIt) -> None:
    """Makes ``<br>``, ``<br/>`` and ``<br />`` (in any case) line breaks; the rest of the raw HTML stays text. Code
    spans and code blocks are not parsed by inline rules, so a ``<br>`` in code stays as it is written."""
    md.inline.ruler.before("autolink", "html_break", _html_break)


def _html_break(state: StateInline, silent: bool) -> bool:
    match = _BREAK_TAG.match(state.src, state.pos, state.posMax)
    if match is None:
        return False
    pos = match.end()
    if not silent:
        # As Markdown's own breaks do, the spaces around it go; "a<br>\nb" is one break, not a break and a newline.
        state.pending = state.pending.rstrip(" ")
        # At either end of a paragraph, a heading or a cell it would only add a blank line to the blocks' own.
        first = not state.pending and not state.tokens
        last = _BLANK_OR_BREAKS.fullmatch(state.src, pos, state.posMax) is not None
        if not first and not last:
            token = state.push("hardbreak", "br", 0)
            token.markup = match.group(0)
    while pos < state.posMax and state.src[pos] == " ":
        pos += 1
    if pos < state.posMax and state.src[pos] == "\n":
        pos += 1
        while pos < state.posMax and state.src[pos] == " ":
            pos += 1
    state.pos = pos
    return True


_PARSER = (
    MarkdownIt("commonmark", {"html": False}).enable(["strikethrough", "table"]).use(math_plugin).use(breaks_plugin)
)
# Markdown with a letter or digit shows something unless it holds one of these, the only ways letters and digits
# vanish: a code fence's info string, a link reference definition, a character reference (``&nbsp;``), the address
# of a link or an image without a label (``![](data:…)``, ``[](#x)``, ``[][ref]``), an autolink, a ``<br>``.
_WORD = re.compile(r"[^\W_]")
_CAN_HIDE_WORDS = ("```", "~~~", "]:", "&", "](", "][", "<")


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
    return not html_to_text(markdown_to_html(md)).strip()


def _link_allowed(href: str) -> bool:
    return href.lower().startswith(_ALLOWED_SCHEMES) and len(href) > len("tg://")


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
            marker = f"{item.info or start + index}." if ordered else _BULLETS[depth % len(_BULLETS)]
            rendered = [(child, self.block(child, depth + 1)) for child in item.children]
            rendered = [(child, part) for child, part in rendered if part]
            # A paragraph or a heading opening the item goes on the marker's line.
            head = rendered.pop(0)[1] if rendered and rendered[0][0].type in ("paragraph", "heading") else ""
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
        return f"<blockquote>{inner}</blockquote>" if html_to_text(inner).strip() else ""

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
        cells_text = [[html_to_text(cell).strip() for cell in row] for row in cells_html]
        columns = len(header)
        widths = [max(_display_width(row[c]) if c < len(row) else 0 for row in cells_text) for c in range(columns)]
        narrow = sum(widths) + 3 * (columns - 1) <= _MAX_TABLE_WIDTH
        linked = any(_LINK_TAG in cell for row in cells_html for cell in row)
        broken = any("\n" in cell for row in cells_text for cell in row)
        if narrow and not linked and not broken and any(any(row) for row in cells_text):
            return self.monospaced_table(cells_text, widths)
        if not body:
            return " | ".join(cell for cell in cells_html[0] if html_to_text(cell).strip())
        records = []
        for cells in cells_html[1:]:
            lines = []
            for c, title in enumerate(cells_html[0]):
                cell = cells[c] if c < len(cells) else ""
                # Empty cells still get their line, or a column empty in every row would vanish.
                value = cell if html_to_text(cell).strip() else "—"
                lines.append(f"<b>{title}:</b> {value}" if html_to_text(title).strip() else value)
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
        if not html_to_text(inner).strip() or self.open_styles[tag]:
            return inner
        return f"<{tag}>{inner}</{tag}>"

    def link(self, href: str, node: SyntaxTreeNode, fallback: str = "🔗") -> str:
        if self.in_link or not _link_allowed(href):
            return self.inline_children(node)
        self.in_link = True
        try:
            label = self.inline_children(node)
        finally:
            self.in_link = False
        if not html_to_text(label).strip():
            label = fallback
        return f'<a href="{escape_attr(href)}">{label}</a>'
