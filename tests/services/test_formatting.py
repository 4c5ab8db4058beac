"""Markdown → Telegram HTML: every output must pass the strict Telegram HTML model and keep the text."""

from __future__ import annotations

import html
import re
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from pomogator.services.formatting import (
    markdown_to_html,
    render_answer,
    shows_nothing,
    split_html,
    utf16_len,
)
from pomogator.services.formatting.html_tags import html_plugin
from pomogator.services.formatting.math import math_plugin
from pomogator.services.formatting.text import Char, tokenize, visible_text
from tests.fakes.telegram_html import check_message, parse_html


def valid_chunks(md: str, limit: int = 4096) -> list[str]:
    chunks = render_answer(md, limit)
    for chunk in chunks:
        check_message(chunk, "HTML", limit)
    return chunks


def entities(source: str) -> list[dict[str, object]]:
    return parse_html(source)[1]


# Plain conversions


def test_emphasis_nesting() -> None:
    out = markdown_to_html("**bold *italic* bold** and ***both*** and ~~gone~~ and _under_")
    assert out == ("<b>bold <i>italic</i> bold</b> and <i><b>both</b></i> and <s>gone</s> and <i>under</i>")
    check_message(out, "HTML")


def test_duplicate_styles_are_not_nested() -> None:
    out = markdown_to_html("# Title with **bold**")
    assert out == "<b>Title with bold</b>"


@pytest.mark.parametrize(
    ("md", "plain"),
    [
        ("a < b && c > d", "a < b && c > d"),
        ("<script>alert('x')</script>", "<script>alert('x')</script>"),
        ("<span>not styled</span> &amp; &lt;", "<span>not styled</span> & <"),
        ("`a<b && c>d`", "a<b && c>d"),
        ('5 > 3 & 2 < 4 "quoted"', '5 > 3 & 2 < 4 "quoted"'),
    ],
)
def test_html_looking_text_is_escaped(md: str, plain: str) -> None:
    out = markdown_to_html(md)
    assert check_message(out, "HTML") == plain


@pytest.mark.parametrize(
    ("md", "out"),
    [
        ("Line one<br>Line two", "Line one\nLine two"),
        ("a<br/>b<br />c<BR>d<Br/>e", "a\nb\nc\nd\ne"),
        # The spaces around a break go, and a newline after it is the same break.
        ("a <br> b<br>\nc", "a\nb\nc"),
        ("**a<br>b**", "<b>a\nb</b>"),
        ("# Title<br>sub", "<b>Title\nsub</b>"),
        # At the ends of a paragraph, a heading or a cell it would only add a blank line.
        ("one<br>\n\n<br>\n\n<br>two<br><br/>", "one\n\ntwo"),
        ("## Title<br>", "<b>Title</b>"),
        ("| a | b |\n|---|---|\n| <br> | 1<br> |", "<pre>a | b\n--+--\n  | 1</pre>"),
        # Only <br> is read; other HTML, and a <br> in code or escaped, stay text.
        ('<br class="x"> <p>a</p> <brr>', '&lt;br class="x"&gt; &lt;p&gt;a&lt;/p&gt; &lt;brr&gt;'),
        ("a `x<br>y` b", "a <code>x&lt;br&gt;y</code> b"),
        ("```\nx<br>y\n```", "<pre>x&lt;br&gt;y</pre>"),
        ("    x<br>y", "<pre>x&lt;br&gt;y</pre>"),
        ("a\\<br>b", "a&lt;br&gt;b"),
    ],
)
def test_br_tags_are_line_breaks(md: str, out: str) -> None:
    assert markdown_to_html(md) == out
    check_message(out, "HTML")


def test_an_answer_of_only_br_tags_shows_nothing() -> None:
    assert shows_nothing("<br><br/>")
    assert render_answer("<br>") == []


def test_inline_code_escapes_everything() -> None:
    out = markdown_to_html("use `x &lt; <i>` here")
    assert out == "use <code>x &amp;lt; &lt;i&gt;</code> here"
    assert entities(out) == [{"offset": 4, "length": 10, "type": "code"}]


