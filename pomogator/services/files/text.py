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

SINGLE_BYTE_ENCODINGS = (FALLBACK_ENCODING, "cp866", "koi8-r")
"""Tried for text that is not UTF-8, in this order of preference on a tie: cp866 is Excel's «CSV (MS-DOS)», KOI8-R
comes from old Unix mail and sites."""

_FREQUENT_LETTERS = frozenset("оеаинтсрвлкмдпуОЕАИНТСРВЛКМДПУ")
"""The most frequent Russian letters, in both cases: decoded in a wrong encoding they become other letters (KOI8-R
and cp1251 order the alphabet differently) or pseudographics (cp866 read as cp1251, and the other way round)."""

MIN_SCORE_LEAD = 3

_USUAL_SYMBOLS = frozenset("«»—–№“”„‘’…•™\xa0°")

WESTERN_ENCODING = "cp1252"
"""Windows' "ANSI" for English and Western European text: Notepad saves typographic quotes and dashes so, and
German, French or Spanish letters."""

_WESTERN_PUNCTUATION = frozenset("€‚„…†‡‰‹›‘’“”•–—™\xa0«»°§©®±·¿¡")
_WESTERN_LETTERS = frozenset("ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÑÒÓÔÕÖØÙÚÛÜÝßàáâãäåæçèéêëìíîïñòóôõöøùúûüýÿŠšŒœŽžŸ")
_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]+")

MIXED_MIN_VALID_CHARS = 10
"""Valid UTF-8 characters (of two bytes or more) that make a file UTF-8 with lines in another encoding, as long as
they are at least a tenth of its invalid bytes: a file in a single-byte encoding seldom forms even a few."""

MAX_STRAY_BYTES = 2
"""Invalid bytes a UTF-8 text may have however short it is (a cp1252 "°" in a file with a few Russian comments),
while it has ``STRAY_BYTE_VALID_CHARS`` valid non-ASCII characters for each."""
STRAY_BYTE_VALID_CHARS = 10

_UTF16_SAMPLE = 4096

_SAMPLE_CHARS = 64 * 1024
_MAX_CONTROL_SHARE = 0.02
# Control characters that do not occur in text; tab, line breaks, form feed, backspace and ESC (ANSI colours
# in logs) do.
_CONTROL = re.compile(r"[\x00-\x07\x0b\x0e-\x1a\x1c-\x1f\x7f]")
_NULS = re.compile("\x00+")


def decode_text(data: bytes, filename: str) -> tuple[str, str]:
    """Decode a text file; return the text (with ``\\n`` line breaks) and the encoding used.

    A byte order mark decides the encoding; NUL bytes in the pattern of UTF-16 make it UTF-16 without one. Otherwise
    the text is UTF-8 if it decodes as UTF-8 with at most a stray invalid byte per hundred non-ASCII bytes, or
    ``MAX_STRAY_BYTES`` among enough valid characters (such bytes become U+FFFD); a file with many valid UTF-8
    characters and lines in another encoding (logs or exports put together) is read line by line
    (``_mixed``); failing that cp1252 for Western text (``_western``), else cp1251, cp866 or KOI8-R, whichever reads
    as Russian best. NUL bytes at the end (a log padded after a crash) are dropped, and a few elsewhere become
    U+FFFD, as the stray bytes do. Content with many NULs or other control characters is binary and raises
    ``UnsupportedFile``.
    """
    for bom, codec, encoding in _BOMS:
        if data.startswith(bom):
            # A stray byte at the end (a truncated file) or a few invalid ones inside become U+FFFD.
            body = data[len(bom) :]
            unit = 4 if "32" in codec else 2 if "16" in codec else 1
            text = body[: len(body) - len(body) % unit].decode(codec, errors="replace")
            if text.count("\ufffd") > len(text) * _MAX_CONTROL_SHARE:
                raise UnsupportedFile(filename, "binary")
            return _checked(_normalise(text), filename), encoding
    if b"\x00" in data:
        utf16 = _utf16_without_bom(data)
        if utf16 is not None:
            try:
                text = data.decode(utf16)
            except UnicodeDecodeError as exc:
                raise UnsupportedFile(filename, "binary") from exc
            return _checked(_normalise(text), filename), utf16
    try:
        text, encoding = data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        lenient = data.decode("utf-8", errors="replace")
        non_ascii = len(data.translate(None, _ASCII))
        # U+FFFD written in the file itself is not a stray byte.
        stray = lenient.count("\ufffd") - data.count("\ufffd".encode())
        valid = len(lenient) - (len(data) - non_ascii) - lenient.count("\ufffd")
        if stray * 100 <= non_ascii or (stray <= MAX_STRAY_BYTES and valid >= stray * STRAY_BYTE_VALID_CHARS):
            text, encoding = lenient, "utf-8"
        elif valid >= MIXED_MIN_VALID_CHARS and valid * 10 >= stray:
            text, encoding = _mixed(data), "utf-8"
        else:
            text, encoding = _single_byte(data)
    return _checked(_normalise(text), filename), encoding


