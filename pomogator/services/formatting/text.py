"""Escaping, UTF-16 lengths and a tokenizer for the Telegram HTML we produce."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from pomogator.services.formatting.limits import TELEGRAM_MESSAGE_LIMIT

# Our own output only ever uses these entities, but numeric ones are valid Telegram HTML too.
_ENTITY = re.compile(r"&(?:lt|gt|amp|quot|#[0-9]+|#[xX][0-9a-fA-F]+);")
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)?((?:[^>\"']|\"[^\"]*\"|'[^']*')*)>")
# Tags or entities, met left to right as the tokenizer meets them: what ``visible_text`` drops or decodes.
_MARKUP = re.compile(f"(?:{_TAG.pattern})|(?P<entity>{_ENTITY.pattern})")
# A link as ``markdown_to_html`` writes one (never nested, its label with no other link).
_LINK = re.compile(r'<a href="([^"]*)">(.*?)</a>', re.DOTALL)
_SCHEME = re.compile(r"^(?:https?://|mailto:)|/$", re.IGNORECASE)


def utf16_len(s: str) -> int:
    """Length in UTF-16 code units: the unit of Telegram's message limits and entity offsets."""
    return len(s.encode("utf-16-le", "surrogatepass")) // 2


def escape_text(s: str) -> str:
    """Escapes text for Telegram HTML; quotes are left alone as they only matter in attributes."""
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_attr(s: str) -> str:
    return escape_text(s).replace('"', "&quot;")


@dataclass(frozen=True, slots=True)
class Tag:
    """An open or close tag as written in the source, so it can be re-emitted verbatim."""

    name: str
    closing: bool
    raw: str


@dataclass(frozen=True, slots=True)
class Char:
    """One visible character and its escaped source form."""

    text: str
    raw: str


Atom = Tag | Char


def tokenize(source: str) -> list[Atom]:
    """Splits Telegram HTML into tags and single characters.

    Tags and entities are never divided, which is what lets the splitter cut anywhere between atoms.
    """
    atoms: list[Atom] = []
    pos = 0
    length = len(source)
    while pos < length:
        c = source[pos]
        if c == "<":
            match = _TAG.match(source, pos)
            if match is not None:
                atoms.append(Tag((match.group(2) or "").lower(), bool(match.group(1)), match.group(0)))
                pos = match.end()
                continue
        elif c == "&":
            match = _ENTITY.match(source, pos)
            if match is not None:
                atoms.append(Char(html.unescape(match.group(0)), match.group(0)))
                pos = match.end()
                continue
        atoms.append(Char(c, escape_text(c)))
        pos += 1
    return atoms


def visible_text(source: str) -> str:
    """The plain text Telegram shows for our HTML: tags dropped, entities decoded (what ``tokenize``'s characters
    spell)."""
    return _MARKUP.sub(_visible, source)


def html_to_text(source: str) -> str:
    """Our HTML for one message as plain text, for when Telegram refuses its formatting: ``visible_text`` with each
    link's address after its label, "label (address)", unless the label is the address; that keeps every link of
    the message when one of them was refused. Addresses are added in order while the text stays within a
    message."""
    if _LINK.search(source) is None:
        return visible_text(source)
    room = TELEGRAM_MESSAGE_LIMIT - utf16_len(visible_text(source))

    def with_address(link: re.Match[str]) -> str:
        nonlocal room
        address = html.unescape(link.group(1))
        label = link.group(2)
        if _SCHEME.sub("", visible_text(label).strip()) == _SCHEME.sub("", address):
            return label
        added = f" ({address})"
        if utf16_len(added) > room:
            return label
        room -= utf16_len(added)
        return label + escape_text(added)

    return visible_text(_LINK.sub(with_address, source))


def _visible(match: re.Match[str]) -> str:
    entity = match.group("entity")
    return html.unescape(entity) if entity is not None else ""
