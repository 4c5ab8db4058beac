"""LaTeX formulas in LLM Markdown, kept as they were written.

Telegram cannot draw formulas, and Markdown mangles them: ``\\{`` and ``\\\\`` lose their backslashes, and
``$x^*$ и $y^*$`` turns italic. This markdown-it plugin takes formulas out before Markdown sees them and turns them
into code: inline ``$…$``, ``$$…$$``, ``\\(…\\)`` and ``\\[…\\]`` become a code span, and a formula on lines of its
own (``$$`` or ``\\[`` opening a line, the closing mark ending one) a code block marked ``latex``. The source stays
exact, readable and copyable.

Dollars follow Pandoc's rule, made stricter so that prices and shell variables stay text: the opening ``$`` has no
space after it and no letter or digit before it, the closing one no space before it and no letter or digit after it
("с $5 до $10", "5$ и 50$", "PATH=$HOME/bin:$PATH" are no formulas).

``\\[`` and ``\\(`` are also Markdown's escaped brackets, shown as ``[`` and ``(`` when they hold no formula. An
inline one after a letter or digit holds none ("arr\\[0\\]", "a\\[i-1\\]" index an array), nor do brackets around a
regex's escapes ("\\(\\d+\\)": LaTeX's commands have two letters or more), nor square ones around a bare number or
word, a reference or an index ("Источник \\[1\\], \\[2\\]"; nobody displays a formula of one symbol). ``\\(n\\)``
stays a formula: inline LaTeX names a variable that way.
"""

from __future__ import annotations

import re

from markdown_it import MarkdownIt
from markdown_it.rules_block import StateBlock
from markdown_it.rules_inline import StateInline

LANGUAGE = "latex"
_BRACKETS = {"\\(": "\\)", "\\[": "\\]"}
_BLOCK_OPENERS = {"$$": "$$", "\\[": "\\]"}
_FORMULA_MARK = re.compile(r"[A-Za-z0-9\\^_={}+\-*/<>|]")
# LaTeX's commands: a word ("\alpha") or one other character ("\{", "\\"). One letter is a regex's "\d".
_COMMAND = re.compile(r"\\(?:[A-Za-z]+|.)", re.DOTALL)
# What escaped square brackets hold in prose: "[1]", "[1, 2]", "[1-3]", "[i]", "[key]".
_BARE = re.compile(r"\w+|\d+(?:\s*[,–-]\s*\d+)+")


def math_plugin(md: MarkdownIt) -> None:
    """Adds the formula rules to ``md``."""
    md.block.ruler.before("fence", "math_block", _math_block, {"alt": ["paragraph", "reference", "blockquote", "list"]})
    # Before "escape", which would read "\(" as an escaped "(".
    md.inline.ruler.before("escape", "math_brackets", _math_brackets)
    md.inline.ruler.before("escape", "math_dollars", _math_dollars)


def _push_code(state: StateInline, content: str, markup: str) -> None:
    token = state.push("code_inline", "code", 0)
    token.markup = markup
    token.content = " ".join(content.split("\n")).strip()


def _formula_like(content: str, opener: str) -> bool:
    """Whether ``content`` between ``opener`` (``\\(`` or ``\\[``) and its closing mark can be a formula: it has a
    Latin letter, a digit or a mark of one (prose about escaping brackets, "скобки \\( и \\)", has none), no
    one-letter command (a regex, "\\(\\d+\\)") and, between square brackets, more than a bare number or word."""
    if _FORMULA_MARK.search(content) is None:
        return False
    if any(len(command) == 2 and command[1].isalpha() for command in _COMMAND.findall(content)):
        return False
    return opener != "\\[" or _BARE.fullmatch(content.strip()) is None


def _math_brackets(state: StateInline, silent: bool) -> bool:
    pos = state.pos
    opener = state.src[pos : pos + 2]
    closer = _BRACKETS.get(opener)
    if closer is None or (pos > 0 and state.src[pos - 1].isalnum()):
        # "arr\[0\]": escaped brackets after a word index it, as "5$" after a number is a price.
        return False
    start = pos + 2
    end = state.src.find(closer, start, state.posMax)
    if end < 0 or not _formula_like(state.src[start:end], opener):
        return False
    if not silent:
        _push_code(state, state.src[start:end], opener)
    state.pos = end + 2
    return True


