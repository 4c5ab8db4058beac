"""A strict model of Telegram's HTML parse mode, for tests and the fake Bot API server.

It follows the parser Telegram runs server side (tag names, attribute grammar, error wording with byte
offsets) and is deliberately stricter where Telegram is lenient or silently drops entities:

* a ``&`` that does not start ``&lt;``, ``&gt;``, ``&amp;``, ``&quot;`` or a numeric entity is an error
  (Telegram passes it through, but relying on that hides escaping bugs);
* ``pre``/``code`` may not contain other tags, except a single ``<code>`` filling a ``<pre>`` whole;
* ``blockquote`` may not be nested, ``a`` may not be nested nor contain ``code``/``pre``;
* the length limit applies to the whole parsed text, including surrounding whitespace;
* a message with more than 100 entities is an error (Telegram keeps the first 100 and silently drops the
  formatting of the rest, links included).
"""

from __future__ import annotations

from dataclasses import dataclass, field

_SPACES = frozenset(" \t\r\n\v\0")
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_SIMPLE_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
}
_ALL_TAGS = frozenset({*_SIMPLE_TAGS, "a", "span", "tg-emoji", "pre", "code", "blockquote"})
_MAX_CODE_POINT = 0x10FFFF
# Telegram keeps this many entities of a message; the formatting of the rest is dropped without an error.
ENTITY_LIMIT = 100


class TelegramHTMLError(ValueError):
    """What Telegram answers with ``400 Bad Request`` (without the ``Bad Request:`` prefix)."""


def utf16_len(s: str) -> int:
    """Length in UTF-16 code units, the unit Telegram uses for offsets and limits."""
    return len(s.encode("utf-16-le", "surrogatepass")) // 2


