"""Raw HTML in LLM Markdown, read as the formatting models mean by it (a markdown-it plugin)."""

from __future__ import annotations

import html
import re

from markdown_it import MarkdownIt
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token

_BREAKS = ("softbreak", "hardbreak")
_BREAK_TAG = re.compile(r"<br\s*/?>", re.IGNORECASE)
_CODE_END = re.compile(r"</code\s*>", re.IGNORECASE)
_TAG = re.compile(r"<(?:(?P<open>[a-z]+)(?:\s[^<>]*)?|/(?P<close>[a-z]+)\s*)>", re.IGNORECASE)
# The tags read as formatting, by the token they become (the names markdown-it gives its own emphasis).
_STYLE_HTML = {
    "b": "strong",
    "strong": "strong",
    "i": "em",
    "em": "em",
    "u": "u",
    "ins": "u",
    "s": "s",
    "del": "s",
    "strike": "s",
    "kbd": "kbd",
    "sup": "sup",
    "sub": "sub",
}
# Tags that only frame lines: each starts a line of its own (a summary is its block's first line).
_LINE_TAGS = ("details", "summary")
# What shows nothing at the end of a paragraph, a heading or a cell: a break there would only add a blank line.
_INVISIBLE_END = re.compile(
    r"(?:\s|<br\s*/?>|<!--.*?-->|</?(?:details|summary)(?:\s[^<>]*)?>)*", re.IGNORECASE | re.DOTALL
)


def html_plugin(md: MarkdownIt) -> None:
    """Reads the raw HTML models write for formatting; the rest of it stays text. ``<br>``, ``<br/>`` and
    ``<br />`` (in any case) are line breaks; ``<details>`` and ``<summary>`` start lines; comments vanish;
    ``<b>``/``<strong>``, ``<i>``/``<em>``, ``<u>``/``<ins>``, ``<s>``/``<del>``/``<strike>``, ``<kbd>``, ``<sup>``
    and ``<sub>`` become
    the formatting they name when closed in the same paragraph, heading or cell, without crossing Markdown's own
    emphasis or links (an unclosed or stray one is text, as an unclosed ``**`` is). Code spans and code blocks are
    not parsed by inline rules, so HTML in code stays as it is written; ``<code>…</code>`` is a code span of what it
    holds, as written (``__init__.py``, ``**kwargs``), its entities read."""
    md.inline.ruler.before("autolink", "html_tags", _html_tag)
    md.inline.ruler2.before("fragments_join", "html_pairs", _pair_html_tags)


def _html_tag(state: StateInline, silent: bool) -> bool:
    src, pos, maximum = state.src, state.pos, state.posMax
    if src[pos] != "<":
        return False
    match = _BREAK_TAG.match(src, pos, maximum)
    if match is not None:
        return _line_start(state, silent, match.group(0), match.end(), repeat=True)
    if src.startswith("<!--", pos):
        end = src.find("-->", pos + 4, maximum)
        if end < 0:
            return False
        return _drop(state, silent, end + 3)
    match = _TAG.match(src, pos, maximum)
    if match is None:
        return False
    name = (match.group("open") or match.group("close")).lower()
    if name == "code" and match.group("open"):
        return _code_span(state, silent, match.end())
    if name in _LINE_TAGS:
        return _line_start(state, silent, match.group(0), match.end(), repeat=False)
    kind = _STYLE_HTML.get(name)
    if kind is None:
        return False
    if not silent:
        # Paired (or turned back into text) by ``_pair_html_tags`` once the whole inline is read.
        token = state.push("html_tag", "", 0)
        token.info = kind
        token.markup = match.group(0)
        token.meta = {"closing": match.group("close") is not None}
    state.pos = match.end()
    return True


