"""The strict Telegram HTML model must reject what Telegram rejects and parse the rest faithfully."""

from __future__ import annotations

import pytest

from tests.fakes.telegram_html import ENTITY_LIMIT, TelegramHTMLError, check_message, parse_html, utf16_len


def test_utf16_len_counts_surrogate_pairs() -> None:
    assert utf16_len("abc") == 3
    assert utf16_len("😀") == 2
    assert utf16_len("é😀я") == 4


def test_plain_text_and_entities() -> None:
    text, entities = parse_html("<b>bold <i>both</i></b> &lt;x&gt; &amp; &quot;q&quot; &#65;&#x42;")
    assert text == 'bold both <x> & "q" AB'
    assert entities == [
        {"offset": 0, "length": 9, "type": "bold"},
        {"offset": 5, "length": 4, "type": "italic"},
    ]


def test_offsets_are_utf16() -> None:
    text, entities = parse_html("😀 <u>x</u>")
    assert text == "😀 x"
    assert entities == [{"offset": 3, "length": 1, "type": "underline"}]


def test_link_pre_code_blockquote_spoiler() -> None:
    html = (
        '<a href="https://e.com/a_(b)?x=1&amp;y=&quot;2&quot;">link</a>\n'
        '<pre><code class="language-python">if a &lt; b:\n    pass</code></pre>\n'
        "<code>x</code> <blockquote expandable>q</blockquote> "
        '<span class="tg-spoiler">s</span><tg-spoiler>t</tg-spoiler> '
        '<tg-emoji emoji-id="5368324170671202286">👍</tg-emoji>'
    )
    text, entities = parse_html(html)
    assert text.startswith("link\nif a < b:\n    pass\nx q st 👍")
    types = [e["type"] for e in entities]
    assert types == [
        "text_link",
        "pre",
        "code",
        "expandable_blockquote",
        "spoiler",
        "spoiler",
        "custom_emoji",
    ]
    assert entities[0]["url"] == 'https://e.com/a_(b)?x=1&y="2"'
    assert entities[1]["language"] == "python"
    assert entities[1]["length"] == utf16_len("if a < b:\n    pass")


def test_tag_names_are_case_insensitive_and_empty_end_tag_closes() -> None:
    assert parse_html("<B>x</b><i>y</>") == (
        "xy",
        [
            {"offset": 0, "length": 1, "type": "bold"},
            {"offset": 1, "length": 1, "type": "italic"},
        ],
    )


@pytest.mark.parametrize(
    ("html", "message"),
    [
        ("hello <foo>x</foo>", 'Unsupported start tag "foo" at byte offset 6'),
        ("a < b", 'Unsupported start tag "" at byte offset 2'),
        ("<script>alert(1)</script>", 'Unsupported start tag "script"'),
        ("<br/>", 'Unsupported start tag "br/"'),
        ("a & b", "Unsupported HTML entity at byte offset 2"),
        ("&nbsp;", "Unsupported HTML entity"),
        ("&#0;", "Unsupported HTML entity"),
        ("&#xD800;", "Unsupported HTML entity"),
        ("&amp", "Unsupported HTML entity"),
        ("<b>x", 'Can\'t find end tag corresponding to start tag "b"'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ("<b><i>x</b></i>", 'Unmatched end tag at byte offset 7, expected "</i>", found "</b>"'),
        ("<b", "Unclosed start tag at byte offset 0"),
        ("<b>x</b", "Unclosed end tag at byte offset 4"),
        ('<a href="x>y', "Unclosed start tag at byte offset 0"),
        ("<a>x</a>", 'Tag "a" must have a non-empty attribute "href"'),
        ("<a href>x</a>", "Expected equal sign"),
        ('<a href="u"><a href="v">x</a></a>', 'Tag "a" can\'t be nested'),
        ('<a href="u"><code>x</code></a>', 'Tag "code" can\'t be nested inside "a"'),
        ("<span>x</span>", 'Tag "span" must have class "tg-spoiler"'),
        ('<span class="x">x</span>', 'Tag "span" must have class "tg-spoiler"'),
        ("<code><b>x</b></code>", 'Tag "b" can\'t be nested inside "code"'),
        ("<pre>x<code>y</code></pre>", 'Tag "code" can\'t be nested inside "pre"'),
        ("<pre><code>y</code>z</pre>", "Text is not allowed after the end of"),
        ("<pre><b>y</b></pre>", 'Tag "b" can\'t be nested inside "pre"'),
        ("<blockquote><blockquote>x</blockquote></blockquote>", 'Tag "blockquote" can\'t be nested'),
        ("<b><pre>x</pre></b><code><pre>y</pre></code>", 'Tag "pre" can\'t be nested inside "code"'),
        ('<a href="<x">y</a>', 'Unescaped "<" in an attribute value'),
        ('<tg-emoji emoji-id="abc">x</tg-emoji>', "Invalid custom emoji identifier"),
        ("<a href=ht!tp>x</a>", "Unexpected end of name token"),
    ],
)
def test_rejects_malformed_html(html: str, message: str) -> None:
    with pytest.raises(TelegramHTMLError, match="can't parse entities") as info:
        parse_html(html)
    assert message in str(info.value)


def test_byte_offsets_count_utf8_bytes() -> None:
    with pytest.raises(TelegramHTMLError, match=r'Unsupported start tag "x" at byte offset 6\b'):
        parse_html("я😀<x>")


def test_check_message_limits_parsed_text() -> None:
    assert check_message("<b>" + "a" * 4096 + "</b>", "HTML") == "a" * 4096
    with pytest.raises(TelegramHTMLError, match="message is too long"):
        check_message("a" * 4097, "HTML")
    with pytest.raises(TelegramHTMLError, match="message is too long"):
        check_message("😀" * 3, "HTML", limit=5)
    assert check_message("😀😀", "html", limit=4) == "😀😀"


def test_check_message_allows_100_entities() -> None:
    # Telegram would show the text past the 100th entity unformatted, without an error; the model refuses it.
    assert ENTITY_LIMIT == 100
    check_message("<b>x</b> " * 100, "HTML")
    with pytest.raises(TelegramHTMLError, match="can't parse entities: Too many entities: 101"):
        check_message("<b>x</b> " * 100 + "<a href='https://e.com'>y</a>", "HTML")
    # One entity a span: "<pre><code>" is one, nested tags are one each, empty tags none.
    check_message('<pre><code class="language-python">x</code></pre>' * 100 + "<b></b>", "HTML")
    with pytest.raises(TelegramHTMLError, match="Too many entities: 102"):
        check_message("<blockquote>" + "<i>x</i>" * 100 + "y</blockquote><i>z</i>", "HTML")
    # Entities are what the parse mode makes: plain text has none.
    assert check_message("<b>x</b>" * 200, None) == "<b>x</b>" * 200
    assert len(parse_html("<b>x</b>" * 200)[1]) == 200


def test_check_message_rejects_empty_text() -> None:
    for text in ("", "   \n", "<b></b>", "<b> </b>"):
        with pytest.raises(TelegramHTMLError, match="text must be non-empty"):
            check_message(text, "HTML")


def test_check_message_without_parse_mode_is_literal() -> None:
    assert check_message("a < b & <foo>", None) == "a < b & <foo>"
    with pytest.raises(TelegramHTMLError, match="unsupported parse_mode"):
        check_message("x", "BBCode")