@dataclass
class _Open:
    tag: str
    byte_offset: int
    utf16_offset: int
    attrs: dict[str, str] = field(default_factory=dict)
    # Whether anything (text or tag) has appeared since this tag opened.
    has_content: bool = False


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.out: list[str] = []
        self.utf16 = 0
        self.stack: list[_Open] = []
        self.entities: list[dict[str, object]] = []
        # Set right after "</code>" closes inside a "<pre>": only "</pre>" may follow.
        self.pre_must_close = False
        self.pending_language = ""

    def error(self, message: str) -> TelegramHTMLError:
        return TelegramHTMLError(f"can't parse entities: {message}")

    def byte_offset(self, pos: int) -> int:
        return len(self.text[:pos].encode("utf-8", "surrogatepass"))

    def char(self, pos: int) -> str:
        # Past the end reads as NUL, like the C string the server parser walks.
        return self.text[pos] if pos < len(self.text) else "\0"

    def emit(self, s: str) -> None:
        if self.pre_must_close:
            raise self.error(
                f'Text is not allowed after the end of "code" inside "pre" at byte offset {self.byte_offset(self.pos)}'
            )
        for item in self.stack:
            item.has_content = True
        self.out.append(s)
        self.utf16 += utf16_len(s)

    def parse(self) -> tuple[str, list[dict[str, object]]]:
        text = self.text
        while self.pos < len(text):
            c = text[self.pos]
            if c == "&":
                self.emit(self.entity())
            elif c == "<":
                if self.char(self.pos + 1) == "/":
                    self.end_tag()
                else:
                    self.start_tag()
            else:
                end = self.pos
                while end < len(text) and text[end] not in "&<":
                    end += 1
                self.emit(text[self.pos : end])
                self.pos = end
        if self.stack:
            raise self.error(f'Can\'t find end tag corresponding to start tag "{self.stack[-1].tag}"')
        self.entities.sort(key=lambda e: (int(str(e["offset"])), -int(str(e["length"]))))
        return "".join(self.out), self.entities

    def entity(self) -> str:
        """Decodes the entity at ``self.pos`` (which is ``&``) and advances past it."""
        text, start = self.text, self.pos
        end = text.find(";", start + 1, start + 12)
        bad = self.error(f"Unsupported HTML entity at byte offset {self.byte_offset(start)}")
        if end < 0:
            raise bad
        body = text[start + 1 : end]
        if body in _NAMED_ENTITIES:
            value = _NAMED_ENTITIES[body]
        elif body.startswith(("#x", "#X")) and len(body) > 2 and all(ch in "0123456789abcdefABCDEF" for ch in body[2:]):
            value = self.code_point(int(body[2:], 16), bad)
        elif body.startswith("#") and len(body) > 1 and body[1:].isascii() and body[1:].isdigit():
            value = self.code_point(int(body[1:]), bad)
        else:
            raise bad
        self.pos = end + 1
        return value

    @staticmethod
    def code_point(value: int, bad: TelegramHTMLError) -> str:
        if value == 0 or value > _MAX_CODE_POINT or 0xD800 <= value <= 0xDFFF:
            raise bad
        return chr(value)

    def start_tag(self) -> None:
        text, begin = self.text, self.pos
        offset = self.byte_offset(begin)
        i = begin + 1
        while self.char(i) not in _SPACES and self.char(i) != ">":
            i += 1
        if i >= len(text):
            raise self.error(f"Unclosed start tag at byte offset {offset}")
        tag = text[begin + 1 : i].lower()
        if tag not in _ALL_TAGS:
            raise self.error(f'Unsupported start tag "{tag}" at byte offset {offset}')
        attrs: dict[str, str] = {}
        while self.char(i) != ">":
            while i < len(text) and text[i] in _SPACES:
                i += 1
            if self.char(i) == ">":
                break
            name_begin = i
            while self.char(i) not in _SPACES and self.char(i) not in "=>":
                i += 1
            name = text[name_begin:i]
            if not name:
                raise self.error(f'Empty attribute name in the tag "{tag}" at byte offset {offset}')
            while i < len(text) and text[i] in _SPACES:
                i += 1
            if self.char(i) != "=":
                if tag == "blockquote" and name == "expandable":
                    attrs[name] = ""
                    continue
                raise self.error(
                    f'Expected equal sign in declaration of an attribute of the tag "{tag}" at byte offset {offset}'
                )
            i += 1
            while i < len(text) and text[i] in _SPACES:
                i += 1
            if i >= len(text):
                raise self.error(f'Unclosed start tag "{tag}" at byte offset {offset}')
            quote = text[i]
            if quote not in "'\"":
                token_begin = i
                while self.char(i).isascii() and (self.char(i).isalnum() or self.char(i) in ".-"):
                    i += 1
                value = text[token_begin:i].lower()
                if self.char(i) not in _SPACES and self.char(i) != ">":
                    raise self.error(f"Unexpected end of name token at byte offset {self.byte_offset(token_begin)}")
            else:
                i += 1
                parts: list[str] = []
                while i < len(text) and text[i] != quote:
                    if text[i] == "&":
                        self.pos = i
                        parts.append(self.entity())
                        i = self.pos
                    else:
                        if text[i] == "<":
                            # Telegram tolerates it; a raw "<" in an attribute is always our escaping bug.
                            raise self.error(
                                f'Unescaped "<" in an attribute value at byte offset {self.byte_offset(i)}'
                            )
                        parts.append(text[i])
                        i += 1
                if i >= len(text):
                    raise self.error(f"Unclosed start tag at byte offset {offset}")
                i += 1
                value = "".join(parts)
            if i >= len(text):
                raise self.error(f"Unclosed start tag at byte offset {offset}")
            attrs[name] = value
        self.pos = i + 1
        self.open_tag(tag, attrs, offset)

    def open_tag(self, tag: str, attrs: dict[str, str], offset: int) -> None:
        if self.pre_must_close:
            raise self.error(f'Tag "{tag}" is not allowed after "code" inside "pre" at byte offset {offset}')
        parent = self.stack[-1] if self.stack else None
        if parent is not None and parent.tag == "code":
            raise self.error(f'Tag "{tag}" can\'t be nested inside "code" at byte offset {offset}')
        if parent is not None and parent.tag == "pre" and (tag != "code" or parent.has_content):
            raise self.error(f'Tag "{tag}" can\'t be nested inside "pre" at byte offset {offset}')
        if tag == "pre" and any(o.tag in {"pre", "code"} for o in self.stack):
            raise self.error(f'Tag "pre" can\'t be nested at byte offset {offset}')
        if tag in {"pre", "code"} and any(o.tag == "a" for o in self.stack):
            # Links may contain only the "splittable" styles (bold, italic, ...), not code.
            raise self.error(f'Tag "{tag}" can\'t be nested inside "a" at byte offset {offset}')
        if tag == "blockquote" and any(o.tag == "blockquote" for o in self.stack):
            raise self.error(f'Tag "blockquote" can\'t be nested at byte offset {offset}')
        if tag == "a":
            if any(o.tag == "a" for o in self.stack):
                raise self.error(f'Tag "a" can\'t be nested at byte offset {offset}')
            if not attrs.get("href"):
                raise self.error(f'Tag "a" must have a non-empty attribute "href" at byte offset {offset}')
        if tag == "span" and attrs.get("class") != "tg-spoiler":
            raise self.error(f'Tag "span" must have class "tg-spoiler" at byte offset {offset}')
        if tag == "tg-emoji":
            emoji_id = attrs.get("emoji-id", "")
            if not emoji_id.isascii() or not emoji_id.isdigit():
                raise self.error("Invalid custom emoji identifier specified")
        for item in self.stack:
            item.has_content = True
        self.stack.append(_Open(tag, offset, self.utf16, attrs))

    def end_tag(self) -> None:
        text, begin = self.text, self.pos
        offset = self.byte_offset(begin)
        if not self.stack:
            raise self.error(f"Unexpected end tag at byte offset {offset}")
        i = begin + 2
        while self.char(i) not in _SPACES and self.char(i) != ">":
            i += 1
        name = text[begin + 2 : i].lower()
        while i < len(text) and text[i] in _SPACES:
            i += 1
        if self.char(i) != ">":
            raise self.error(f"Unclosed end tag at byte offset {offset}")
        top = self.stack[-1]
        if name and name != top.tag:
            raise self.error(f'Unmatched end tag at byte offset {offset}, expected "</{top.tag}>", found "</{name}>"')
        self.pos = i + 1
        self.stack.pop()
        inside_pre = bool(self.stack) and self.stack[-1].tag == "pre"
        if top.tag == "pre":
            self.pre_must_close = False
        elif top.tag == "code" and inside_pre:
            self.pre_must_close = True
        self.add_entity(top, inside_pre)
        if top.tag == "pre":
            self.pending_language = ""

    def add_entity(self, item: _Open, code_in_pre: bool) -> None:
        length = self.utf16 - item.utf16_offset
        if length <= 0:
            return
        entity: dict[str, object] = {"offset": item.utf16_offset, "length": length}
        tag = item.tag
        if tag in _SIMPLE_TAGS:
            entity["type"] = _SIMPLE_TAGS[tag]
        elif tag == "span":
            entity["type"] = "spoiler"
        elif tag == "a":
            entity["type"] = "text_link"
            entity["url"] = item.attrs["href"]
        elif tag == "tg-emoji":
            entity["type"] = "custom_emoji"
            entity["custom_emoji_id"] = item.attrs["emoji-id"]
        elif tag == "blockquote":
            entity["type"] = "expandable_blockquote" if "expandable" in item.attrs else "blockquote"
        elif tag == "code" and code_in_pre:
            # Folded into the enclosing "pre" when it closes.
            language = item.attrs.get("class", "")
            self.pending_language = language[9:] if language.startswith("language-") else ""
            return
        elif tag == "code":
            entity["type"] = "code"
        else:
            entity["type"] = "pre"
            language = self.pending_language
            if language:
                entity["language"] = language
        self.entities.append(entity)


