"""Splitting Telegram HTML into messages that each fit Telegram's limits."""

from __future__ import annotations

import unicodedata
from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate

from pomogator.services.formatting.limits import TELEGRAM_ENTITY_LIMIT, TELEGRAM_MESSAGE_LIMIT
from pomogator.services.formatting.markdown import markdown_to_html
from pomogator.services.formatting.text import Char, Tag, tokenize, utf16_len, visible_text

# Preferred break points, best first. The separator itself is dropped at the split.
_SEPARATORS = ("\n\n", "\n", " ")
# A preferred break is used only if it keeps at least this share of the room; otherwise the chunk
# would be needlessly short and the answer split into more messages than necessary.
_MIN_FILL = 0.5
# A break moved for the blocks' sake (before a code block the room would cut, before a heading or an intro line
# "Вот код:" that belongs with what follows it) may end a chunk earlier, down to this share of the room. Such a break
# costs at most three quarters of a message of room, once per block: cheaper for the user than a code block in two
# parts (two copy buttons, halves to join by hand) or a heading alone at the bottom of a message. Below a quarter
# (about a thousand characters) the message before the block would be a stub of a few lines, and an answer that
# alternates short text and code would take far more messages than it needs.
_BLOCK_FILL = 0.25
# At most this many lead-in lines (a heading, then "Вот код:") move on with the block they lead into: a longer run
# of bold lines, or of lines ending in ":", is content more than a lead-in, and following it back would only
# shorten the chunk.
_MAX_LEAD_INS = 3
_BOLD = frozenset({"b", "strong"})
_ZWJ = "\u200d"


def render_answer(md: str, limit: int = TELEGRAM_MESSAGE_LIMIT, max_entities: int = TELEGRAM_ENTITY_LIMIT) -> list[str]:
    """Markdown answer to Telegram HTML messages; empty when the answer has nothing visible."""
    html = markdown_to_html(md)
    # One entity per open tag, or fewer (a code block's "<pre><code>" is one): an upper bound, enough to pass it by.
    if utf16_len(html) <= limit and _open_tags(html) <= max_entities:
        # Every visible character takes at least as many units in the source, so HTML this short is one message as
        # it is (most answers, and every live view of their start): it is valid already, nothing to cut or close.
        return [html] if visible_text(html).strip() else []
    return split_html(html, limit, max_entities)


def render_answer_ending(md: str, ending: str) -> list[str]:
    """``render_answer`` with ``ending`` (Telegram HTML: a note, e.g. in ``<i>``) after a blank line at the end of the
    last message, its visible length and its entities kept free there; empty when the answer shows nothing."""
    room = TELEGRAM_MESSAGE_LIMIT - utf16_len(visible_text(ending)) - 2
    chunks = render_answer(md, room, TELEGRAM_ENTITY_LIMIT - _open_tags(ending))
    if chunks:
        chunks[-1] += "\n\n" + ending
    return chunks


def split_html(html: str, limit: int = TELEGRAM_MESSAGE_LIMIT, max_entities: int = TELEGRAM_ENTITY_LIMIT) -> list[str]:
    """Splits valid Telegram HTML into chunks whose visible text is at most ``limit`` UTF-16 units and which hold at
    most ``max_entities`` entities.

    Splits prefer paragraph, then line, then word boundaries, and keep blocks whole where they can: a code block
    that would be cut starts the next chunk instead, and so do the heading or the "…:" line that leads into what
    comes next. Tags open at a split are closed at the end of one chunk and reopened, attributes included, at the
    start of the next. Chunks that would show only whitespace are dropped.

    A chunk depends only on the text up to two characters past its room, never on how far a block beyond it goes
    on: as a streamed answer grows, the chunks it has filled stay as they were sent (the live view sends them as
    messages once they are full and does not edit them while the answer streams).
    """
    if limit < 2:
        # Below two units a single astral character (an emoji) could never fit.
        raise ValueError("limit must be at least 2")
    if max_entities < 1:
        raise ValueError("max_entities must be at least 1")
    layout = _Layout.of(tokenize(html))
    atoms, chars, units, opened = layout.atoms, layout.chars, layout.units, layout.opened

    chunks: list[str] = []
    stack: list[Tag] = []
    cursor = 0  # next atom to replay
    start = 0
    while start < len(chars):
        # Tags between the previous chunk and this one only change what is open here.
        while cursor < layout.char_atoms[start]:
            _apply(stack, atoms[cursor])
            cursor += 1
        fits = bisect_right(units, units[start] + limit) - 1
        # The tags reopened here are entities of this chunk too, as is each tag it opens up to its last character.
        budget = opened[start] + max_entities - _entities(stack)
        fits = min(fits, bisect_right(opened, budget, start))
        if fits >= len(chars):
            cut, skip = len(chars), 0
        else:
            cut, skip = layout.choose_break(start, max(fits, start + 1))

        parts = [tag.raw for tag in stack]
        last = layout.char_atoms[cut - 1]
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