def test_fenced_code_keeps_language_and_escapes() -> None:
    out = markdown_to_html('```python\nif a < b and c > d:\n    print("&")\n```')
    assert out == ('<pre><code class="language-python">if a &lt; b and c &gt; d:\n    print("&amp;")</code></pre>')
    ents = entities(out)
    assert ents == [
        {"offset": 0, "length": utf16_len('if a < b and c > d:\n    print("&")'), "type": "pre", "language": "python"}
    ]


def test_fence_with_odd_info_string_has_no_language() -> None:
    out = markdown_to_html('```"><script>\nx\n```')
    assert out == "<pre>x</pre>"


def test_unclosed_fence_is_still_code() -> None:
    out = markdown_to_html("Here:\n```js\nconst a = 1 < 2;\nconst b = '**x**'")
    check_message(out, "HTML")
    assert out.endswith("<pre><code class=\"language-js\">const a = 1 &lt; 2;\nconst b = '**x**'</code></pre>")


@pytest.mark.parametrize("md", ["**unclosed bold", "*half", "[link](https://e.com/x", "[link", "~~strike", "`code"])
def test_unfinished_inline_markdown_is_literal(md: str) -> None:
    out = markdown_to_html(md)
    assert check_message(out, "HTML") == md
    assert entities(out) == []


def test_links_with_parentheses_and_quotes() -> None:
    out = markdown_to_html('[wiki](https://en.wikipedia.org/wiki/Python_(language)) [q](https://e.com/?a="1"&b=2)')
    check_message(out, "HTML")
    urls = [e["url"] for e in entities(out)]
    assert urls == ["https://en.wikipedia.org/wiki/Python_(language)", "https://e.com/?a=%221%22&b=2"]
    assert visible_text(out) == "wiki q"


@pytest.mark.parametrize(
    "md",
    ["[x](javascript:alert(1))", "[x](/relative/path)", "[x](ftp://host/file)", "[x](data:text/html,hi)"],
)
def test_unsafe_or_relative_links_are_text(md: str) -> None:
    out = markdown_to_html(md)
    check_message(out, "HTML")
    assert "<a " not in out
    assert "x" in visible_text(out)


def test_allowed_link_schemes() -> None:
    out = markdown_to_html("[a](http://x.io) [b](tg://user?id=1) [c](mailto:me@x.io) <https://auto.link>")
    assert [e["url"] for e in entities(out)] == [
        "http://x.io",
        "tg://user?id=1",
        "mailto:me@x.io",
        "https://auto.link",
    ]


def test_code_inside_link_loses_code_style() -> None:
    out = markdown_to_html("[`api()`](https://e.com)")
    assert out == '<a href="https://e.com">api()</a>'


def test_headings_lists_quotes_rules() -> None:
    md = "# Head\n\n- a\n- b\n  - c\n    1. d\n\n3. x\n4. y\n\n> quoted\n> > deeper\n\n---\n\nend"
    out = markdown_to_html(md)
    check_message(out, "HTML")
    assert visible_text(out) == (
        "Head\n\n• a\n• b\n   ◦ c\n      1. d\n\n3. x\n4. y\n\nquoted\n\ndeeper\n\n──────────\n\nend"
    )
    types = [e["type"] for e in entities(out)]
    assert types == ["bold", "blockquote"]


@pytest.mark.parametrize(
    ("md", "out"),
    [
        ("- # Heading in list\n- item", "• <b>Heading in list</b>\n• item"),
        ("1. ### Step one\n   text\n2. two", "1. <b>Step one</b>\n   text\n2. two"),
    ],
)
def test_a_heading_opening_an_item_is_on_its_markers_line(md: str, out: str) -> None:
    assert markdown_to_html(md) == out


