"""A download-free token estimate, good enough to keep requests inside a model's context window.

Real tokenizers need their vocabulary files (no internet in CI or containers), so we count conservatively:
about three characters per token for mixed Russian/English text, plus a fixed cost per message and per image.
"""

from __future__ import annotations

from typing import Any

CHARS_PER_TOKEN = 3
MESSAGE_OVERHEAD = 4
IMAGE_TOKENS = 1000
FILE_BYTES_PER_TOKEN = 3


def estimate_text(text: str) -> int:
    return len(text) // CHARS_PER_TOKEN + 1


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
            data = str(part.get("file", {}).get("file_data", ""))
            total += len(data) // FILE_BYTES_PER_TOKEN
        else:
            total += estimate_text(str(part))
    return total
