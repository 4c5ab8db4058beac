"""A download-free token estimate, good enough to keep requests inside a model's context window.

Real tokenizers need their vocabulary files (no internet in CI or containers), so we count conservatively:
about three characters per token for mixed Russian/English text, a token for each character of Chinese, Japanese,
Korean and other scripts from U+0800 on, two for an emoji, plus a fixed cost per message and per image.
Digits and punctuation count double: tokenizers split numbers into groups of up to three digits and give
separators tokens of their own, so a numeric CSV or JSON export takes about 1.6 characters per token, and at three
it would overflow the context the estimate was meant to protect. A PDF the model reads itself (a scan) is counted
by its pages, which is how providers bill it, not by its size.
"""

from __future__ import annotations

import base64
import binascii
import re
import string
from collections import OrderedDict
from typing import Any

CHARS_PER_TOKEN = 3
MESSAGE_OVERHEAD = 4
IMAGE_TOKENS = 1000
FILE_BYTES_PER_TOKEN = 3

SCAN_PAGE_TOKENS = 1500
"""One page of a PDF read by the model itself: a page image (about 1-2k tokens), or the text OCR finds on it."""

WIDE_TOKENS = 1
"""Chinese, Japanese and Korean characters (and the other scripts from U+0800 on: Devanagari, Thai...) take about
a token each, often more, not a third of one: at three characters a token a Chinese document three times too big
for the model would pass as fitting."""
ASTRAL_TOKENS = 2
"""An emoji (or another character beyond the BMP) takes one to three tokens."""

_DENSE = (string.digits + string.punctuation).encode()
_WIDE_LEAD = bytes(range(0xE0, 0xF0))
_ASTRAL_LEAD = bytes(range(0xF0, 0xF5))
_PDF_DATA_URL = "data:application/pdf;base64,"
# Page objects of a PDF, and failing those (object streams hide them) its images: a scan has one per page.
_PDF_PAGE = re.compile(rb"/Type\s*/Page(?![A-Za-z0-9])")
_PDF_IMAGE = re.compile(rb"/Subtype\s*/Image(?![A-Za-z0-9])")

# Page counts of PDF data URLs by (length, hash): a request with a scan is estimated several times (the bot's check,
# building the request, storing the turn), and decoding 20 MB of base64 takes ~0.2 s on the event loop. Keyed by
# the hash, which a string computes once, so no megabytes are kept alive here.
_KNOWN_PAGES_MAX = 64
_known_pages: OrderedDict[tuple[int, int], int] = OrderedDict()


def estimate_text(text: str) -> int:
    # Counted on the UTF-8 bytes: the dense characters are ASCII, so their count in UTF-8 is their count in the
    # text; a character from U+0800 on starts with a lead byte of its own (three bytes), one beyond the BMP with
    # another (four).
    encoded = text.encode("utf-8", errors="surrogatepass")
    dense = len(encoded) - len(encoded.translate(None, _DENSE))
    wide = len(encoded) - len(encoded.translate(None, _WIDE_LEAD))
    astral = len(encoded) - len(encoded.translate(None, _ASTRAL_LEAD))
    narrow = len(text) - wide - astral
    return (narrow + dense) // CHARS_PER_TOKEN + wide * WIDE_TOKENS + astral * ASTRAL_TOKENS + 1


def pdf_pages(data: bytes) -> int:
    """How many pages a PDF has, read from its bytes without parsing it (at least 1). Used where parsing is out of
    the question (on the event loop, for every request carrying a scan); an incrementally saved file may count some
    pages twice, which errs on the safe side."""
    return len(_PDF_PAGE.findall(data)) or len(_PDF_IMAGE.findall(data)) or 1


def remember_pdf_pages(data_url: str, pages: int) -> None:
    """Record how many pages the PDF in ``data_url`` has (its reader counted them), for ``estimate_file``."""
    _known_pages[(len(data_url), hash(data_url))] = max(pages, 1)
    while len(_known_pages) > _KNOWN_PAGES_MAX:
        _known_pages.popitem(last=False)


def _pdf_url_pages(data_url: str) -> int | None:
    key = (len(data_url), hash(data_url))
    pages = _known_pages.get(key)
    if pages is None:
        try:
            pages = pdf_pages(base64.b64decode(data_url.partition(",")[2], validate=True))
        except binascii.Error:
            return None
        remember_pdf_pages(data_url, pages)
    return pages


def estimate_file(file: dict[str, Any]) -> int:
    """A ``file`` content part: a PDF by its pages (``SCAN_PAGE_TOKENS`` each), anything else by its size."""
    data_url = str(file.get("file_data", ""))
    pages = _pdf_url_pages(data_url) if data_url.startswith(_PDF_DATA_URL) else None
    return pages * SCAN_PAGE_TOKENS if pages is not None else len(data_url) // FILE_BYTES_PER_TOKEN


def estimate_content(content: str | list[dict[str, Any]]) -> int:
    if isinstance(content, str):
        return estimate_text(content) + MESSAGE_OVERHEAD
    total = MESSAGE_OVERHEAD
    for part in content:
        kind = part.get("type")
        if kind == "text":
            total += estimate_text(str(part.get("text", "")))
        elif kind == "image_url":
            total += IMAGE_TOKENS
        elif kind == "file":
            total += estimate_file(part.get("file", {}))
        else:
            total += estimate_text(str(part))
    return total