def test_an_items_later_lines_stay_under_its_text() -> None:
    md = (
        "- **Шаг 1.** Установите пакет:\n  это займёт минуту\n  - вложенный пункт\n    со второй строкой\n"
        "- Шаг 2\n\n  второй абзац\n  в две строки\n\n  ```\n  код\n  без отступа\n  ```"
    )
    out = markdown_to_html(md)
    check_message(out, "HTML")
    assert visible_text(out) == (
        "• Шаг 1. Установите пакет:\n   это займёт минуту\n   ◦ вложенный пункт\n      со второй строкой\n"
        "• Шаг 2\n   второй абзац\n   в две строки\n   код\nбез отступа"
    )


LATEX_BLOCK = '<pre><code class="language-latex">{}</code></pre>'


@pytest.mark.parametrize(
    ("md", "out"),
    [
        # Markdown would make "x^* и y^" italic and drop the backslashes of "\{" and "\\".
        ("где $x^*$ и $y^*$", "где <code>x^*</code> и <code>y^*</code>"),
        (r"$x_{1,2} = \frac{-b \pm \sqrt{D}}{2a}$", r"<code>x_{1,2} = \frac{-b \pm \sqrt{D}}{2a}</code>"),
        (r"Так: \(a*b*c\) и \[a_1 \\ b_1\]", r"Так: <code>a*b*c</code> и <code>a_1 \\ b_1</code>"),
        ("сумма $$a+b$$ тут", "сумма <code>a+b</code> тут"),
        ("$$x$$ (1)", "<code>x</code> (1)"),
        ("**$a*b$**", "<b><code>a*b</code></b>"),
        (r"($x$) и \(\alpha\)", r"(<code>x</code>) и <code>\alpha</code>"),
        ("$$\n\\{ a \\} \\\\ b\n$$", LATEX_BLOCK.format(r"\{ a \} \\ b")),
        ("$$ E = mc^2 $$", LATEX_BLOCK.format("E = mc^2")),
        # A formula on lines of its own ends the paragraph before it, without a blank line.
        (
            "Формула:\n\\[\n  \\int_0^1 x^2 dx\n  = \\frac13\n\\]\nдальше",
            "Формула:\n\n" + LATEX_BLOCK.format("\\int_0^1 x^2 dx\n= \\frac13") + "\n\nдальше",
        ),
        ("- пункт:\n  $$\n  x_1\n  $$", "• пункт:\n   " + LATEX_BLOCK.format("x_1")),
        ("> $$\n> a_1\n> $$", "<blockquote>" + LATEX_BLOCK.format("a_1") + "</blockquote>"),
        # While it streams, an unclosed formula block shows as one, as an unclosed code fence does.
        ("$$\nx^2", LATEX_BLOCK.format("x^2")),
        (r"\[ x^2 + y^2 = z^2 \]", LATEX_BLOCK.format("x^2 + y^2 = z^2")),
        (r"\[\sum_{i=1}^n i\]", LATEX_BLOCK.format(r"\sum_{i=1}^n i")),
        (
            r"дробь \(\frac{a}{b}\), сумма \[\sum_{i=1}^n i\]",
            r"дробь <code>\frac{a}{b}</code>, сумма <code>\sum_{i=1}^n i</code>",
        ),
        # One variable is a formula in \(…\): inline LaTeX names variables that way.
        (r"где \(n\) — число, \(x_1\) и \(2\)", "где <code>n</code> — число, <code>x_1</code> и <code>2</code>"),
        (r"и \[x_{i}\] тут", "и <code>x_{i}</code> тут"),
    ],
)
def test_formulas_are_kept_as_code(md: str, out: str) -> None:
    assert markdown_to_html(md) == out
    check_message(out, "HTML")