def _math_dollars(state: StateInline, silent: bool) -> bool:
    src, pos, maximum = state.src, state.pos, state.posMax
    if src[pos] != "$" or (pos > 0 and src[pos - 1].isalnum()):
        # "5$" is a price, "PATH=$HOME" a variable: a formula opens after a space or a mark.
        return False
    double = src.startswith("$$", pos)
    start = pos + (2 if double else 1)
    if start >= maximum or src[start].isspace() or (not double and src[start] == "$"):
        return False
    end = _closing_dollars(src, start, maximum, double)
    if end is None or end == start:
        # "$$$$" holds no formula; an empty code span would show nothing.
        return False
    if not silent:
        _push_code(state, src[start:end], "$$" if double else "$")
    state.pos = end + (2 if double else 1)
    return True


def _closing_dollars(src: str, start: int, maximum: int, double: bool) -> int | None:
    """Where the formula opened just before ``start`` ends: the next unescaped ``$`` (``$$``), if it has no space
    before it and (for a single ``$``) no letter or digit after it. Only the next one: in "с $5, а $x$" the dollar of
    "$x" cannot close "$5", and "$x$" is the formula."""
    pos = start
    while pos < maximum:
        char = src[pos]
        if char == "\\":
            pos += 2
            continue
        if char == "$":
            if src[pos - 1].isspace():
                return None
            if double:
                return pos if src.startswith("$$", pos) and pos + 2 <= maximum else None
            after = src[pos + 1] if pos + 1 < maximum else ""
            return None if after.isalnum() else pos
        pos += 1
    return None


def _math_block(state: StateBlock, start_line: int, end_line: int, silent: bool) -> bool:
    if state.is_code_block(start_line):
        return False
    begin = state.bMarks[start_line] + state.tShift[start_line]
    opener = state.src[begin : begin + 2]
    closer = _BLOCK_OPENERS.get(opener)
    if closer is None:
        return False
    first = state.src[begin + 2 : state.eMarks[start_line]]
    lines: list[str] = []
    line = start_line
    text = first
    closed = False
    while True:
        stripped = text.rstrip()
        at = stripped.find(closer) if line > start_line else _find_closer_after_content(stripped, closer)
        if at >= 0:
            if stripped[at + len(closer) :].strip():
                # Text after the closing mark: a formula inside a paragraph, for the inline rules.
                return False
            lines.append(stripped[:at])
            closed = True
            break
        lines.append(text)
        line += 1
        if line >= end_line:
            break  # unclosed: the end of the answer (or of the list item) closes it, as it does a code fence
        line_start = state.bMarks[line] + state.tShift[line]
        if line_start >= state.eMarks[line]:
            return False  # a blank line: LaTeX allows none inside a formula
        if state.sCount[line] < state.blkIndent:
            return False
        text = state.src[state.bMarks[line] : state.eMarks[line]]
    content = "\n".join(lines).strip("\n")
    if not content.strip() or (opener == "\\[" and not _formula_like(content, opener)):
        return False
    if silent:
        return True
    state.line = line + 1 if closed else line
    token = state.push("fence", "code", 0)
    token.info = LANGUAGE
    token.markup = opener
    token.content = _dedent(content) + "\n"
    token.map = [start_line, state.line]
    return True


def _find_closer_after_content(text: str, closer: str) -> int:
    """The closing mark on the opening line, which must come after something ("$$" alone only opens)."""
    at = text.find(closer)
    return at if at >= 0 and text[:at].strip() else -1


def _dedent(content: str) -> str:
    lines = content.split("\n")
    indents = [len(line) - len(line.lstrip()) for line in lines if line.strip()]
    cut = min(indents, default=0)
    return "\n".join(line[cut:].rstrip() for line in lines)
