"""Plain text, Markdown, CSV, JSON and source code: decode the bytes and cut the text to fit."""

from __future__ import annotations

import codecs
import re

from pomogator.errors import EmptyFile, UnsupportedFile

from .document import DocumentKind, ExtractedDocument, cut_to_fit

# (byte order mark, codec, the encoding reported)
_BOMS: tuple[tuple[bytes, str, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le", "utf-32"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32-be", "utf-32"),
    (codecs.BOM_UTF8, "utf-8", "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "utf-16"),
)
_ASCII = bytes(range(0x80))

FALLBACK_ENCODING = "cp1251"
"""Text that is not UTF-8 is most likely from a Russian Windows program."""

_SAMPLE_CHARS = 64 * 1024
_MAX_CONTROL_SHARE = 0.02
# Control characters that do not occur in text; tab, line breaks, form feed, backspace and ESC (ANSI colours
# in logs) do.
_CONTROL = re.compile(r"[\x00-\x07\x0b\x0e-\x1a\x1c-\x1f\x7f]")


def decode_text(data: bytes, filename: str) -> tuple[str, str]:
    """Decode a text file; return the text (with ``\\n`` line breaks) and the encoding used.

    A byte order mark decides the encoding. Without one the text is UTF-8 if it decodes as UTF-8 with at
    most a stray invalid byte per hundred non-ASCII bytes (such bytes become U+FFFD), otherwise cp1251.
    Content with NUL bytes or many control characters is binary and raises ``UnsupportedFile``.
    """
    for bom, codec, encoding in _BOMS:
        if data.startswith(bom):
            try:
                text = data[len(bom) :].decode(codec)
            except UnicodeDecodeError as exc:
                raise UnsupportedFile(filename, "binary") from exc
            return _checked(_normalise(text), filename), encoding
    if b"\x00" in data:
        raise UnsupportedFile(filename, "binary")
    try:
        text, encoding = data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        lenient = data.decode("utf-8", errors="replace")
        non_ascii = len(data.translate(None, _ASCII))
        if lenient.count("\ufffd") * 100 <= non_ascii:
            text, encoding = lenient, "utf-8"
        else:
            text, encoding = data.decode(FALLBACK_ENCODING, errors="replace"), FALLBACK_ENCODING
    return _checked(_normalise(text), filename), encoding


def _normalise(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _checked(text: str, filename: str) -> str:
    sample = text[:_SAMPLE_CHARS]
    if "\x00" in text or len(_CONTROL.findall(sample)) > len(sample) * _MAX_CONTROL_SHARE:
        raise UnsupportedFile(filename, "binary")
    return text


def extract_text(data: bytes, filename: str, kind: DocumentKind, max_chars: int) -> ExtractedDocument:
    """Read a text-like file; text over ``max_chars`` is cut at a line boundary. Raises ``EmptyFile`` for a file of
    nothing but whitespace."""
    text, encoding = decode_text(data, filename)
    if not text.strip():
        raise EmptyFile(filename)
    cut, truncated = cut_to_fit(text, max_chars)
    return ExtractedDocument(
        filename=filename,
        kind=kind,
        text=cut,
        truncated=truncated,
        total_chars=len(text),
        encoding=encoding,
        stopped_by="context" if truncated else None,
    )
