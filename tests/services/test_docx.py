"""Tests for reading DOCX bodies; every file is built in the test from python-docx's template and raw XML."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import IO, cast

import pytest
from docx import Document
from PIL import Image

from pomogator.bot import files_texts
from pomogator.errors import CorruptFile, EmptyFile, UnsupportedFile
from pomogator.services.files import extract_document
from pomogator.services.files.docx import READ_AHEAD_CHARS

# --- builders ---------------------------------------------------------------------------------------------

RELATIONSHIP_TYPES = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/"
DRAWING_NS = 'xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main"'


def run(text: str) -> str:
    return f'<w:r><w:t xml:space="preserve">{text}</w:t></w:r>'


def para(*inline: str, style: str | None = None) -> str:
    properties = f'<w:pPr><w:pStyle w:val="{style}"/></w:pPr>' if style else ""
    return "<w:p>" + properties + "".join(inline) + "</w:p>"


def cell(*content: str, merge: str | None = None) -> str:
    properties = ""
    if merge is not None:
        properties = f'<w:tcPr><w:vMerge w:val="{merge}"/></w:tcPr>' if merge else "<w:tcPr><w:vMerge/></w:tcPr>"
    return "<w:tc>" + properties + ("".join(content) or para()) + "</w:tc>"


def table(*rows: str) -> str:
    return "<w:tbl><w:tblPr/><w:tblGrid/>" + "".join(f"<w:tr>{row}</w:tr>" for row in rows) + "</w:tbl>"


def docx_with_body(body: str, *, prolog: str = "", parts: dict[str, str] | None = None) -> bytes:
    """python-docx's template with ``body`` as the content of ``w:body``, plus extra parts related to the document.

    ``prolog`` goes between the XML declaration and the root element (a DOCTYPE, for one).
    """
    out = io.BytesIO()
    Document().save(out)
    with zipfile.ZipFile(io.BytesIO(out.getvalue())) as template:
        members = {name: template.read(name) for name in template.namelist()}
    xml = members["word/document.xml"].decode()
    root = xml.index("<w:document")
    head = xml[root : xml.index("<w:body>") + len("<w:body>")]
    members["word/document.xml"] = (
        f"<?xml version='1.0' encoding='UTF-8'?>{prolog}{head}{body}</w:body></w:document>".encode()
    )
    rels = members["word/_rels/document.xml.rels"].decode()
    for number, (part, xml_text) in enumerate((parts or {}).items()):
        kind = part.removesuffix(".xml").rstrip("0123456789")  # header1.xml and header2.xml are both headers
        relationship = f'<Relationship Id="rIdTest{number}" Type="{RELATIONSHIP_TYPES}{kind}" Target="{part}"/>'
        rels = rels.replace("</Relationships>", relationship + "</Relationships>")
        members[f"word/{part}"] = xml_text.encode()
    members["word/_rels/document.xml.rels"] = rels.encode()
    result = io.BytesIO()
    with zipfile.ZipFile(result, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return result.getvalue()


def read(data: bytes, max_chars: int = 100_000) -> str:
    doc = extract_document(data, "test.docx", None, max_chars)
    assert doc.kind == "docx"
    return doc.text


def notes_part(kind: str, notes: dict[int, str]) -> str:
    ns = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
    separators = (
        f'<w:{kind} w:type="separator" w:id="-1"><w:p><w:r><w:separator/></w:r></w:p></w:{kind}>'
        f'<w:{kind} w:type="continuationSeparator" w:id="0"><w:p><w:r><w:continuationSeparator/></w:r></w:p></w:{kind}>'
    )
    bodies = "".join(
        f'<w:{kind} w:id="{number}"><w:p><w:r><w:{kind}Ref/></w:r>{run(" " + text)}</w:p></w:{kind}>'
        for number, text in notes.items()
    )
    return f"<w:{kind}s {ns}>{separators}{bodies}</w:{kind}s>"


# --- text that python-docx alone does not see -------------------------------------------------------------


@pytest.mark.parametrize(
    "paragraph",
    [
        pytest.param(para(run("Сумма: "), '<w:ins w:id="1" w:author="A">' + run("MARKER") + "</w:ins>"), id="ins"),
        pytest.param(para('<w:moveTo w:id="1" w:author="A">' + run("MARKER") + "</w:moveTo>"), id="moveTo"),
        pytest.param(para('<w:smartTag w:uri="u" w:element="e">' + run("MARKER") + "</w:smartTag>"), id="smartTag"),
        pytest.param(para('<w:fldSimple w:instr=" DATE ">' + run("MARKER") + "</w:fldSimple>"), id="fldSimple"),
        pytest.param(para('<w:hyperlink r:id="rId1">' + run("MARKER") + "</w:hyperlink>"), id="hyperlink"),
        pytest.param(para('<w:customXml w:element="e">' + run("MARKER") + "</w:customXml>"), id="customXml"),
        pytest.param(
            para(run("Поле: "), "<w:sdt><w:sdtPr/><w:sdtContent>" + run("MARKER") + "</w:sdtContent></w:sdt>"),
            id="inline-sdt",
        ),
        pytest.param("<w:sdt><w:sdtPr/><w:sdtContent>" + para(run("MARKER")) + "</w:sdtContent></w:sdt>", id="sdt"),
        pytest.param(
            '<w:customXml w:element="e"><w:sdt><w:sdtContent>'
            + para(run("MARKER"))
            + "</w:sdtContent></w:sdt></w:customXml>",
            id="nested-wrappers",
        ),
        pytest.param(
            para(
                '<w:ins w:id="1" w:author="A"><w:smartTag w:uri="u" w:element="e"><w:fldSimple w:instr="REF x">'
                + run("MARKER")
                + "</w:fldSimple></w:smartTag></w:ins>"
            ),
            id="ins-smartTag-fldSimple",
        ),
    ],
)
def test_docx_text_inside_containers_is_read(paragraph: str) -> None:
    text = read(docx_with_body(para(run("before")) + paragraph + para(run("after"))))
    assert text.startswith("before\n\n")
    assert text.endswith("\n\nafter")
    assert "MARKER" in text


def test_docx_tracked_deletions_are_left_out() -> None:
    body = para(
        run("Сумма договора: "),
        '<w:del w:id="1" w:author="A"><w:r><w:delText>1 000 000 руб.</w:delText></w:r></w:del>',
        '<w:ins w:id="2" w:author="A">' + run("5 000 000 руб.") + "</w:ins>",
        '<w:moveFrom w:id="3" w:author="A">' + run("MOVED-AWAY") + "</w:moveFrom>",
    ) + para('<w:del w:id="4" w:author="A"><w:r><w:delText>WHOLE-PARAGRAPH-DELETED</w:delText></w:r></w:del>')
    assert read(docx_with_body(body)) == "Сумма договора: 5 000 000 руб."


def test_docx_field_codes_are_left_out_and_results_kept() -> None:
    body = para(
        run("Дата: "),
        '<w:r><w:fldChar w:fldCharType="begin"/></w:r>',
        '<w:r><w:instrText xml:space="preserve"> DATE \\@ "dd.MM.yyyy" </w:instrText></w:r>',
        '<w:r><w:fldChar w:fldCharType="separate"/></w:r>',
        run("01.02.2024"),
        '<w:r><w:fldChar w:fldCharType="end"/></w:r>',
    )
    assert read(docx_with_body(body)) == "Дата: 01.02.2024"


def test_docx_tabs_and_breaks_separate_words() -> None:
    body = para(
        "<w:r><w:t>one</w:t><w:tab/><w:t>two</w:t><w:br/><w:t>three</w:t><w:cr/><w:t>four</w:t>"
        '<w:br w:type="page"/><w:t>five</w:t><w:noBreakHyphen/><w:t>six</w:t></w:r>'
    )
    assert read(docx_with_body(body)) == "one\ttwo\nthree\nfour\nfive-six"


def test_docx_text_box_is_read_once_after_its_paragraph() -> None:
    box = para(run("TEXTBOX-TEXT"))
    drawing = (
        '<mc:AlternateContent><mc:Choice Requires="wps"><w:drawing><wp:anchor><a:graphic ' + DRAWING_NS + ">"
        "<a:graphicData><wps:wsp><wps:txbx><w:txbxContent>" + box + "</w:txbxContent></wps:txbx></wps:wsp>"
        "</a:graphicData></a:graphic></wp:anchor></w:drawing></mc:Choice>"
        "<mc:Fallback><w:pict><v:shape><v:textbox><w:txbxContent>" + box + "</w:txbxContent></v:textbox>"
        "</v:shape></w:pict></mc:Fallback></mc:AlternateContent>"
    )
    body = para(run("Рамка:"), "<w:r>" + drawing + "</w:r>", run(" и после")) + para(run("next"))
    assert read(docx_with_body(body)) == "Рамка: и после\n\nTEXTBOX-TEXT\n\nnext"


def test_docx_vml_text_box_alone_is_read() -> None:
    body = para(
        "<w:r><w:pict><v:shape><v:textbox><w:txbxContent>"
        + para(run("Heading in a box"), style="Heading1")
        + table(cell(para(run("boxed cell"))))
        + "</w:txbxContent></v:textbox></v:shape></w:pict></w:r>"
    )
    assert read(docx_with_body(body)) == "# Heading in a box\n\n| boxed cell |"


# --- headings and tables ----------------------------------------------------------------------------------


def test_docx_headings_come_from_the_style_names() -> None:
    body = (
        para(run("The title"), style="Title")
        + para(run("Chapter"), style="Heading1")
        + para(run("Section"), style="Heading3")
        + para(run("Unknown style"), style="NoSuchStyle")
        + para(run("Quoted"), style="Quote")
        + "<w:sdt><w:sdtContent>"
        + para(run("Heading in a control"), style="Heading2")
        + "</w:sdtContent></w:sdt>"
    )
    assert read(docx_with_body(body)) == (
        "# The title\n\n# Chapter\n\n### Section\n\nUnknown style\n\nQuoted\n\n## Heading in a control"
    )


def test_docx_tables_with_content_controls_merges_and_nested_tables() -> None:
    body = table(
        cell(para(run("Name"))) + "<w:sdt><w:sdtContent>" + cell(para(run("Value"))) + "</w:sdtContent></w:sdt>",
        "<w:customXml>" + cell(para(run("Region")), merge="restart") + "</w:customXml>" + cell(para(run("North"))),
        cell(merge="continue") + cell(para('<w:ins w:id="1" w:author="A">' + run("South") + "</w:ins>")),
        cell(para(run("Nested"))) + cell(table(cell(para(run("a"))) + cell(para(run("b"))))),
        cell() + cell(para('<w:del w:id="2" w:author="A"><w:r><w:delText>gone</w:delText></w:r></w:del>')),
    )
    assert read(docx_with_body(body)) == ("| Name | Value |\n| Region | North |\n| Region | South |\n| Nested | a b |")


def test_docx_content_control_around_table_rows() -> None:
    body = (
        "<w:tbl><w:tblGrid/><w:tr>"
        + cell(para(run("head")))
        + "</w:tr><w:sdt><w:sdtContent><w:tr>"
        + cell(para(run("repeating row")))
        + "</w:tr></w:sdtContent></w:sdt></w:tbl>"
    )
    assert read(docx_with_body(body)) == "| head |\n| repeating row |"


# --- notes --------------------------------------------------------------------------------------------------


def test_docx_footnotes_and_endnotes_follow_the_body() -> None:
    body = para(
        run("Claim"),
        '<w:r><w:footnoteReference w:id="1"/></w:r>',
        run(" and more"),
        '<w:r><w:endnoteReference w:id="1"/></w:r>',
    ) + para(run("Second"), '<w:r><w:footnoteReference w:id="2"/></w:r>')
    parts = {
        "footnotes.xml": notes_part("footnote", {1: "Source one.", 2: "Source two."}),
        "endnotes.xml": notes_part("endnote", {1: "The end note."}),
    }
    assert read(docx_with_body(body, parts=parts)) == (
        "Claim[^1] and more[^e1]\n\nSecond[^2]\n\n[^1]: Source one.\n\n[^2]: Source two.\n\n[^e1]: The end note."
    )


# --- page headers and footers ------------------------------------------------------------------------------


def margin_part(kind: str, *content: str) -> str:
    tag = "hdr" if kind == "header" else "ftr"
    ns = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
    return f"<?xml version='1.0' encoding='UTF-8'?><w:{tag} {ns}>{''.join(content)}</w:{tag}>"


PAGE_NUMBER = (
    '<w:r><w:fldChar w:fldCharType="begin"/></w:r><w:r><w:instrText> PAGE </w:instrText></w:r>'
    '<w:r><w:fldChar w:fldCharType="separate"/></w:r><w:r><w:t>3</w:t></w:r><w:r><w:fldChar w:fldCharType="end"/></w:r>'
)


def test_docx_page_headers_go_before_the_body_and_footers_after_it() -> None:
    body = para(run("Claim"), '<w:r><w:footnoteReference w:id="1"/></w:r>')
    # A letterhead laid out in a table reads as one line.
    parts = {
        "footnotes.xml": notes_part("footnote", {1: "Source one."}),
        "header1.xml": margin_part("header", table(cell(para(run("ACME Ltd"))) + cell(para(run("Report 7"))))),
        # The first page's header says the same: it is not repeated.
        "header2.xml": margin_part("header", table(cell(para(run("ACME Ltd"))) + cell(para(run("Report 7"))))),
        "footer1.xml": margin_part("footer", para(run("Confidential")), para(run("Page "), PAGE_NUMBER)),
        "footer2.xml": margin_part("footer", para(PAGE_NUMBER)),  # a page number alone says nothing
    }
    assert read(docx_with_body(body, parts=parts)) == (
        "Header: ACME Ltd Report 7\n\nClaim[^1]\n\n[^1]: Source one.\n\nFooter: Confidential\nPage 3"
    )


def test_docx_a_damaged_footer_is_left_out_and_the_rest_read() -> None:
    parts = {
        "header1.xml": margin_part("header", para(run("Letterhead"))),
        "footer1.xml": margin_part("footer", para(run("Confidential")))[:-20],  # cut off mid-element
    }
    assert read(docx_with_body(para(run("Body")), parts=parts)) == "Header: Letterhead\n\nBody"


def test_docx_an_oversized_header_is_left_out_and_a_long_one_cut() -> None:
    huge = margin_part("header", para(run("x " * 200_000)))
    long = margin_part("header", para(run("Long header " * 200)))
    text = read(docx_with_body(para(run("Body")), parts={"header1.xml": huge, "header2.xml": long}))
    header, body = text.split("\n\n")
    assert header == "Header: " + ("Long header " * 200)[:1000].strip()
    assert body == "Body"


# --- reading only as far as needed ------------------------------------------------------------------------


def long_body(paragraphs: int) -> str:
    return "".join(para(run(f"Paragraph number {n} of a long report.")) for n in range(paragraphs))


def test_docx_long_body_is_not_read_past_the_limit() -> None:
    # The XML after the first ~400 000 characters of text is broken: reading it would make the file corrupt.
    body = long_body(12_000) + "<w:p><w:r><w:t>unclosed</w:r></w:p>" + long_body(10)
    with pytest.raises(CorruptFile):
        extract_document(docx_with_body(body), "long.docx", None, 1_000_000)
    doc = extract_document(docx_with_body(body), "long.docx", None, 1000)
    assert doc.truncated
    assert doc.total_chars is None
    assert len(doc.text) <= 1000
    assert doc.text.startswith("Paragraph number 0 of a long report.\n\nParagraph number 1 of")


def test_docx_a_little_too_long_reports_its_length() -> None:
    paragraphs = 200
    text = "\n\n".join(f"Paragraph number {n} of a long report." for n in range(paragraphs))
    assert len(text) < READ_AHEAD_CHARS
    doc = extract_document(docx_with_body(long_body(paragraphs)), "long.docx", None, 500)
    assert doc.truncated
    assert doc.total_chars == len(text)
    assert text.startswith(doc.text)


def test_docx_long_table_stops_at_the_limit() -> None:
    rows = [cell(para(run(f"row {n}"))) + cell(para(run("x" * 50))) for n in range(5000)]
    body = table(*rows)[: -len("</w:tbl>")] + "<w:tr><w:tc>broken"
    doc = extract_document(docx_with_body(body), "table.docx", None, 300)
    assert doc.truncated
    assert doc.total_chars is None
    assert doc.text.startswith("| row 0 | " + "x" * 50 + " |\n| row 1 |")


# --- damaged and hostile files ----------------------------------------------------------------------------


def test_docx_external_entities_are_not_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    prolog = f'<!DOCTYPE w:document [<!ENTITY leak SYSTEM "{secret.as_uri()}">]>'
    text = read(docx_with_body(para(run("before &leak; after")), prolog=prolog))
    assert "TOP-SECRET" not in text
    assert text.startswith("before")


def test_docx_without_a_body_is_corrupt() -> None:
    data = docx_with_body("")
    with zipfile.ZipFile(io.BytesIO(data)) as source:
        members = {name: source.read(name) for name in source.namelist()}
    members["word/document.xml"] = b"<?xml version='1.0'?><root>just some XML</root>"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    with pytest.raises(CorruptFile):
        extract_document(out.getvalue(), "other.docx", None, 1000)


def test_docx_with_an_empty_body_is_empty() -> None:
    with pytest.raises(EmptyFile):
        extract_document(docx_with_body(""), "empty.docx", None, 1000)


# --- automatic numbering ----------------------------------------------------------------------------------


def numbered(text: str, num_id: int, level: int = 0) -> str:
    numbering = f'<w:pPr><w:numPr><w:ilvl w:val="{level}"/><w:numId w:val="{num_id}"/></w:numPr></w:pPr>'
    return "<w:p>" + numbering + run(text) + "</w:p>"


def level(number: int, number_format: str, text: str, start: int = 1) -> str:
    return (
        f'<w:lvl w:ilvl="{number}"><w:start w:val="{start}"/><w:numFmt w:val="{number_format}"/>'
        f'<w:lvlText w:val="{text}"/></w:lvl>'
    )


NUMBERING = (
    '<w:numbering xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
    '<w:abstractNum w:abstractNumId="10">'
    + level(0, "decimal", "%1.")
    + level(1, "decimal", "%1.%2.")
    + level(2, "russianLower", "%3)")
    + '</w:abstractNum><w:abstractNum w:abstractNumId="11">'
    + level(0, "bullet", "\uf0b7")
    + level(1, "upperRoman", "%2.", start=3)
    + "</w:abstractNum>"
    '<w:num w:numId="20"><w:abstractNumId w:val="10"/></w:num>'
    '<w:num w:numId="21"><w:abstractNumId w:val="10"/>'
    '<w:lvlOverride w:ilvl="0"><w:startOverride w:val="1"/></w:lvlOverride></w:num>'
    '<w:num w:numId="22"><w:abstractNumId w:val="11"/></w:num>'
    "</w:numbering>"
)


def test_automatic_numbering_is_written_out() -> None:
    body = "".join(
        [
            numbered("Предмет договора", 20),
            numbered("Исполнитель оказывает услуги.", 20, 1),
            numbered("Заказчик их оплачивает:", 20, 1),
            numbered("в срок;", 20, 2),
            numbered("в полном объёме.", 20, 2),
            numbered("", 20),  # an empty numbered paragraph still takes its number
            numbered("Ответственность сторон", 20),
            numbered("Стороны отвечают по закону.", 20, 1),
            para(run("Приложение")),
            numbered("Маркер", 22),
            numbered("Третий", 22, 1),
            numbered("Новый список", 21),
            '<w:p><w:pPr><w:numPr><w:ilvl w:val="0"/><w:numId w:val="0"/></w:numPr></w:pPr>'
            + run("Без номера")
            + "</w:p>",
        ]
    )
    assert read(docx_with_body(body, parts={"numbering.xml": NUMBERING})).split("\n\n") == [
        "1. Предмет договора",
        "1.1. Исполнитель оказывает услуги.",
        "1.2. Заказчик их оплачивает:",
        "а) в срок;",
        "б) в полном объёме.",
        "3. Ответственность сторон",
        "3.1. Стороны отвечают по закону.",
        "Приложение",
        "• Маркер",
        "III. Третий",
        "1. Новый список",
        "Без номера",
    ]


def test_list_styles_number_their_paragraphs() -> None:
    document = Document()
    document.add_paragraph("Первый пункт", style="List Number")
    document.add_paragraph("Второй пункт", style="List Number")
    document.add_paragraph("Маркер", style="List Bullet")
    document.add_paragraph("Обычный абзац")
    out = io.BytesIO()
    document.save(out)
    assert read(out.getvalue()).split("\n\n") == ["1. Первый пункт", "2. Второй пункт", "• Маркер", "Обычный абзац"]


def test_a_damaged_numbering_part_costs_only_the_numbers() -> None:
    body = numbered("Пункт", 20) + para(run("Текст"))
    assert read(docx_with_body(body, parts={"numbering.xml": "<w:numbering"})) == "Пункт\n\nТекст"


def test_a_document_of_pictures_alone_is_not_called_empty() -> None:
    picture = io.BytesIO()
    Image.new("RGB", (20, 20), "white").save(picture, "PNG")
    picture.seek(0)
    document = Document()
    document.add_picture(picture)
    out = io.BytesIO()
    document.save(out)
    with pytest.raises(UnsupportedFile) as caught:
        extract_document(out.getvalue(), "scan_in_word.docx", None, 1000)
    assert caught.value.kind == "docx-images"
    assert "В документе только картинки" in files_texts.file_error(caught.value)
    with pytest.raises(EmptyFile):
        extract_document(docx_with_body(para()), "empty.docx", None, 1000)


# --- numbering through styles and inside tables -----------------------------------------------------------

HEADING_NUMBERING = NUMBERING.replace(
    "</w:numbering>",
    '<w:abstractNum w:abstractNumId="12">'
    + level(0, "decimal", "%1")
    + level(1, "decimal", "%1.%2")
    + '</w:abstractNum><w:num w:numId="30"><w:abstractNumId w:val="12"/></w:num></w:numbering>',
)


def style(
    style_id: str, name: str, *, based_on: str | None = None, num_id: int | None = None, lvl: int | None = None
) -> str:
    numbering = ""
    if num_id is not None or lvl is not None:
        numbering = "<w:pPr><w:numPr>"
        numbering += f'<w:ilvl w:val="{lvl}"/>' if lvl is not None else ""
        numbering += f'<w:numId w:val="{num_id}"/>' if num_id is not None else ""
        numbering += "</w:numPr></w:pPr>"
    parent = f'<w:basedOn w:val="{based_on}"/>' if based_on else ""
    return f'<w:style w:type="paragraph" w:styleId="{style_id}"><w:name w:val="{name}"/>{parent}{numbering}</w:style>'


def styles_part(*styles: str) -> str:
    return (
        '<w:styles xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
        '<w:style w:type="paragraph" w:default="1" w:styleId="Normal"><w:name w:val="Normal"/></w:style>'
        + style("Heading1", "heading 1", based_on="Normal", num_id=30, lvl=0)
        # Heading 2 takes its list from Heading 1 and sets only its own level.
        + style("Heading2", "heading 2", based_on="Heading1", lvl=1)
        + "".join(styles)
        + "</w:styles>"
    )


def styled(text: str, style_id: str, *, num_id: int | None = None, lvl: int | None = None) -> str:
    numbering = ""
    if num_id is not None or lvl is not None:
        numbering = "<w:numPr>"
        numbering += f'<w:ilvl w:val="{lvl}"/>' if lvl is not None else ""
        numbering += f'<w:numId w:val="{num_id}"/>' if num_id is not None else ""
        numbering += "</w:numPr>"
    return f'<w:p><w:pPr><w:pStyle w:val="{style_id}"/>{numbering}</w:pPr>{run(text)}</w:p>'


def read_styled(body: str, *styles: str) -> list[str]:
    parts = {"numbering.xml": HEADING_NUMBERING, "styles.xml": styles_part(*styles)}
    return read(docx_with_body(body, parts=parts)).split("\n\n")


def test_heading_numbering_comes_through_the_styles() -> None:
    body = "".join(
        [
            styled("Введение", "Heading1"),
            styled("Цели", "Heading2"),
            para(run("Текст договора.")),
            styled("Условия", "Heading1"),
            styled("Сроки", "ContractClause"),
            numbered("Порядок оплаты", 30, 1),  # the same list given directly continues it
            styled("Ответственность", "Heading1"),
        ]
    )
    assert read_styled(body, style("ContractClause", "Contract clause", based_on="Heading2")) == [
        "# 1 Введение",
        "## 1.1 Цели",
        "Текст договора.",
        "# 2 Условия",
        "2.1 Сроки",
        "2.2 Порядок оплаты",
        "# 3 Ответственность",
    ]


def test_numbered_paragraphs_inside_table_cells_are_counted_in_document_order() -> None:
    body = (
        numbered("Предмет договора", 20)
        + table(
            cell(numbered("Поставка", 20, 1), numbered("Монтаж", 20, 1)) + cell(para(run("100"))),
            cell(table(cell(numbered("Наладка", 20, 1)))) + cell(styled("Итоги", "Heading1")),
        )
        + numbered("Оплата", 20)
        + styled("Сроки", "Heading1")
    )
    assert read_styled(body) == [
        "1. Предмет договора",
        "| 1.1. Поставка 1.2. Монтаж | 100 |\n| 1.3. Наладка | 1 Итоги |",
        "2. Оплата",
        "# 2 Сроки",
    ]


def test_a_paragraphs_own_numbering_overrides_its_styles() -> None:
    body = "".join(
        [
            styled("Первый", "Clause"),
            styled("Из другого списка", "Clause", num_id=20),
            styled("Второй", "Clause"),
            styled("Подпункт", "Clause", lvl=1),  # the level given directly, the list from the style
        ]
    )
    clause_styles = (
        style("ClauseBase", "Clause base", num_id=30, lvl=0),
        style("Clause", "Clause", based_on="ClauseBase"),
    )
    assert read_styled(body, *clause_styles) == ["1 Первый", "1. Из другого списка", "2 Второй", "2.1 Подпункт"]


def test_num_id_zero_switches_inherited_numbering_off() -> None:
    body = "".join(
        [
            styled("Введение", "Heading1"),
            styled("Цели", "Heading2"),
            styled("Без номера", "Heading2", num_id=0),
            styled("Приложение", "Appendix"),
            styled("Задачи", "Heading2"),
        ]
    )
    unnumbered = (
        style("Unnumbered", "Unnumbered", based_on="Heading2", num_id=0),
        style("Appendix", "Appendix", based_on="Unnumbered"),
    )
    assert read_styled(body, *unnumbered) == [
        "# 1 Введение",
        "## 1.1 Цели",
        "## Без номера",
        "Приложение",
        "## 1.2 Задачи",
    ]


def test_a_based_on_cycle_ends() -> None:
    cycle = (
        style("Loop", "Loop", based_on="Loop"),
        style("First", "First", based_on="Second"),
        style("Second", "Second", based_on="First", num_id=30, lvl=0),
    )
    body = styled("Сам по себе", "Loop") + styled("Первый", "First") + styled("Второй", "Second")
    assert read_styled(body, *cycle) == ["Сам по себе", "1 Первый", "2 Второй"]


def strict(data: bytes) -> bytes:
    """The DOCX ``data`` saved as Word's "Strict Open XML Document": the same layout in namespaces of its own."""
    namespaces = {
        b"http://schemas.openxmlformats.org/wordprocessingml/2006/main": b"http://purl.oclc.org/ooxml/wordprocessingml/main",
        b"http://schemas.openxmlformats.org/officeDocument/2006/relationships": (
            b"http://purl.oclc.org/ooxml/officeDocument/relationships"
        ),
    }
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in source.namelist():
            content = source.read(name)
            for transitional, strict_namespace in namespaces.items():
                content = content.replace(transitional, strict_namespace)
            archive.writestr(name, content)
    return out.getvalue()


