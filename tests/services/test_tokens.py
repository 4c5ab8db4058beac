"""The offline token estimate: dense numeric text, and scans counted by their pages."""

from __future__ import annotations

from pomogator.llm.tokens import (
    CHARS_PER_TOKEN,
    FILE_BYTES_PER_TOKEN,
    MESSAGE_OVERHEAD,
    SCAN_PAGE_TOKENS,
    estimate_content,
    estimate_file,
    estimate_text,
    pdf_pages,
    remember_pdf_pages,
)
from pomogator.services.files import pdf_file_part
from tests.services.test_files import blank_pdf, make_pdf


def test_prose_takes_about_three_characters_a_token() -> None:
    prose = "Съешь же ещё этих мягких французских булок да выпей чаю " * 20
    assert estimate_text(prose) == len(prose) // CHARS_PER_TOKEN + 1


def test_chinese_japanese_and_korean_take_a_token_a_character_and_an_emoji_two() -> None:
    # Real tokenizers take 0.7-1.5 tokens for each of these characters: at three characters a token a Chinese
    # document three times the model's window would be read as fitting it.
    for text in ("中文文档的内容" * 1000, "日本語のテキスト" * 1000, "한국어 텍스트" * 1000):
        assert estimate_text(text) >= len(text.replace(" ", ""))
    assert estimate_text("😀" * 3000) >= 2 * 3000
    mixed = "Привет, 世界! " * 100
    narrow, dense, wide = 1000, 200, 200  # the comma and the "!" count double; the two Chinese characters a token each
    assert estimate_text(mixed) == (narrow + dense) // CHARS_PER_TOKEN + wide + 1


def test_numbers_and_separators_count_double() -> None:
    # About 19 tokens for a real tokenizer (digits go in groups of up to three, separators alone): at three
    # characters a token the estimate would be 11.
    row = "2024-01-15;1234.56;7890.12;345\n"
    assert estimate_text(row) >= 19
    csv = row * 10_000
    assert estimate_text(csv) > len(csv) // 2
    assert estimate_text('{"id": 12345, "name": "Alice"}') > len('{"id": 12345, "name": "Alice"}') // CHARS_PER_TOKEN


def test_a_scan_is_counted_by_its_pages_not_its_size() -> None:
    scan = blank_pdf(3)
    assert pdf_pages(scan) == 3
    part = pdf_file_part(scan, "scan.pdf")
    assert estimate_file(part["file"]) == 3 * SCAN_PAGE_TOKENS
    assert estimate_content([part]) == MESSAGE_OVERHEAD + 3 * SCAN_PAGE_TOKENS
    assert pdf_pages(make_pdf(["a", "b", "c", "d"])) == 4


def test_a_page_count_the_reader_found_is_taken_over_the_bytes() -> None:
    part = pdf_file_part(blank_pdf(2), "noted.pdf")
    remember_pdf_pages(part["file"]["file_data"], 7)
    assert estimate_file(part["file"]) == 7 * SCAN_PAGE_TOKENS


def test_other_files_are_counted_by_size() -> None:
    data_url = "data:application/octet-stream;base64," + "QUJD" * 300
    assert estimate_file({"file_data": data_url}) == len(data_url) // FILE_BYTES_PER_TOKEN
    broken = "data:application/pdf;base64,@@not base64@@"
    assert estimate_file({"file_data": broken}) == len(broken) // FILE_BYTES_PER_TOKEN