@pytest.mark.parametrize(
    ("md", "out"),
    [
        ("с $5 до $10", "с $5 до $10"),
        ("Стоит $5, а $x$ больше", "Стоит $5, а <code>x</code> больше"),
        ("Итог: 10$ и 20$.", "Итог: 10$ и 20$."),
        # Russian writes the dollar after the number; a formula opens after a space or a mark only.
        ("Стоимость 5$, а годовая — 50$.", "Стоимость 5$, а годовая — 50$."),
        ("5$/1M токенов, Claude — 3$/1M", "5$/1M токенов, Claude — 3$/1M"),
        ("(5$) или (10$)", "(5$) или (10$)"),
        ("$5-$10", "$5-$10"),
        ("export PATH=$HOME/bin:$PATH", "export PATH=$HOME/bin:$PATH"),
        (r"скобки \( и \) экранируют", "скобки ( и ) экранируют"),
        ("from $x$5 to $ y $", "from $x$5 to $ y $"),
        (r"\$5 и \(", "$5 и ("),
        ("`$x$`", "<code>$x$</code>"),
        ("a $$ b", "a $$ b"),
        ("*$$$$ и $$$$", "*$$$$ и $$$$"),
        # LaTeX allows no blank line in a formula: this is text.
        ("$$\nx\n\n*текст*", "$$\nx\n\n<i>текст</i>"),
    ],
)
def test_dollars_that_are_no_formula_stay_text(md: str, out: str) -> None:
    assert markdown_to_html(md) == out


@pytest.mark.parametrize(
    ("md", "out"),
    [
        # Markdown's escaped brackets: an array's index, a reference, a regex.
        (r"arr\[0\]", "arr[0]"),
        (r"a\[i\] = a\[i-1\] + 1", "a[i] = a[i-1] + 1"),
        (r"Источник \[1\], \[2\] и \[3, 4\], \[5-7\]", "Источник [1], [2] и [3, 4], [5-7]"),
        (r"ключ \[key\] и \[i\]", "ключ [key] и [i]"),
        ("\\[1\\]\n\n\\[\nidx\n\\]", "[1]\n\n[\nidx\n]"),
        (r"regex \(\d+\) и \(\w+@\s*\)", r"regex (\d+) и (\w+@\s*)"),
        (r"f\(x\) = 1", "f(x) = 1"),
    ],
)
def test_escaped_brackets_that_are_no_formula_stay_text(md: str, out: str) -> None:
    assert markdown_to_html(md) == out


def test_small_table_is_monospaced() -> None:
    out = markdown_to_html("| a | b |\n|---|---|\n| 1 | <x> |\n| 22 | 3 |")
    assert out == "<pre>a  | b\n---+----\n1  | &lt;x&gt;\n22 | 3</pre>"
    check_message(out, "HTML")


def test_wide_table_becomes_records() -> None:
    md = (
        "| Model | Strengths | Price |\n|---|---|---|\n"
        "| GPT | Reasoning and **code** generation | $$ |\n| Claude | Long documents, careful writing | |"
    )
    out = markdown_to_html(md)
    check_message(out, "HTML")
    assert visible_text(out) == (
        "Model: GPT\nStrengths: Reasoning and code generation\nPrice: $$\n\n"
        "Model: Claude\nStrengths: Long documents, careful writing\nPrice: —"
    )


def test_a_narrow_table_with_links_becomes_records_that_keep_them() -> None:
    """A <pre> would keep only the links' labels: the person could neither open nor see the addresses."""
    out = markdown_to_html("| Сайт | Ссылка |\n|---|---|\n| Python | [docs](https://docs.python.org) |")
    check_message(out, "HTML")
    assert out == '<b>Сайт:</b> Python\n<b>Ссылка:</b> <a href="https://docs.python.org">docs</a>'
    chunks = valid_chunks("| a | b |\n|---|---|\n| ![](https://e.com/x.png) | 1 |")
    assert chunks == ['<b>a:</b> <a href="https://e.com/x.png">🖼</a>\n<b>b:</b> 1']
    # A link the renderer refuses is text, and the table stays monospaced.
    assert markdown_to_html("| a |\n|---|\n| [x](/relative) |") == "<pre>a\n-\nx</pre>"


