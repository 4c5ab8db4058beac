"""The Markdown rules added to CommonMark for how models write: bare addresses, arithmetic with ``*``, link
reference definitions, link addresses Telegram refuses, raw HTML tags, lazily numbered lists."""

from __future__ import annotations

import pytest

from pomogator.services.formatting import html_to_text, markdown_to_html, render_answer, shows_nothing
from pomogator.services.formatting.text import visible_text
from tests.fakes.telegram_html import check_message, parse_html


def rendered(md: str) -> str:
    """``md`` as HTML, checked to be a message Telegram takes (or nothing)."""
    out = markdown_to_html(md)
    if out:
        check_message(out, "HTML")
    return out


def urls(html: str) -> list[object]:
    return [entity["url"] for entity in parse_html(html)[1] if entity["type"] == "text_link"]


# Bare addresses


@pytest.mark.parametrize(
    ("md", "out"),
    [
        (
            "Файл: https://github.com/psf/requests/blob/main/src/requests/__init__.py",
            "Файл: https://github.com/psf/requests/blob/main/src/requests/__init__.py",
        ),
        ("См. https://example.com/search?q=a*b*c", "См. https://example.com/search?q=a*b*c"),
        ("HTTP://E.COM/__x__ и http://e.com/*y*", "HTTP://E.COM/__x__ и http://e.com/*y*"),
        # The punctuation ending a sentence or an aside is not the address's, so Markdown after it still works.
        (
            "**см. https://e.com/a_b_c**, _или https://e.com/d_e_",
            "<b>см. https://e.com/a_b_c</b>, <i>или https://e.com/d_e</i>",
        ),
        (
            "(см. https://en.wikipedia.org/wiki/Python_(language)).",
            "(см. https://en.wikipedia.org/wiki/Python_(language)).",
        ),
        ("«https://e.com/a_b_»!", "«https://e.com/a_b_»!"),
        # An address as a link's label ends at the label's "]".
        ("[https://e.com/a_b_c](https://e.com/a_b_c)", '<a href="https://e.com/a_b_c">https://e.com/a_b_c</a>'),
        # Escapes mean in an address what they mean around it.
        (r"https://e.com/a\_b\_c", "https://e.com/a_b_c"),
        ("https://e.com/?a=1&amp;b=<2>", "https://e.com/?a=1&amp;b=&lt;2&gt;"),
        # A character reference at the end keeps its ";", which is no sentence's end.
        ("https://e.com/(x)&#65;", "https://e.com/(x)A"),
        ("https://e.com/x&copy;!", "https://e.com/x©!"),
        ("https://e.com/?a=1&b=2;", "https://e.com/?a=1&amp;b=2;"),
        # No address: emphasis as usual.
        (
            "xhttps://e.com/_a_ и https:// _b_ и https://. _c_",
            "xhttps://e.com/<i>a</i> и https:// <i>b</i> и https://. <i>c</i>",
        ),
        (
            "`https://e.com/_a_` и <https://e.com/_a_>",
            '<code>https://e.com/_a_</code> и <a href="https://e.com/_a_">https://e.com/_a_</a>',
        ),
    ],
)
def test_bare_addresses_are_kept_as_written(md: str, out: str) -> None:
    assert rendered(md) == out


def test_a_bare_address_is_its_whole_text() -> None:
    md = "Код: https://github.com/a_b/c*d*e/blob/main/__init__.py#L1-L2 — смотрите"
    assert visible_text(rendered(md)) == md


# Asterisks between letters or digits


@pytest.mark.parametrize(
    "md",
    ["2*3*4 = 24", "V = a*b*h", "x**2 + y**2 = r**2", "Ответ: 10*x*y", "a*b*c и 2**10", "з*в*ё*з*д*ы"],
)
def test_asterisks_inside_words_are_arithmetic(md: str) -> None:
    assert rendered(md) == md


@pytest.mark.parametrize(
    ("md", "out"),
    [
        ("**Важно**: да", "<b>Важно</b>: да"),
        ("**bold** text", "<b>bold</b> text"),
        ("*a*", "<i>a</i>"),
        ("***both*** и **API**-ключ", "<i><b>both</b></i> и <b>API</b>-ключ"),
        ("2 * 3 * 4 и *курсив*, 5*", "2 * 3 * 4 и <i>курсив</i>, 5*"),
        ("**Шаг 1.** Установите", "<b>Шаг 1.</b> Установите"),
        # Chinese and Japanese have no spaces between words: their emphasis is always between two letters.
        ("这是**重要**的", "这是<b>重要</b>的"),
        # Underscores inside words were never emphasis; a bold word that is no Python name stays bold.
        ("my_var_name и __важно__", "my_var_name и <b>важно</b>"),
        ("__NOTE__: x", "<b>NOTE</b>: x"),
    ],
)
def test_emphasis_around_words_still_formats(md: str, out: str) -> None:
    assert rendered(md) == out


