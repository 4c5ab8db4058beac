"""An answer that goes on with a code block the previous one left open.

An answer cut off by the model's length limit inside a code block is continued on request («продолжай»), and models
often go on with the code where it stopped, without opening the block again: rendered alone, the code reads as
prose (a ``# comment`` a heading) and its closing fence opens a new block that swallows the explanation after it.
``continued_code`` gives such an answer its block's opening line back, for showing only: the answer is kept as the
model wrote it.
"""

from __future__ import annotations

import re

# A fence line as CommonMark has it (three or more backticks or tildes), any indent allowed: inside a list item it is
# indented further.
_FENCE = re.compile(r"[ \t]*(`{3,}|~{3,})(.*)")


def open_fence(markdown: str) -> str | None:
    """The line that opened the fenced code block ``markdown`` ends inside, if it does."""
    if "```" not in markdown and "~~~" not in markdown:
        return None
    opening: str | None = None
    marker = ""
    for line in markdown.splitlines():
        fence = _FENCE.fullmatch(line)
        if fence is None:
            continue
        run, info = fence.groups()
        if opening is None:
            if run[0] == "`" and "`" in info:
                continue  # not a fence: an info string of a backtick fence holds no backtick
            opening, marker = line.strip(), run
        elif run[0] == marker[0] and len(run) >= len(marker) and not info.strip():
            opening = None
    return opening


def continued_code(text: str, fence: str | None) -> str:
    """``text`` with ``fence`` (the opening line of the code block the previous answer ended inside) before it, when
    it goes on with that block: it closes a block it never opened, and does not start with a fence of its own."""
    if fence is None or open_fence(text) is None:
        return text
    first = next((line for line in text.splitlines() if line.strip()), "")
    if _FENCE.fullmatch(first):
        return text
    joined = f"{fence}\n{text}"
    return joined if open_fence(joined) is None else text
