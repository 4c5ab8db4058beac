"""A question that replies to or quotes a message: the model gets that text too, as a block quote before it.

Without it "translate this" in reply to an old answer reaches the model with nothing to say which text "this" is.
"""

from __future__ import annotations

QUOTE_LIMIT = 2000
"""Characters of the replied-to text that go to the model; a longer one is cut, with an ellipsis."""


def with_quote(question: str, quoted: str | None, limit: int = QUOTE_LIMIT) -> str:
    """``question`` after ``quoted`` as a Markdown block quote (``> ...``), cut to ``limit`` characters.

    Without a quoted text, or with only whitespace, the question is returned as it is.
    """
    fragment = (quoted or "").strip()
    if not fragment:
        return question
    if len(fragment) > limit:
        fragment = _cut(fragment, limit) + "…"
    block = "\n".join(f"> {line}".rstrip() for line in fragment.splitlines())
    return f"{block}\n\n{question}"


def _cut(text: str, limit: int) -> str:
    """The first ``limit`` characters of ``text``, ending between words unless that loses over half of them."""
    head = text[:limit]
    if not text[limit].isspace():
        boundary = max(head.rfind(" "), head.rfind("\n"))
        if boundary > limit // 2:
            head = head[:boundary]
    return head.rstrip()