@pytest.mark.parametrize(
    "md",
    [
        'if __name__ == "__main__":\n    main()',
        "Метод __init__ класса и файл __init__.py",
        "__all__ = [] в __pycache__",
        "my_var и __dict__, __slots__.",
    ],
)
def test_python_dunder_names_stay_as_written(md: str) -> None:
    assert visible_text(rendered(md)) == md.replace("\n    ", "\n")  # (the paragraph's indent goes)
    assert rendered("**__init__**") == "<b>__init__</b>"


def test_emphasis_inside_a_word_is_the_accepted_loss() -> None:
    assert rendered("**Python**овский") == "**Python**овский"


# Link reference definitions and footnotes


@pytest.mark.parametrize(
    ("md", "out"),
    [
        (
            "Ответ.\n\n**Источники:**\n\n[1]: rosstat.gov.ru\n[2]: who.int",
            "Ответ.\n\n<b>Источники:</b>\n\n[1]: rosstat.gov.ru\n[2]: who.int",
        ),
        (
            "13 млн [2].\n\n## Источники\n[1]: https://ru.wikipedia.org/wiki/Москва\n[2]: https://rosstat.gov.ru",
            "13 млн [2].\n\n<b>Источники</b>\n\n[1]: https://ru.wikipedia.org/wiki/Москва\n[2]: https://rosstat.gov.ru",
        ),
        ("[Google][g] и [g]\n\n[g]: https://google.com", "[Google][g] и [g]\n\n[g]: https://google.com"),
    ],
)
def test_reference_definitions_are_shown_as_written(md: str, out: str) -> None:
    assert rendered(md) == out


@pytest.mark.parametrize("md", ["[1]: https://a.com", "[^note]: Росстат", "[docs]: https://docs.python.org\n[a]:"])
def test_an_answer_of_only_definitions_shows_them(md: str) -> None:
    assert not shows_nothing(md)
    assert [visible_text(chunk) for chunk in render_answer(md)] == [md]


@pytest.mark.parametrize(
    ("md", "out"),
    [
        ("Население — 13 млн[^1].\n\n[^1]: Росстат", "Население — 13 млн¹.\n\n¹ Росстат"),
        ("a[^12] и b[^2]\n\n[^12]: первое\n[^2]: второе", "a¹² и b²\n\n¹² первое\n² второе"),
        # Not numbered, in code, or a link's label: as written.
        ("b[^note]\n\n[^note]: заметка", "b[^note]\n\n[^note]: заметка"),
        ("`x[^1]`", "<code>x[^1]</code>"),
        ("[^1](https://e.com/a)", '<a href="https://e.com/a">^1</a>'),
        # Mid-line, "[^1]:" is a mark followed by a colon.
        ("см.[^1]: так", "см.¹: так"),
    ],
)
def test_numbered_footnotes_are_superscripts(md: str, out: str) -> None:
    assert rendered(md) == out


def test_an_answer_of_only_a_footnote_shows_it() -> None:
    assert not shows_nothing("[^1]: Росстат")
    assert [visible_text(chunk) for chunk in render_answer("[^1]: Росстат")] == ["¹ Росстат"]


# Link addresses Telegram refuses