def test_a_table_with_br_in_a_cell_becomes_records_that_keep_its_lines() -> None:
    """A <pre> row is one line; in a title a break is a space."""
    md = (
        "| Plan | Price<br>(USD) | Features |\n|---|---|---|\n"
        "| Basic | 5 | 1 user<br>5 GB storage<br/>Email support |\n| Pro | 10 | `a<br>b` |"
    )
    out = markdown_to_html(md)
    check_message(out, "HTML")
    assert out == (
        "<b>Plan:</b> Basic\n<b>Price (USD):</b> 5\n<b>Features:</b> 1 user\n5 GB storage\nEmail support\n\n"
        "<b>Plan:</b> Pro\n<b>Price (USD):</b> 10\n<b>Features:</b> <code>a&lt;br&gt;b</code>"
    )
    # A break only in a title leaves a narrow table monospaced.
    narrow = markdown_to_html("| Price<br>(USD) | n |\n|---|---|\n| 5 | 1 |")
    assert narrow == "<pre>Price (USD) | n\n------------+--\n5           | 1</pre>"


def test_image_becomes_link() -> None:
    out = markdown_to_html("![diagram](https://e.com/d.png) ![](https://e.com/e.png)")
    assert out == '<a href="https://e.com/d.png">diagram</a> <a href="https://e.com/e.png">🖼</a>'


def test_empty_and_blank_input() -> None:
    assert markdown_to_html("") == ""
    assert render_answer("   \n\n") == []
    assert render_answer("```\n```") == []


@pytest.mark.parametrize(
    ("md", "nothing"),
    [
        ("", True),
        (" \n\t", True),
        ("```\n```", True),
        ("```python\n\n```", True),
        ("&nbsp;", True),
        # A link reference definition is shown as written (see test_markdown_rules).
        ("[docs]: https://docs.python.org", False),
        ("# \n\n> ", True),
        ("Привет", False),
        ("```\nprint(1)\n```", False),
        ("&amp;", False),
        ("---", False),
        ("[](https://e.com)", False),
    ],
)
def test_shows_nothing_is_whether_the_answer_makes_no_message(md: str, nothing: bool) -> None:
    assert shows_nothing(md) is nothing
    assert (render_answer(md) == []) is nothing


def test_visible_text_unescapes() -> None:
    assert visible_text('<b>a &lt; b</b> <a href="x">&amp;&quot;&#65;&#x42;</a>') == 'a < b &"AB'


def test_utf16_len() -> None:
    assert utf16_len("a😀é") == 4
    assert utf16_len("👨‍👩‍👧") == 8


# Splitting


def test_short_message_is_one_chunk() -> None:
    assert split_html("<b>hi</b>") == ["<b>hi</b>"]


def test_limit_counts_utf16_units() -> None:
    text = "😀" * 30
    chunks = split_html(text, 10)
    assert all(utf16_len(visible_text(c)) <= 10 for c in chunks)
    assert "".join(chunks) == text
    assert len(chunks) == 6


def test_long_answer_splits_at_paragraphs_into_valid_chunks() -> None:
    # 80 entities a paragraph: two would be more than the 100 Telegram keeps in a message.
    paragraphs = [f"Paragraph {i}: " + " ".join(["**word**", "text", "`x<y`", "&"] * 40) for i in range(12)]
    md = "\n\n".join(paragraphs)
    assert len(md) > 10_000
    chunks = valid_chunks(md)
    assert len(chunks) >= 3
    plain = [visible_text(c) for c in chunks]
    for text in plain:
        # Each chunk starts at a paragraph boundary.
        assert text.startswith("Paragraph ")
    assert "\n\n".join(plain) == visible_text(markdown_to_html(md))


def test_split_closes_and_reopens_tags() -> None:
    source = "<b>one two <i>three four five</i> six</b>"
    chunks = split_html(source, 10)
    for chunk in chunks:
        check_message(chunk, "HTML", 10)
    assert chunks == ["<b>one two</b>", "<b><i>three four</i></b>", "<b><i>five</i> six</b>"]


