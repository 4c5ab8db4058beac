"""Splitting Telegram HTML into messages that each fit Telegram's length limit."""

from __future__ import annotations

import unicodedata
from bisect import bisect_right
from itertools import accumulate

from pomogator.services.formatting.markdown import markdown_to_html
from pomogator.services.formatting.text import Char, Tag, html_to_text, tokenize, utf16_len

TELEGRAM_MESSAGE_LIMIT = 4096
# Preferred break points, best first. The separator itself is dropped at the split.
_SEPARATORS = ("\n\n", "\n", " ")
# A preferred break is used only if it keeps at least this share of the room; otherwise the chunk
# would be needlessly short and the answer split into more messages than necessary.
_MIN_FILL = 0.5
_ZWJ = "\u200d"


def render_answer(md: str, limit: int = TELEGRAM_MESSAGE_LIMIT) -> list[str]:
    """Markdown answer to Telegram HTML messages; empty when the answer has nothing visible."""
    html = markdown_to_html(md)
    if utf16_len(html) <= limit:
        # Every visible character takes at least as many units in the source, so HTML this short is one message as
        # it is (most answers, and every live view of their start): it is valid already, nothing to cut or close.
        return [html] if html_to_text(html).strip() else []
    return split_html(html, limit)


def split_html(html: str, limit: int = TELEGRAM_MESSAGE_LIMIT) -> list[str]:
    """Splits valid Telegram HTML into chunks whose visible text is at most ``limit`` UTF-16 units.

    Splits prefer paragraph, then line, then word boundaries. Tags open at a split are closed at the
    end of one chunk and reopened, attributes included, at the start of the next. Chunks that would
    show only whitespace are dropped.
    """
    if limit < 2:
        # Below two units a single astral character (an emoji) could never fit.
        raise ValueError("limit must be at least 2")
    atoms = tokenize(html)
    char_atoms = [index for index, atom in enumerate(atoms) if isinstance(atom, Char)]
    chars = [atom.text for atom in atoms if isinstance(atom, Char)]
    # units[k] is the UTF-16 length of chars[:k].
    units = [0, *accumulate(2 if ch > "\uffff" else 1 for ch in chars)]

    chunks: list[str] = []
    stack: list[Tag] = []
    cursor = 0  # next atom to replay
    start = 0
    while start < len(chars):
        fits = bisect_right(units, units[start] + limit) - 1
        if fits >= len(chars):
            cut, skip = len(chars), 0
        else:
            cut, skip = _choose_break(chars, start, max(fits, start + 1))

        # Tags between the previous chunk and this one only change what is open here.
        while cursor < char_atoms[start]:
            _apply(stack, atoms[cursor])
            cursor += 1
        parts = [tag.raw for tag in stack]
        last = char_atoms[cut - 1]
        while cursor <= last or (cursor < len(atoms) and _is_closing(atoms[cursor])):
            atom = atoms[cursor]
            _apply(stack, atom)
            parts.append(atom.raw)
            cursor += 1
        parts.extend(f"</{tag.name}>" for tag in reversed(stack))

        if "".join(chars[start:cut]).strip():
            chunks.append("".join(parts))
        start = cut + skip
    return chunks


def _choose_break(chars: list[str], start: int, fits: int) -> tuple[int, int]:
    """Where to end a chunk that cannot take everything up to ``fits``: (cut index, chars to drop)."""
    room = fits - start
    window = "".join(chars[start : fits + 2])
    found: list[tuple[int, str]] = []
    for separator in _SEPARATORS:
        # A separator may reach past the room: it is dropped, so it does not count.
        position = window.rfind(separator, 1, room + len(separator))
        if position > 0:
            if position >= room * _MIN_FILL:
                return start + position, len(separator)
            found.append((position, separator))
    if found:
        position, separator = max(found)
        return start + position, len(separator)
    return _hard_cut(chars, start, fits), 0


def _hard_cut(chars: list[str], start: int, fits: int) -> int:
    """Cuts inside a word, but not through an emoji sequence or a letter with its accents."""
    cut = fits
    while cut > start + 1 and _joined(chars[cut - 1], chars[cut]):
        cut -= 1
    # A "character" longer than the whole room has to be cut somewhere.
    return cut if not _joined(chars[cut - 1], chars[cut]) else fits


def _joined(before: str, after: str) -> bool:
    return (
        before == _ZWJ
        or after == _ZWJ
        or unicodedata.category(after) in ("Mn", "Me", "Mc")
        or "\ufe00" <= after <= "\ufe0f"
        or "\U0001f3fb" <= after <= "\U0001f3ff"
    )


def _is_closing(atom: Tag | Char) -> bool:
    return isinstance(atom, Tag) and atom.closing


def _apply(stack: list[Tag], atom: Tag | Char) -> None:
    if isinstance(atom, Tag):
        if atom.closing:
            if stack:
                stack.pop()
        else:
            stack.append(atom)