@pytest.mark.parametrize(
    ("md", "out"),
    [
        ("[x](https://)", "x (https://)"),
        ("[x](http:///path)", "x (http:///path)"),
        ("[x](https://:8080/)", "x (https://:8080/)"),
        ("[x](https://.)", "x (https://.)"),
        ("[x](https://...)", "x (https://...)"),
        ("[x](https://example.com:99999/)", "x (https://example.com:99999/)"),
        ("[x](https://example.com:0/)", "x (https://example.com:0/)"),
        ("[x](https://example.com:/)", "x (https://example.com:/)"),
        ("[x](https://example.com:80a/)", "x (https://example.com:80a/)"),
        # TDLib wants a dot in a web host: "localhost" and placeholders are no addresses to it.
        ("[docs](http://localhost:8000/docs)", "docs (http://localhost:8000/docs)"),
        ("[API](https://<домен>/api)", "API (https://&lt;домен&gt;/api)"),
        ("[docs](http://{host}:8000/docs)", "docs (http://{host}:8000/docs)"),
        ("[x](https://exa mple.com)", "[x](https://exa mple.com)"),
        ("[x](https://[::g]/)", "x (https://[::g]/)"),
        ("[**жирная**](https://e..com:70000)", "<b>жирная</b> (https://e..com:70000)"),
        # A label that is the address is shown once; one that is empty shows the address.
        ("[http://localhost:8000](http://localhost:8000) <http://localhost>", "http://localhost:8000 http://localhost"),
        ("[](http://localhost/x) ![](http://localhost/x.png)", "http://localhost/x http://localhost/x.png"),
        ("![схема](http://127.0.0.1:99999/s.png)", "схема (http://127.0.0.1:99999/s.png)"),
        # Other schemes Telegram refuses lose only the address, as before.
        ("[x](ftp://e.com/f) [y](/relative) [z](tg://) [w](mailto:)", "x y z w"),
    ],
)
def test_an_address_telegram_refuses_is_shown_after_the_label(md: str, out: str) -> None:
    assert rendered(md) == out


def test_a_port_of_thousands_of_digits_is_refused_too() -> None:
    # Python refuses to read an int from more than 4300 digits.
    assert (
        markdown_to_html("[x](https://e.com:" + "0" * 5000 + "8" * 5000 + ")")
        == "x (https://e.com:" + "0" * 5000 + "8" * 5000 + ")"
    )


@pytest.mark.parametrize(
    ("md", "url"),
    [
        ("[x](https://example.com)", "https://example.com"),
        ("[x](https://example.com:8080/a?b=c#d)", "https://example.com:8080/a?b=c#d"),
        ("[x](https://example.com:65535)", "https://example.com:65535"),
        ("[x](http://user:pass@example.com:000080/)", "http://user:pass@example.com:000080/"),
        ("[x](https://192.168.0.1:8000/)", "https://192.168.0.1:8000/"),
        ("[x](https://[::1]:8080/)", "https://[::1]:8080/"),
        ("[x](https://[2001:db8::1]/)", "https://[2001:db8::1]/"),
        ("[x](https://пример.рф/путь)", "https://xn--e1afmkfd.xn--p1ai/%D0%BF%D1%83%D1%82%D1%8C"),
        ("[x](https://xn--e1afmkfd.xn--p1ai)", "https://xn--e1afmkfd.xn--p1ai"),
        ("[x](https://my_host.example-1.com/)", "https://my_host.example-1.com/"),
        ("[x](tg://resolve?domain=pomogator_bot)", "tg://resolve?domain=pomogator_bot"),
        ("[x](mailto:me@x.io)", "mailto:me@x.io"),
    ],
)
def test_addresses_telegram_takes_stay_links(md: str, url: str) -> None:
    assert urls(rendered(md)) == [url]


def test_one_refused_address_leaves_the_other_links_alone() -> None:
    out = rendered(
        "1. [Python](https://python.org)\n2. [сервер](http://localhost:8000)\n3. [docs](https://docs.python.org)"
    )
    assert urls(out) == ["https://python.org", "https://docs.python.org"]
    assert visible_text(out) == "1. Python\n2. сервер (http://localhost:8000)\n3. docs"


# The plain-text fallback


def test_the_plain_text_fallback_keeps_link_addresses() -> None:
    html = markdown_to_html(
        "1. Скачайте Python с [официального сайта](https://www.python.org/downloads/).\n"
        "2. Документация: [docs.python.org](https://docs.python.org/).\n"
        "3. Код: [https://github.com/x](https://github.com/x), почта [me@x.io](mailto:me@x.io), "
        '[**"жирная" &**](https://e.com/?a=1&b="2")'
    )
    assert html_to_text(html) == (
        "1. Скачайте Python с официального сайта (https://www.python.org/downloads/).\n"
        "2. Документация: docs.python.org.\n"
        "3. Код: https://github.com/x, почта me@x.io, "
        '"жирная" & (https://e.com/?a=1&b=%222%22)'
    )
    # What Telegram shows of the HTML itself has the labels only.
    assert "(" not in visible_text(html)


def test_the_plain_text_fallback_adds_addresses_only_while_the_message_has_room() -> None:
    links = " ".join(f"[ссылка {i}](https://example.com/{i:04})" for i in range(100))
    [html] = render_answer("Текст. " * 300 + links)
    plain = html_to_text(html)
    assert len(plain) <= 4096
    assert "ссылка 0 (https://example.com/0000)" in plain
    assert "ссылка 99 (" not in plain and plain.endswith("ссылка 99")
    assert len(visible_text(html)) + 30 >= 4096 - len(plain) >= 0