def test_huge_code_block_is_reopened_with_language() -> None:
    code = "\n".join(f"print({i} < {i + 1} and '&')" for i in range(400))
    md = f"Intro\n\n```python\n{code}\n```\n\nOutro"
    chunks = valid_chunks(md, 1000)
    assert len(chunks) >= 10
    code_chunks = [c for c in chunks if "print(" in c]
    for chunk in code_chunks:
        assert '<pre><code class="language-python">' in chunk
        assert chunk.rstrip().endswith("</code></pre>") or chunk.endswith("Outro")
        assert all(e["type"] == "pre" and e["language"] == "python" for e in entities(chunk))
    lines = [line for c in code_chunks for line in visible_text(c).split("\n") if line.startswith("print(")]
    assert lines == code.split("\n")


def test_single_long_word_is_cut_hard() -> None:
    word = "x" * 120
    chunks = split_html(f"<i>{word}</i>", 50)
    assert chunks == ["<i>" + "x" * 50 + "</i>", "<i>" + "x" * 50 + "</i>", "<i>" + "x" * 20 + "</i>"]


def test_hard_cut_keeps_emoji_sequences_and_accents_whole() -> None:
    family = "👨\u200d👩\u200d👧"  # 8 UTF-16 units
    chunks = split_html("ab" + family + "cd", 8)
    assert [visible_text(c) for c in chunks] == ["ab", family, "cd"]
    accented = "e\u0301" * 5
    assert [visible_text(c) for c in split_html(accented, 5)] == ["e\u0301e\u0301", "e\u0301e\u0301", "e\u0301"]


def test_entities_are_never_cut() -> None:
    chunks = split_html("&lt;" * 10 + "&amp;" * 10, 7)
    assert [visible_text(c) for c in chunks] == ["<<<<<<<", "<<<&&&&", "&&&&&&"]


def test_blank_chunks_are_dropped() -> None:
    chunks = split_html("a" + "\n" * 30 + "b", 5)
    assert [visible_text(c).strip() for c in chunks] == ["a", "b"]


def test_split_rejects_tiny_limit() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        split_html("abc", 1)


# Properties

_MD_PIECES = st.sampled_from(
    [
        "*",
        "**",
        "_",
        "__",
        "~~",
        "`",
        "```",
        "```py\n",
        "[",
        "]",
        "(",
        ")",
        "](https://e.com/(x)",
        "# ",
        "> ",
        "- ",
        "1. ",
        "|",
        "| --- |",
        "\n",
        "\n\n",
        " ",
        "<",
        ">",
        "&",
        "&amp;",
        "&#65;",
        "<b>",
        "||",
        "😀",
        "👨‍👩‍👧",
        "é",
        "я",
        "中文",
        "\t",
        "    ",
        "\\",
        "!",
        "![",
        "<https://x.io>",
        "---\n",
        "$",
        "$$",
        "$$\n",
        "\\(",
        "\\)",
        "\\[",
        "\\]",
        "<br>",
        "<BR />",
    ]
)
_WORDS = st.text(alphabet=st.characters(codec="utf-8", categories=["L", "N", "So", "Zs"]), min_size=1, max_size=12)
_MARKDOWNISH = st.lists(st.one_of(_MD_PIECES, _WORDS), max_size=60).map("".join)
# Formulas are code to both (see formatting.math): what is written in one, "&#65;" included, is shown as written;
# raw HTML means the same to both; link reference definitions are text to both.
_REFERENCE = (
    MarkdownIt("commonmark", {"html": False})
    .enable(["strikethrough", "table"])
    .disable("reference")
    .use(math_plugin)
    .use(html_plugin)
)


def _alnum(text: str) -> list[str]:
    return [ch for ch in text if ch.isalnum()]


def _reference_text(md: str) -> str:
    """What markdown-it's own HTML renderer shows for the same Markdown."""
    rendered = _REFERENCE.render(md)
    return html.unescape(re.sub(r"<[^>]*>", "", rendered))


def _is_subsequence(needle: list[str], haystack: list[str]) -> bool:
    remaining = iter(haystack)
    return all(ch in remaining for ch in needle)