@dataclass(frozen=True, slots=True)
class _Layout:
    """The characters of the HTML and what the splitter needs to know of the tags around them."""

    atoms: list[Tag | Char]
    chars: list[str]
    # char_atoms[k] is the index in ``atoms`` of chars[k].
    char_atoms: list[int]
    # units[k] is the UTF-16 length of chars[:k].
    units: list[int]
    # opened[k] is how many entities the tags before chars[k] open (opened[len(chars)]: the whole HTML's).
    opened: list[int]
    # bold[k] is how many of chars[:k] are bold (a heading is a bold line).
    bold: list[int]
    # The code blocks (<pre>), as ranges of character indices, in order.
    pre_starts: list[int]
    pre_ends: list[int]

    @classmethod
    def of(cls, atoms: list[Tag | Char]) -> _Layout:
        char_atoms: list[int] = []
        chars: list[str] = []
        # Per tag, the number of characters before it: the first it applies to. The tags are few, the characters
        # many: what changes at a character is marked there and summed up in one pass.
        tags: list[tuple[int, Tag]] = []
        for index, atom in enumerate(atoms):
            if isinstance(atom, Char):
                char_atoms.append(index)
                chars.append(atom.text)
            else:
                tags.append((len(chars), atom))
        count = len(chars)
        new_entities = [0] * (count + 1)
        bold_change = [0] * (count + 1)
        pre_starts: list[int] = []
        pre_ends: list[int] = []
        names: list[str] = []
        for position, tag in tags:
            if tag.closing:
                if names:
                    name = names.pop()
                    bold_change[position] -= name in _BOLD
                    if name == "pre" and len(pre_starts) > len(pre_ends):
                        pre_ends.append(position)
                continue
            if _is_entity(tag.name, names[-1] if names else None):
                new_entities[position] += 1
            if tag.name == "pre" and len(pre_starts) == len(pre_ends):
                pre_starts.append(position)
            bold_change[position] += tag.name in _BOLD
            names.append(tag.name)
        if len(pre_starts) > len(pre_ends):
            pre_ends.append(count)
        units = [0, *accumulate(2 if ch > "\uffff" else 1 for ch in chars)]
        bold_depth = accumulate(bold_change[:count])
        bold = [0, *accumulate(depth > 0 for depth in bold_depth)]
        return cls(atoms, chars, char_atoms, units, list(accumulate(new_entities)), bold, pre_starts, pre_ends)

    def choose_break(self, start: int, fits: int) -> tuple[int, int]:
        """Where to end a chunk that cannot take everything up to ``fits``: (cut index, chars to drop)."""
        room = fits - start
        window = "".join(self.chars[start : fits + 2])
        least = room * _BLOCK_FILL
        # A code block the room would cut, starting after this chunk's start, starts the next chunk instead: whole,
        # if it fits in a message. Whether it does is not asked: while the answer streams, the block runs to the end
        # of the text so far, and a break that depended on its length would move once the block outgrew a message,
        # after this chunk had been sent. A block longer than a message is then cut inside, at a line break, from
        # the top of a message of its own.
        pre = self._pre_at(fits)
        if pre is not None and pre > start:
            before = _boundary_before(window, pre - start)
            if before is not None and before[0] >= least:
                position, skip = self._past_lead_ins(start, window, *before, least)
                return start + position, skip
        preferred = _preferred_break(window, room)
        if preferred is None:
            return _hard_cut(self.chars, start, fits), 0
        position, skip = preferred
        if "\n" in window[position : position + skip]:
            position, skip = self._past_lead_ins(start, window, position, skip, least)
        return start + position, skip

    def _pre_at(self, index: int) -> int | None:
        """The first character of the code block holding chars[index], if one does."""
        found = bisect_right(self.pre_starts, index) - 1
        if found >= 0 and index < self.pre_ends[found]:
            return self.pre_starts[found]
        return None

    def _past_lead_ins(self, start: int, window: str, position: int, skip: int, least: float) -> tuple[int, int]:
        """Moves a break between lines (``window[position:position + skip]``, the window starting at chars[start])
        back before the lead-in lines that end there, as long as it keeps ``least`` of the room: a heading or a
        "…:" line goes to the next chunk with what it leads into."""
        for _ in range(_MAX_LEAD_INS):
            line_start = window.rfind("\n", 0, position) + 1
            if line_start == 0 or not self._leads_in(start, window, line_start, position):
                break
            before = _boundary_before(window, line_start)
            if before is None or before[0] < least:
                break
            position, skip = before
        return position, skip

    def _leads_in(self, start: int, window: str, line_start: int, line_end: int) -> bool:
        """Whether a line of the window is a heading (bold throughout) or ends in ":"."""
        line = window[line_start:line_end]
        text = line.strip()
        if not text:
            return False
        if text.endswith(":"):
            return True
        first = start + line_start + len(line) - len(line.lstrip())
        end = first + len(text)
        return self.bold[end] - self.bold[first] == end - first


