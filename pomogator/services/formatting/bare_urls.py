"""Bare ``http(s)://`` addresses in LLM Markdown, kept as written (a markdown-it plugin)."""

from __future__ import annotations

import re

from markdown_it import MarkdownIt
from markdown_it.common.utils import unescapeAll
from markdown_it.rules_inline import StateInline

# After "http:" or "https:", "//" and the rest up to a space or a "<", brackets balanced one level deep
# ("…/Python_(language)"), so that a link's "]" or an aside's ")" ends it.
_URL_REST = re.compile(r"//(?:[^\s<>()\[\]`]|\([^\s<>()\[\]`]*\)|\[[^\s<>()\[\]`]*\])+")
# What ends a sentence rather than an address, as GFM's autolinks and Telegram's own have it: "см. https://x.io."
_URL_TRAILING = ".,;:!?*_~'\"»…"
# A character reference at the end of what is left: its ";" belongs to it ("…&#65;" is "…A", as in the text around).
_REFERENCE_END = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31})$")


def bare_urls_plugin(md: MarkdownIt) -> None:
    """Keeps bare ``http(s)://`` addresses as they are written: without it, "__init__.py" in one lost its
    underscores to emphasis, and Telegram linked the mangled address. They stay text, which Telegram links itself,
    without the punctuation that ends a sentence after them."""
    md.inline.ruler.after("text", "bare_url", _bare_url)


def _bare_url(state: StateInline, silent: bool) -> bool:
    src, pos = state.src, state.pos
    if src[pos] != ":":
        return False
    # The text rule stops at the ":", so "http" or "https" before it is text already, a word of its own.
    if src[pos - 5 : pos].lower() == "https":
        scheme = 5
    elif src[pos - 4 : pos].lower() == "http":
        scheme = 4
    else:
        return False
    if pos > scheme and src[pos - scheme - 1].isalnum():
        return False
    match = _URL_REST.match(src, pos + 1, state.posMax)
    if match is None:
        return False
    written = match.group(0)
    rest = written.rstrip(_URL_TRAILING)
    if written[len(rest) :].startswith(";") and _REFERENCE_END.search(rest):
        rest += ";"
    if len(rest) <= len("//"):
        return False
    if not silent:
        # Backslash escapes and character references mean in an address what they mean in the text around it.
        state.append_pending(":" + unescapeAll(rest))
    state.pos = pos + 1 + len(rest)
    return True