def _utf16_without_bom(data: bytes) -> str | None:
    """ "utf-16-le" or "utf-16-be" when ``data`` looks like UTF-16 text without a byte order mark: of each pair of
    bytes one is nearly always NUL or the same few values (the high byte of Latin and Cyrillic characters), while
    the other is seldom NUL; else ``None``."""
    sample = data[: _UTF16_SAMPLE - _UTF16_SAMPLE % 2]
    if len(data) % 2 or len(sample) < 4:
        return None
    for codec, high, low in (("utf-16-le", sample[1::2], sample[::2]), ("utf-16-be", sample[::2], sample[1::2])):
        top = sorted(set(high), key=high.count, reverse=True)[:2]
        if 0 in top and sum(map(high.count, top)) >= len(high) * 0.95 and low.count(0) * 20 < len(low):
            # Binary data that happens to match (arrays of small numbers) decodes to control characters: refused.
            return codec
    return None


def _mixed(data: bytes) -> str:
    """UTF-8 text with lines in a single-byte encoding: each line that is not UTF-8, and has no valid UTF-8
    character of its own, is decoded with the encoding those lines read best in (``_single_byte``); a UTF-8 line
    with a stray byte keeps it as U+FFFD."""
    lines = data.splitlines(keepends=True)
    foreign = []
    for line in lines:
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            if line.decode("utf-8", errors="ignore").isascii():
                foreign.append(line)
    encoding = _single_byte(b"".join(foreign))[1] if foreign else FALLBACK_ENCODING
    kept = set(foreign)
    return "".join(
        line.decode(encoding, errors="replace") if line in kept else line.decode("utf-8", errors="replace")
        for line in lines
    )


def _western(sample: bytes) -> bool:
    """Whether ``sample`` (not UTF-8) reads as Western text in cp1252: its bytes over 127 are typographic punctuation
    and Latin letters with diacritics, each among ASCII letters ("Grüße", "don’t"), where Russian in any single-byte
    encoding makes whole words of them."""
    try:
        text = sample.decode(WESTERN_ENCODING)
    except UnicodeDecodeError:  # a byte cp1252 leaves undefined
        return False
    runs = []
    for run in _NON_ASCII_RUN.findall(text):
        if any(char not in _WESTERN_PUNCTUATION and char not in _WESTERN_LETTERS for char in run):
            return False
        letters = "".join(char for char in run if char in _WESTERN_LETTERS)
        if letters:
            runs.append(len(letters))
    # "Grüße" has two together; "Ну да" in cp1251 has nothing but such pairs.
    return all(length <= 2 for length in runs) and sum(length == 2 for length in runs) * 2 <= len(runs)


def _single_byte(data: bytes) -> tuple[str, str]:
    """``data`` decoded as cp1252 when it reads as Western text (``_western``), else with the one of
    ``SINGLE_BYTE_ENCODINGS`` that makes, in its first ``_SAMPLE_CHARS`` bytes, the most frequent Russian letters
    and the fewest pseudographic and other unusual characters."""
    sample = data[:_SAMPLE_CHARS]
    if _western(sample):
        return data.decode(WESTERN_ENCODING, errors="replace"), WESTERN_ENCODING
    scores = []
    for encoding in SINGLE_BYTE_ENCODINGS:
        score = 0
        for char in sample.decode(encoding, errors="replace"):
            if char in _FREQUENT_LETTERS:
                score += 1
            elif char >= "\x80" and not ("\u0400" <= char <= "\u04ff" or char in _USUAL_SYMBOLS):
                score -= 2
        scores.append(score)
    best = scores.index(max(scores))
    # A few letters cannot tell the encodings apart: the most common one stays unless another reads clearly better.
    encoding = SINGLE_BYTE_ENCODINGS[best] if scores[best] >= scores[0] + MIN_SCORE_LEAD else FALLBACK_ENCODING
    return data.decode(encoding, errors="replace"), encoding


def _normalise(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _checked(text: str, filename: str) -> str:
    """``text`` without the NULs at its end, and each run of them elsewhere as U+FFFD; ``UnsupportedFile`` when
    control characters (a run of NULs counted once) are over ``_MAX_CONTROL_SHARE`` of it."""
    text = text.rstrip("\x00")
    sample = _NULS.sub("\x00", text[:_SAMPLE_CHARS])
    if len(_CONTROL.findall(sample)) > len(sample) * _MAX_CONTROL_SHARE:
        raise UnsupportedFile(filename, "binary")
    return _NULS.sub("\ufffd", text)


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