def parse_html(text: str) -> tuple[str, list[dict[str, object]]]:
    """Parses Telegram HTML into plain text and Bot API style entities (UTF-16 offsets).

    Raises TelegramHTMLError for anything Telegram (or this stricter model) rejects.
    """
    return _Parser(text).parse()


def check_message(text: str, parse_mode: str | None, limit: int = 4096) -> str:
    """Validates a sendMessage text the way the Bot API does and returns its plain text.

    Stricter than Telegram in one more way than ``parse_html``: more than ``ENTITY_LIMIT`` entities is an error
    (of the same kind as the HTML errors), where Telegram would silently show the text past the 100th unformatted.
    """
    if parse_mode is None or parse_mode == "":
        plain = text
    elif parse_mode.upper() == "HTML":
        plain, entities = parse_html(text)
        if len(entities) > ENTITY_LIMIT:
            raise TelegramHTMLError(
                f"can't parse entities: Too many entities: {len(entities)}, "
                f"Telegram keeps the first {ENTITY_LIMIT} and drops the formatting of the rest"
            )
    else:
        raise TelegramHTMLError("unsupported parse_mode")
    if not plain.strip():
        raise TelegramHTMLError("text must be non-empty")
    if utf16_len(plain) > limit:
        raise TelegramHTMLError("message is too long")
    return plain
