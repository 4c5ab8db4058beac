"""The replied-to or quoted text goes before the question as a block quote."""

from __future__ import annotations

from pomogator.services.quoting import QUOTE_LIMIT, with_quote


def test_the_quote_goes_before_the_question_line_by_line() -> None:
    assert with_quote("переведи это", "Первая строка\n\nтретья  ") == "> Первая строка\n>\n> третья\n\nпереведи это"


def test_nothing_to_quote_leaves_the_question_alone() -> None:
    assert with_quote("вопрос", None) == "вопрос"
    assert with_quote("вопрос", " \n ") == "вопрос"


def test_a_long_text_is_cut_with_an_ellipsis() -> None:
    quoted = "слово " * 1000
    result = with_quote("кратко?", quoted)
    block, question = result.split("\n\n")
    assert question == "кратко?"
    assert block.startswith("> слово слово") and block.endswith("слово…")
    assert len(block) <= len("> ") + QUOTE_LIMIT + 1


def test_the_cut_falls_between_words_when_it_can() -> None:
    assert with_quote("?", "один два три", limit=10) == "> один два…\n\n?"
    assert with_quote("?", "один два три", limit=8) == "> один два…\n\n?"
    assert with_quote("?", "abcdef", limit=3) == "> abc…\n\n?"
