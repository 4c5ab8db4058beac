"""CommonMark's emphasis, with no ``*`` between two letters or digits (a markdown-it plugin)."""

from __future__ import annotations

import re
import unicodedata

from markdown_it import MarkdownIt
from markdown_it.rules_inline import StateInline, emphasis

_STARS = re.compile(r"\*+")
# A Python "dunder" name written bare: ``__init__``, ``__name__ == "__main__"``, ``__init__.py``.
_DUNDER = re.compile(r"__[a-z][a-z0-9_]*?__(?![A-Za-z0-9_])")


def emphasis_plugin(md: MarkdownIt) -> None:
    """CommonMark's emphasis, except that a run of ``*`` between two letters or digits neither opens nor closes
    one, as GFM already has it for ``_``: "2*3*4 = 24", "a*b*c" and "x**2 + y**2" are arithmetic, not italics or
    bold. Emphasis inside a word ("**Python**овский") is lost with it: rare in answers, which put emphasis around
    words, or before punctuation ("**Важно**:", "**API**-ключ"), which still works. Ideographs count as no letters
    here: Chinese and Japanese put no spaces between words, so their emphasis is always "inside a word".

    A Python dunder name outside code (``if __name__ == "__main__"``, ``__init__.py``) stays as written, not bold
    "name": models often leave them out of backticks, and the underscores are what the reader copies. Only lowercase
    ASCII names count: ``__Важно__`` and ``__NOTE__`` are still bold."""
    md.inline.ruler.at("emphasis", _emphasis)


def _emphasis(state: StateInline, silent: bool) -> bool:
    src, pos, maximum = state.src, state.pos, state.posMax
    if not silent and src.startswith("__", pos) and (pos == 0 or not _word_character(src[pos - 1])):
        dunder = _DUNDER.match(src, pos, maximum)
        if dunder:
            state.append_pending(dunder.group(0))
            state.pos = dunder.end()
            return True
    stars = _STARS.match(src, pos, maximum) if pos > 0 and not silent else None
    if stars and stars.end() < maximum and _word_character(src[pos - 1]) and _word_character(src[stars.end()]):
        state.append_pending(stars.group(0))
        state.pos = stars.end()
        return True
    return emphasis.tokenize(state, silent)


def _word_character(char: str) -> bool:
    return char.isalnum() and unicodedata.east_asian_width(char) not in "WF"
