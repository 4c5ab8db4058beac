"""Numbered footnotes as models write them, shown as superscript numbers (a markdown-it plugin)."""

from __future__ import annotations

import re

from markdown_it import MarkdownIt
from markdown_it.rules_inline import StateInline

# "[^1]" in the text and "[^1]: the note" at the start of a line, as GFM writes them; other labels ("[^note]") are
# shown as written.
_MARK = re.compile(r"\[\^([0-9]{1,3})\]")
_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def footnotes_plugin(md: MarkdownIt) -> None:
    """Shows "13 млн[^1]" as "13 млн¹", and the note below it, "[^1]: Росстат", as "¹ Росстат". Telegram has no
    footnotes; left as written, the marks read as noise, and a note one word long vanished as a link definition."""
    md.inline.ruler.before("link", "footnote_mark", _footnote_mark)


def _footnote_mark(state: StateInline, silent: bool) -> bool:
    src, pos = state.src, state.pos
    if src[pos] != "[":
        return False
    mark = _MARK.match(src, pos, state.posMax)
    if mark is None or src.startswith("(", mark.end()):
        return False  # "[^1](https://…)" is a link, labelled as written
    end = mark.end()
    if (pos == 0 or src[pos - 1] == "\n") and src.startswith(":", end):
        end += 1  # the note itself: its number leads the line, the space after the colon follows
    if not silent:
        state.append_pending(mark.group(1).translate(_SUPERSCRIPT))
    state.pos = end
    return True