def test_a_strict_open_xml_document_is_read_as_a_transitional_one() -> None:
    document = Document()
    document.add_heading("Договор поставки", level=1)
    document.add_paragraph("Поставщик обязуется поставить товар.", style="List Number")
    document.add_table(rows=1, cols=2).cell(0, 1).text = "Цена"
    out = io.BytesIO()
    document.save(out)
    transitional = extract_document(out.getvalue(), "t.docx", None, 10_000)
    read = extract_document(strict(out.getvalue()), "strict.docx", None, 10_000)
    assert read.text == transitional.text
    assert "# Договор поставки" in read.text and "1. Поставщик обязуется" in read.text and "| Цена |" in read.text


class Trickle(io.RawIOBase):
    """A stream that hands out a few bytes at a time, whatever is asked for."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.step = data, step

    def read(self, size: int = -1) -> bytes:
        chunk, self.data = self.data[: self.step], self.data[self.step :]
        return chunk


@pytest.mark.parametrize("step", [1, 7, 40, 1000])
def test_strict_namespaces_cut_between_reads_are_still_translated(step: int) -> None:
    from pomogator.services.files.docx import _Transitional

    strict_xml = b'<w:document xmlns:w="http://purl.oclc.org/ooxml/wordprocessingml/main"><w:body/></w:document>'
    stream = _Transitional(cast(IO[bytes], Trickle(strict_xml * 3, step)))
    chunks = iter(lambda: stream.read(64), b"")
    assert (
        b"".join(chunks)
        == strict_xml.replace(
            b"http://purl.oclc.org/ooxml/wordprocessingml/main",
            b"http://schemas.openxmlformats.org/wordprocessingml/2006/main",
        )
        * 3
    )