def _assert_text_kept(md: str, chunks: list[str]) -> None:
    shown = _alnum("".join(visible_text(c) for c in chunks))
    expected = _alnum(_reference_text(md))
    # Nothing visible is lost, counting repetitions...
    assert not Counter(expected) - Counter(shown)
    # ...nothing is invented (image alt text and list numbers come from the input)...
    assert set(shown) <= set(expected) | set(_alnum(md))
    # ...and, except in tables which become "header: value" records, the order is kept.
    if not any(token.type == "table_open" for token in _REFERENCE.parse(md)):
        assert _is_subsequence(expected, shown)


@settings(max_examples=250, deadline=None)
@given(md=_MARKDOWNISH, limit=st.sampled_from([50, 200, 4096]))
def test_any_markdown_renders_valid_chunks(md: str, limit: int) -> None:
    chunks = valid_chunks(md, limit)
    _assert_text_kept(md, chunks)


@settings(max_examples=60, deadline=None)
@given(md=_MARKDOWNISH)
def test_every_stream_prefix_renders_valid(md: str) -> None:
    for end in range(0, len(md) + 1, max(1, len(md) // 25)):
        valid_chunks(md[:end], 200)


_HIDING = st.sampled_from(
    [
        "```",
        "~~~",
        "~~~py\n",
        "[a]: https://e.com\n",
        "[a]:",
        "&nbsp;",
        "&#8203;",
        "&zwnj;",
        "![](image.png)",
        "![](data:image/png;base64,AAAA)",
        "[](#section1)",
        "[](ftp://x)",
        "[][a]",
        "<ftp://x>",
    ]
)


@settings(max_examples=250, deadline=None)
@given(md=st.lists(st.one_of(_MD_PIECES, _WORDS, _HIDING), max_size=30).map("".join))
def test_shows_nothing_agrees_with_the_rendering(md: str) -> None:
    assert shows_nothing(md) is (render_answer(md) == [])


_TABLE = st.lists(st.lists(_WORDS.map(lambda s: s.replace("|", "")), min_size=2, max_size=4), min_size=1, max_size=4)


@settings(max_examples=100, deadline=None)
@given(rows=_TABLE, limit=st.sampled_from([50, 4096]))
def test_tables_render_valid_and_keep_cells(rows: list[list[str]], limit: int) -> None:
    width = len(rows[0])
    lines = ["| " + " | ".join(cells[:width] + [""] * (width - len(cells))) + " |" for cells in rows]
    md = "\n".join([lines[0], "|" + "---|" * width, *lines[1:]])
    chunks = valid_chunks(md, limit)
    _assert_text_kept(md, chunks)


_ANSWER = """Sure! Here's how:

1. Install **Python 3.11** (see [docs](https://docs.python.org/3/(x))).
2. Run:

```bash
pip install "pomogator[dev]" && echo '<done>'
```

| Step | Time |
|------|------|
| a | 1 < 2 |

> Note: ~~old~~ *new* `a & b`
"""


def test_every_prefix_of_a_real_answer_is_valid() -> None:
    for end in range(len(_ANSWER) + 1):
        for limit in (30, 4096):
            valid_chunks(_ANSWER[:end], limit)


@settings(max_examples=250, deadline=None)
@given(md=_MARKDOWNISH)
def test_an_answer_that_fits_is_one_message_exactly_as_the_splitter_makes_it(md: str) -> None:
    for end in range(0, len(md) + 1, max(1, len(md) // 10)):
        assert render_answer(md[:end]) == split_html(markdown_to_html(md[:end]))


@settings(max_examples=250, deadline=None)
@given(
    source=st.lists(st.one_of(_MD_PIECES, _WORDS, st.sampled_from(["</b>", "<i>", "</i>", "&lt;", "&#x1F600;"]))).map(
        "".join
    )
)
def test_visible_text_is_what_the_tokenizer_shows(source: str) -> None:
    assert visible_text(source) == "".join(atom.text for atom in tokenize(source) if isinstance(atom, Char))


def test_visible_text_does_not_join_an_entity_across_a_tag() -> None:
    assert visible_text("&l<b>t;</b> &lt;") == "&lt; <"