def _line_start(state: StateInline, silent: bool, markup: str, end: int, repeat: bool) -> bool:
    """A tag that starts a new line (``<br>``; ``<details>``, ``<summary>``, their closing tags) ending at ``end``.
    ``repeat``: whether it adds a line after another line start (``<br><br>`` is a blank line, ``<details><summary>``
    is one line start)."""
    if not silent:
        # As Markdown's own breaks do, the spaces around it go; "a<br>\nb" is one break, not a break and a newline.
        state.pending = state.pending.rstrip(" ")
        tokens = state.tokens
        after_break = not state.pending and bool(tokens) and tokens[-1].type in _BREAKS
        # At either end of a paragraph, a heading or a cell it would only add a blank line to the blocks' own.
        first = not state.pending and not tokens
        last = _INVISIBLE_END.fullmatch(state.src, end, state.posMax) is not None
        if last and after_break:
            tokens.pop()  # "…\n</details>": the line break before a closing tag on a line of its own shows nothing
        elif not first and not last and (repeat or not after_break):
            token = state.push("hardbreak", "br", 0)
            token.markup = markup
        end = _past_line_end(state.src, end, state.posMax)
    state.pos = end
    return True


def _code_span(state: StateInline, silent: bool, start: int) -> bool:
    """``<code>`` at ``start``: what it holds up to its ``</code>``, as written, is a code span (an empty one shows
    nothing); without a closing tag it is text."""
    end = _CODE_END.search(state.src, start, state.posMax)
    if end is None:
        return False
    if not silent:
        content = html.unescape(state.src[start : end.start()]).replace("\n", " ")
        if content.strip():
            token = state.push("code_inline", "code", 0)
            token.markup = "`"
            token.content = content
    state.pos = end.end()
    return True


def _drop(state: StateInline, silent: bool, end: int) -> bool:
    """An HTML comment ending at ``end``: it shows nothing, nor does a line it had to itself."""
    if not silent:
        tokens = state.tokens
        line_start = not state.pending and (not tokens or tokens[-1].type in _BREAKS)
        if _INVISIBLE_END.fullmatch(state.src, end, state.posMax) is not None:
            state.pending = state.pending.rstrip(" ")
            if not state.pending and tokens and tokens[-1].type == "softbreak":
                tokens.pop()
        elif line_start or state.pending.endswith(" "):
            end = _past_line_end(state.src, end, state.posMax, newline=line_start)
    state.pos = end
    return True


def _past_line_end(src: str, pos: int, maximum: int, newline: bool = True) -> int:
    """``pos`` past the spaces after it and, with ``newline``, one line end and the next line's indent."""
    while pos < maximum and src[pos] == " ":
        pos += 1
    if newline and pos < maximum and src[pos] == "\n":
        pos += 1
        while pos < maximum and src[pos] == " ":
            pos += 1
    return pos


def _pair_html_tags(state: StateInline) -> None:
    """Turns each HTML tag closed at the same depth in Markdown's own nesting (so that it crosses no emphasis nor
    link) into an opening and a closing token; any other one back into its text."""
    tokens = state.tokens
    if not any(token.type == "html_tag" for token in tokens):
        return
    depth = 0
    opened: list[tuple[Token, int]] = []  # open tags not yet paired, and the depth at each
    for token in tokens:
        if token.type != "html_tag":
            depth += token.nesting
            if token.nesting < 0:
                # Tags opened inside what just closed can pair no more.
                while opened and opened[-1][1] > depth:
                    opened.pop()
            continue
        if not token.meta["closing"]:
            opened.append((token, depth))
            continue
        for at in range(len(opened) - 1, -1, -1):
            start, start_depth = opened[at]
            if start_depth != depth:
                break
            if start.info == token.info:
                # Unpaired tags opened inside this pair stay text.
                del opened[at:]
                start.type, start.tag, start.nesting = f"{token.info}_open", token.info, 1
                token.type, token.tag, token.nesting = f"{token.info}_close", token.info, -1
                break
    for token in tokens:
        if token.type == "html_tag":
            token.type, token.content = "text", token.markup