# Raw HTML


@pytest.mark.parametrize(
    ("md", "out"),
    [
        ("E = mc<sup>2</sup> и H<sub>2</sub>O", "E = mc² и H₂O"),
        (
            "10<sup>-3</sup>, x<sup>n+1</sup>, a<sub>i</sub>, e<sup>x</sup>, C<sub>6</sub>H<sub>12</sub>O<sub>6</sub>",
            "10⁻³, xⁿ⁺¹, aᵢ, eˣ, C₆H₁₂O₆",
        ),
        ("2<sup>n + 1</sup> и сноска<sup>1</sup>", "2ⁿ ⁺ ¹ и сноска¹"),
        # Not every character has a superscript or a subscript: written out.
        ("x<sup>TM</sup>, a<sub>i,j</sub>, x<sup>q</sup>, y<sub>b</sub>", "x^(TM), a_(i,j), x^(q), y_(b)"),
        ("x<sup>**2**</sup> и x<sup></sup>y", "x^(<b>2</b>) и xy"),
        ("Нажмите <kbd>Ctrl</kbd>+<kbd>C</kbd>", "Нажмите <code>Ctrl</code>+<code>C</code>"),
        (
            "Файл <code>__init__.py</code>, <code>f(*args, **kw)</code>, <CODE>a &lt; b</CODE>, <code>[1](x)</code>",
            "Файл <code>__init__.py</code>, <code>f(*args, **kw)</code>, <code>a &lt; b</code>, <code>[1](x)</code>",
        ),
        ("<code>a\nb</code><code> </code> и <code>без конца", "<code>a b</code> и &lt;code&gt;без конца"),
        ("<ins>новое</ins> и <strike>старое</strike>", "<u>новое</u> и <s>старое</s>"),
        (
            "<kbd>**Ctrl** & <b>Alt</b></kbd> и [<kbd>Esc</kbd>](https://e.com)",
            '<code>Ctrl &amp; Alt</code> и <a href="https://e.com">Esc</a>',
        ),
        (
            "<b>b</b> <strong>strong</strong> <i>i</i> <em>em</em> <u>u</u> <s>s</s> <del>del</del> <B>B</B>",
            "<b>b</b> <b>strong</b> <i>i</i> <i>em</i> <u>u</u> <s>s</s> <s>del</s> <b>B</b>",
        ),
        ('<b class="x">a</b > и <i\nid=1>b</i>', "<b>a</b> и <i>b</i>"),
        (
            "<b>жирный <i>и курсив</i></b> и **<u>подчёркнутый</u>**",
            "<b>жирный <i>и курсив</i></b> и <b><u>подчёркнутый</u></b>",
        ),
        ("[<b>ссылка</b>](https://e.com)", '<a href="https://e.com"><b>ссылка</b></a>'),
        ("# Заголовок <u>важный</u>", "<b>Заголовок <u>важный</u></b>"),
        ("| a | b |\n|---|---|\n| H<sub>2</sub>O | <b>1</b> |", "<pre>a   | b\n----+--\nH₂O | 1</pre>"),
        # Other tags stay text, as they were.
        (
            "<span>a</span> <mark>b</mark> </code> <p>d</p>",
            "&lt;span&gt;a&lt;/span&gt; &lt;mark&gt;b&lt;/mark&gt; &lt;/code&gt; &lt;p&gt;d&lt;/p&gt;",
        ),
        ("a<b>c и List<String> и <b/>", "a&lt;b&gt;c и List&lt;String&gt; и &lt;b/&gt;"),
        (
            "`<b>код</b>`\n\n```\n<sup>2</sup>\n```",
            "<code>&lt;b&gt;код&lt;/b&gt;</code>\n\n<pre>&lt;sup&gt;2&lt;/sup&gt;</pre>",
        ),
    ],
)
def test_html_tags_models_write_format(md: str, out: str) -> None:
    assert rendered(md) == out


