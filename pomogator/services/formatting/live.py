"""What a live view (a draft, an edited message) shows of an answer still being written.

Markdown the model has not finished yet would show as written until its end arrives: ``**Шаг 1: Устан`` with its
asterisks, ``[документацию](https://docs.pyth`` with its address. ``live_markdown`` leaves such an unfinished
marker out of the last line, so the view shows the words without it; the final message renders the whole text.
"""

from __future__ import annotations

import re

from pomogator.services.formatting.fences import open_fence

# An unfinished link at the end: "[label" or "[label](partial address" (the label's words are kept).
_OPEN_LINK = re.compile(r"\[([^\[\]\n]*)(?:\]\([^()\s]*)?$")
# A tag being typed at the end: "<b", "</su".
_OPEN_TAG = re.compile(r"</?[A-Za-z][^<>\n]*$")
# Paired markers: an odd count on the last line means the last one is not closed yet.
_PAIRED = ("**", "~~", "`")


def live_markdown(markdown: str) -> str:
    """``markdown`` with an unfinished marker at the end of its last line left out (not inside a code block)."""
    if open_fence(markdown) is not None:
        return markdown
    head, newline, last = markdown.rpartition("\n")
    last = _OPEN_TAG.sub("", last)
    last = _OPEN_LINK.sub(r"\1", last)
    for marker in _PAIRED:
        if _count(last, marker) % 2:
            cut = last.rfind(marker)
            last = last[:cut] + last[cut + len(marker) :]
    return head + newline + last


def _count(line: str, marker: str) -> int:
    if marker == "`":
        return len(re.findall(r"`+", line))  # a run of backticks opens or closes as one
    return line.count(marker)