def _preferred_break(window: str, room: int) -> tuple[int, int] | None:
    """The best separator to end the window's first ``room`` characters at: (its position, its length)."""
    found: list[tuple[int, str]] = []
    for separator in _SEPARATORS:
        # A separator may reach past the room: it is dropped, so it does not count.
        position = window.rfind(separator, 1, room + len(separator))
        if separator == "\n" and position > 0:
            # Before a line that is not indented: a list item stays with its sub-items (an indented line opening
            # the next message would lose its indent there, Telegram trims it, and read as an item of its own).
            unindented = _unindented_line_before(window, position, room * _MIN_FILL)
            position = unindented if unindented is not None else position
        if position > 0:
            if position >= room * _MIN_FILL:
                return position, len(separator)
            found.append((position, separator))
    if found:
        position, separator = max(found)
        return position, len(separator)
    return None


def _unindented_line_before(window: str, end: int, start: float) -> int | None:
    """The position of the last line break at or before ``end`` (and not before ``start``) that a line without
    leading whitespace follows."""
    position = end
    while position >= start and position > 0:
        if position + 1 < len(window) and not window[position + 1].isspace():
            return position
        position = window.rfind("\n", 1, position)
    return None


def _boundary_before(window: str, index: int) -> tuple[int, int] | None:
    """The line break before ``window[index]``, with the whitespace around it: (its position, its length). None when
    text comes before ``index`` on its line, or only whitespace before it in the window."""
    position = len(window[:index].rstrip())
    if position == 0 or "\n" not in window[position:index]:
        return None
    return position, index - position


def _open_tags(html: str) -> int:
    """How many tags our HTML opens: its "<" are all in tags (text and attributes escape it)."""
    return html.count("<") - html.count("</")


def _is_entity(name: str, parent: str | None) -> bool:
    """Whether a tag opened inside ``parent`` makes an entity of its own: "<pre><code>" is one, the code block's."""
    return not (name == "code" and parent == "pre")


def _entities(stack: list[Tag]) -> int:
    """How many entities the open tags make."""
    return sum(_is_entity(tag.name, stack[i - 1].name if i else None) for i, tag in enumerate(stack))


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