@pytest.mark.parametrize(
    ("md", "out"),
    [
        # Unclosed, stray or crossing tags are text, as an unclosed ``**`` is: the output is always valid.
        ("<b>никогда не закрыт", "&lt;b&gt;никогда не закрыт"),
        ("</b> без начала и </sup>", "&lt;/b&gt; без начала и &lt;/sup&gt;"),
        ("<b><i>x</b></i>", "<b>&lt;i&gt;x</b>&lt;/i&gt;"),
        ("**<b>x**</b>", "<b>&lt;b&gt;x</b>&lt;/b&gt;"),
        ("<b>**x</b>**", "&lt;b&gt;<b>x&lt;/b&gt;</b>"),
        ("**<i>a** **b</i>**", "<b>&lt;i&gt;a</b> <b>b&lt;/i&gt;</b>"),
        ("<b>a\n\nb</b>", "&lt;b&gt;a\n\nb&lt;/b&gt;"),
        ("<b><b>x</b></b> <i>a <i>b</i> c</i>", "<b>x</b> <i>a b c</i>"),
        ("<sup><sup>2</sup></sup> <kbd><kbd>K</kbd></kbd>", "^(²) <code>K</code>"),
        ("<b></b><i> </i>x", "x"),
        ("[a <b>b](https://e.com) c</b>", '<a href="https://e.com">a &lt;b&gt;b</a> c&lt;/b&gt;'),
    ],
)
def test_html_tags_that_do_not_pair_are_text(md: str, out: str) -> None:
    assert rendered(md) == out


@pytest.mark.parametrize(
    ("md", "out"),
    [
        ("<details><summary>Подробнее</summary>\n\nТекст\n\n</details>", "Подробнее\n\nТекст"),
        ("<details>\n<summary>Итог</summary>\nТекст\n</details>\n\nДальше", "Итог\nТекст\n\nДальше"),
        ("Ответ: <details open><summary>Решение</summary>x = 2</details> — всё", "Ответ:\nРешение\nx = 2\n— всё"),
        (
            "<details><summary>**Код**</summary>\n\n```py\nx = 1\n```\n</details>",
            '<b>Код</b>\n\n<pre><code class="language-py">x = 1</code></pre>',
        ),
        ("<!-- comment -->\nТекст", "Текст"),
        ("Текст\n<!-- comment -->", "Текст"),
        ("a <!-- c --> b и a<!--\nмного\nстрок\n-->b", "a b и ab"),
        ("до\n<!-- c -->\nпосле", "до\nпосле"),
        ("<!-- незакрыт", "&lt;!-- незакрыт"),
        ("<!-- только комментарий -->", ""),
    ],
)
def test_html_structure_and_comments(md: str, out: str) -> None:
    assert rendered(md) == out


def test_an_answer_of_only_html_comments_or_frames_shows_nothing() -> None:
    for md in ("<!-- x -->", "<details><summary></summary></details>", "<b></b>"):
        assert shows_nothing(md)
        assert render_answer(md) == []


def test_every_prefix_of_an_answer_with_html_renders_valid() -> None:
    """While a stream is written, a tag is half-typed or not yet closed at every step."""
    answer = (
        "E = mc<sup>2</sup>, H<sub>2</sub>O, <kbd>Ctrl</kbd>+<b>жирный <i>курсив</i></b>\n\n"
        "<details><summary>Подробнее</summary>\n\nТекст <!-- комментарий --> и <u>ещё</u>\n\n</details>\n\n"
        "См. https://e.com/a_b_c* и [сервер](http://localhost:8000), 2*3*4\n\n[1]: https://a.com"
    )
    for end in range(len(answer) + 1):
        for chunk in render_answer(answer[:end], 40):
            check_message(chunk, "HTML", 40)
            check_message(html_to_text(chunk), None, 4096)


# Lists


@pytest.mark.parametrize(
    ("md", "shown"),
    [
        (
            "1. Установите Python\n1. Создайте venv\n1. Запустите бота",
            "1. Установите Python\n2. Создайте venv\n3. Запустите бота",
        ),
        ("3. x\n3. y\n7. z", "3. x\n4. y\n5. z"),
        ("1) один\n1) два", "1. один\n2. два"),
        ("- a\n  1. b\n  1. c", "• a\n   1. b\n   2. c"),
    ],
)
def test_lists_are_numbered_from_their_start(md: str, shown: str) -> None:
    assert visible_text(rendered(md)) == shown


@pytest.mark.parametrize(
    ("md", "shown"),
    [
        ("- [ ] купить хлеб\n- [x] позвонить\n  - [X] вложенное", "☐ купить хлеб\n☑ позвонить\n   ☑ вложенное"),
        ("1. [ ] один\n2. [x] **два**", "1. ☐ один\n2. ☑ два"),
        ("- [ ]", "• [ ]"),  # a box with no task is just text
        ("- [ссылка](https://a.com) и [x] в тексте", "• ссылка и [x] в тексте"),
    ],
)
def test_task_lists_are_drawn_as_boxes(md: str, shown: str) -> None:
    assert visible_text(rendered(md)) == shown
