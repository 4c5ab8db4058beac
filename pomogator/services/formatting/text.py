"""Escaping, UTF-16 lengths and a tokenizer for the Telegram HTML we produce."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

# Our own output only ever uses these entities, but numeric ones are valid Telegram HTML too.
_ENTITY = re.compile(r"&(?:lt|gt|amp|quot|#[0-9]+|#[xX][0-9a-fA-F]+);")
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)?((?:[^>\"']|\"[^\"]*\"|'[^']*')*)>")
# Tags or entities, met left to right as the tokenizer meets them: what ``html_to_text`` drops or decodes.
_MARKUP = re.compile(f"(?:{_TAG.pattern})|(?P<entity>{_ENTITY.pattern})")


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


def html_to_text(source: str) -> str:
    """The plain text Telegram would show for our HTML: tags dropped, entities decoded (what ``tokenize``'s
    characters spell)."""
    return _MARKUP.sub(_visible, source)


def _visible(match: re.Match[str]) -> str:
    entity = match.group("entity")
    return html.unescape(entity) if entity is not None else ""
