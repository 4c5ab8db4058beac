"""The pictures of a DOCX as images for a model that sees; every document is built here with python-docx."""

from __future__ import annotations

import base64
import io
import zipfile
from typing import Any

import pytest
from docx import Document
from PIL import Image

from pomogator.bot import files_texts
from pomogator.errors import ImagesTooLarge, UnsupportedFile
from pomogator.services.files import (
    MAX_DOCUMENT_PICTURES,
    MAX_REQUEST_MEDIA_BYTES,
    ExtractedDocument,
    document_content,
    document_prompt,
    extract_document,
    fit_pictures,
    media_bytes,
    pictures,
    read_document,
)


def picture(
    width: int, height: int, color: str | tuple[int, int, int] = "red", image_format: str = "PNG"
) -> io.BytesIO:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, image_format)
    out.seek(0)
    return out


def docx(*content: str | io.BytesIO, header_picture: io.BytesIO | None = None) -> bytes:
    """A document of paragraphs (strings) and pictures, in this order."""
    document = Document()
    for item in content:
        if isinstance(item, str):
            document.add_paragraph(item)
        else:
            document.add_picture(item)
    if header_picture is not None:
        document.sections[0].header.paragraphs[0].add_run().add_picture(header_picture)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def with_member(data: bytes, name: str, content: bytes) -> bytes:
    """``data`` (a zip) with the member ``name`` holding ``content`` instead."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for member in source.infolist():
            target.writestr(member, content if member.filename == name else source.read(member))
    return out.getvalue()


def media(data: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return sorted(name for name in archive.namelist() if name.startswith("word/media/"))


def decoded(part: dict[str, Any]) -> Image.Image:
    url = part["image_url"]["url"]
    assert url.startswith("data:image/")
    return Image.open(io.BytesIO(base64.b64decode(url.partition(",")[2])))


def colors(doc: ExtractedDocument) -> list[tuple[int, ...]]:
    found = []
    for part in doc.pictures:
        pixel = decoded(part).convert("RGB").getpixel((0, 0))
        assert isinstance(pixel, tuple)
        found.append(pixel)
    return found


RED, GREEN, BLUE = (255, 0, 0), (0, 128, 0), (0, 0, 255)


def test_the_pictures_go_with_the_text_in_document_order_for_a_model_that_sees() -> None:
    data = docx("Схема:", picture(300, 200, "blue"), "Фото бланка:", picture(200, 300, "red"))
    doc = extract_document(data, "отчёт.docx", None, 10_000, vision=True)
    assert doc.text == "Схема:\n\nФото бланка:"
    assert colors(doc) == [BLUE, RED] and not doc.pictures_left_out
    prompt = document_prompt(doc, "Что на схеме?")
    assert "[Its 2 pictures follow as images, after the text, in the order of the file]" in prompt
    content = document_content(doc, data, "Что на схеме?")
    assert [part["type"] for part in content] == ["text", "image_url", "image_url"]


def test_document_order_is_the_order_of_the_references_in_the_body() -> None:
    data = docx("Раз", picture(300, 200, "blue"), "Два", picture(200, 300, "red"))
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        body = archive.read("word/document.xml").decode()
    first, second = (body.split('r:embed="', 2)[i].split('"', 1)[0] for i in (1, 2))
    reordered = body.replace(f'r:embed="{first}"', "FIRST").replace(f'r:embed="{second}"', f'r:embed="{first}"')
    reordered = reordered.replace("FIRST", f'r:embed="{second}"')
    doc = extract_document(
        with_member(data, "word/document.xml", reordered.encode()), "x.docx", None, 10_000, vision=True
    )
    assert colors(doc) == [RED, BLUE]


def test_a_model_that_cannot_see_gets_the_text_and_a_note_that_the_pictures_are_not_there() -> None:
    data = docx("Итоги квартала", picture(300, 200), picture(200, 300, "blue"))
    doc = extract_document(data, "отчёт.docx", None, 10_000)
    assert doc.text == "Итоги квартала" and doc.pictures == ()
    assert doc.pictures_left_out == ((1, "vision"), (2, "vision")) and doc.picture_count == 2
    assert "[The pictures of this file (2) are not available: only its text is]" in document_prompt(doc, None)
    assert files_texts.pictures_left_out(doc) == (
        "🖼 Картинки из «отчёт.docx» я пропустил: выбранная модель изображений не видит. "
        "Модель получит только текст документа. Сменить модель: /model."
    )
    assert extract_document(docx("Текст"), "t.docx", None, 1000).picture_count == 0


def test_a_document_of_pictures_alone_is_answered_by_a_model_that_sees_and_refused_by_one_that_cannot() -> None:
    data = docx(picture(600, 800, "white"), picture(600, 800, "blue"))
    doc = extract_document(data, "скан.docx", None, 10_000, vision=True)
    assert doc.text == "" and len(doc.pictures) == 2
    prompt = document_prompt(doc, "Что в документе?")
    assert prompt.startswith('<file name="скан.docx" attached="true" />\n\n[Its 2 pictures follow')
    with pytest.raises(UnsupportedFile) as caught:
        extract_document(data, "скан.docx", None, 10_000)
    assert caught.value.kind == "docx-images"


def test_decorative_pictures_are_skipped_unless_there_is_nothing_else() -> None:
    rule = picture(600, 4, "green")
    icon = picture(16, 16, "green")
    doc = extract_document(docx("Текст", rule, picture(300, 200), icon), "x.docx", None, 10_000, vision=True)
    assert colors(doc) == [RED] and doc.picture_count == 1
    blind = extract_document(docx("Текст", picture(20, 20)), "x.docx", None, 10_000)
    assert blind.picture_count == 0 and not blind.pictures_left_out
    alone = extract_document(docx(picture(20, 20, "green")), "x.docx", None, 10_000, vision=True)
    assert colors(alone) == [GREEN]


def test_a_picture_in_the_page_header_is_not_sent() -> None:
    data = docx("Письмо", picture(300, 200), header_picture=picture(400, 100, "blue"))
    assert len(media(data)) == 2
    doc = extract_document(data, "x.docx", None, 10_000, vision=True)
    assert colors(doc) == [RED]


def test_one_document_gives_at_most_the_cap_and_the_rest_are_named() -> None:
    shades = [picture(100 + number, 100, (number * 20, 0, 0)) for number in range(MAX_DOCUMENT_PICTURES + 2)]
    doc = extract_document(docx("Альбом", *shades), "альбом.docx", None, 10_000, vision=True)
    assert len(doc.pictures) == MAX_DOCUMENT_PICTURES
    assert doc.pictures_left_out == ((11, "count"), (12, "count"))
    assert "[Its 10 pictures follow as images, after the text, in the order of the file; pictures 11-12 of 12" in (
        document_prompt(doc, None)
    )
    assert files_texts.pictures_left_out(doc) == (
        "🖼 Не все картинки из «альбом.docx» дойдут до модели: картинки 11–12 — больше 10 картинок из одного "
        "документа я не передаю. Модель увидит 10 из 12 картинок."
    )


def test_vector_and_damaged_pictures_are_named_as_left_out() -> None:
    data = docx("Диаграммы", picture(300, 200), picture(200, 300, "blue"), picture(250, 250, "white"))
    first, second, _ = media(data)
    emf = b"\x01\x00\x00\x00" + b"\x00" * 36 + b" EMF" + b"\x00" * 64
    data = with_member(with_member(data, first, emf), second, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR broken")
    doc = extract_document(data, "x.docx", None, 10_000, vision=True)
    assert len(doc.pictures) == 1
    assert sorted(loss for _, loss in doc.pictures_left_out) == ["format", "unreadable"]
    notice = files_texts.pictures_left_out(doc)
    assert "модели не понимают" in notice and "прочитать не получилось" in notice
    assert notice.endswith("Модель увидит 1 из 3 картинок.")


def test_a_document_whose_only_pictures_cannot_be_read_is_refused() -> None:
    data = docx(picture(300, 200))
    [name] = media(data)
    emf = b"\x01\x00\x00\x00" + b"\x00" * 36 + b" EMF" + b"\x00" * 64
    with pytest.raises(UnsupportedFile) as caught:
        extract_document(with_member(data, name, emf), "x.docx", None, 10_000, vision=True)
    assert caught.value.kind == "docx-pictures"
    assert "В документе только картинки, и прочитать их не получилось" in files_texts.file_error(caught.value)


def test_pictures_are_shrunk_as_photos_are_and_bitmaps_converted() -> None:
    data = docx("Скриншот", picture(3000, 1000), picture(300, 200, "blue", "BMP"))
    doc = extract_document(data, "x.docx", None, 10_000, vision=True)
    big, bitmap = (decoded(part) for part in doc.pictures)
    assert big.size == (2048, 683)
    assert bitmap.format in ("PNG", "JPEG") and bitmap.size == (300, 200)


def test_a_picture_over_the_size_cap_is_left_out_unread(monkeypatch: pytest.MonkeyPatch) -> None:
    data = docx("Текст", picture(300, 200, "blue"), picture(1000, 1000))
    sizes = {name: zipfile.ZipFile(io.BytesIO(data)).getinfo(name).file_size for name in media(data)}
    monkeypatch.setattr(pictures, "MAX_PICTURE_BYTES", min(sizes.values()))
    doc = extract_document(data, "x.docx", None, 10_000, vision=True)
    assert colors(doc) == [BLUE] and doc.pictures_left_out == ((2, "unreadable"),)


def test_all_pictures_together_are_capped_unpacked_and_after_shrinking(monkeypatch: pytest.MonkeyPatch) -> None:
    data = docx("Текст", picture(300, 200), picture(300, 200, "blue"), picture(300, 200, "white"))
    one = max(zipfile.ZipFile(io.BytesIO(data)).getinfo(name).file_size for name in media(data))
    monkeypatch.setattr(pictures, "MAX_PICTURES_UNPACKED_BYTES", 2 * one)
    doc = extract_document(data, "x.docx", None, 10_000, vision=True)
    assert len(doc.pictures) == 2 and doc.pictures_left_out == ((3, "size"),)
    monkeypatch.setattr(pictures, "MAX_PICTURES_UNPACKED_BYTES", 100 * one)
    monkeypatch.setattr(pictures, "MAX_DOCUMENT_PICTURE_BYTES", media_bytes(doc.pictures[:1]))
    doc = extract_document(data, "x.docx", None, 10_000, vision=True)
    assert len(doc.pictures) == 1 and doc.pictures_left_out == ((2, "size"), (3, "size"))


def test_pictures_are_decoded_only_while_time_is_left(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pictures, "TIME_BUDGET_S", 0.0)
    data = docx("Текст", picture(300, 200), picture(300, 200, "blue"))
    doc = extract_document(data, "x.docx", None, 10_000, vision=True)
    assert colors(doc) == [RED] and doc.pictures_left_out == ((2, "time"),)


def test_the_pictures_that_do_not_fit_the_request_are_left_out_by_their_numbers() -> None:
    data = docx("Текст", picture(300, 200), picture(30, 30, "white"), picture(300, 200, "blue"), picture(300, 201))
    [name] = [name for name in media(data) if name.endswith("image2.png")]
    emf = b"\x01\x00\x00\x00" + b"\x00" * 36 + b" EMF" + b"\x00" * 64
    doc = extract_document(with_member(data, name, emf), "x.docx", None, 10_000, vision=True)
    assert doc.pictures_left_out == ((2, "format"),) and len(doc.pictures) == 3
    room = media_bytes(doc.pictures[:2])
    fitted = fit_pictures(doc, room)
    assert colors(fitted) == [RED, BLUE] and fitted.pictures_left_out == ((2, "format"), (4, "size"))
    assert fit_pictures(doc, media_bytes(doc.pictures)) is doc
    assert fit_pictures(doc, 0).pictures == ()
    notice = files_texts.pictures_left_out(fitted)
    assert "картинка 2 — формат (EMF, WMF" in notice and "картинка 4 — не хватило места" in notice


async def test_the_pictures_come_back_from_the_child_process() -> None:
    data = docx("Схема", picture(300, 200, "blue"), picture(300, 200))
    doc = await read_document(data, "x.docx", None, 10_000, vision=True)
    assert doc == extract_document(data, "x.docx", None, 10_000, vision=True)
    assert colors(doc) == [BLUE, RED]
    blind = await read_document(data, "x.docx", None, 10_000)
    assert blind.pictures_left_out == ((1, "vision"), (2, "vision"))


def test_a_document_gives_no_more_pictures_than_the_room_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    data = docx("Текст", picture(300, 200), picture(300, 200, "blue"), picture(300, 200, "white"))
    whole = extract_document(data, "x.docx", None, 10_000, vision=True)
    doc = extract_document(data, "x.docx", None, 10_000, vision=True, max_picture_bytes=media_bytes(whole.pictures[:2]))
    assert colors(doc) == [RED, BLUE] and doc.pictures_left_out == ((3, "size"),)
    # Once nothing more fits, the rest are left out without being decoded.
    decoded: list[str] = []
    part = pictures._part

    def counted(archive: zipfile.ZipFile, name: str, label: str) -> dict[str, Any] | None:
        decoded.append(name)
        return part(archive, name, label)

    monkeypatch.setattr(pictures, "_part", counted)
    none = extract_document(data, "x.docx", None, 10_000, vision=True, max_picture_bytes=0)
    assert none.text == "Текст" and none.pictures == () and decoded == []
    assert none.pictures_left_out == ((1, "size"), (2, "size"), (3, "size"))


def test_a_document_of_pictures_alone_without_room_for_any_is_too_large() -> None:
    data = docx(picture(600, 800, "white"), picture(600, 800, "blue"))
    sizes = [media_bytes([part]) for part in extract_document(data, "скан.docx", None, 10_000, vision=True).pictures]
    with pytest.raises(ImagesTooLarge) as caught:
        extract_document(data, "скан.docx", None, 10_000, vision=True, max_picture_bytes=min(sizes) - 1)
    assert (caught.value.size, caught.value.limit, caught.value.count) == (sum(sizes), min(sizes) - 1, 2)
    # The room left was smaller than a request's whole budget: the text says so, not that 20 MB were exceeded.
    told = files_texts.file_error(caught.value)
    assert told.startswith("🖼 Эти картинки вместе весят") and "осталось место только на" in told


async def test_the_room_for_pictures_reaches_the_child_process() -> None:
    data = docx("Схема", picture(300, 200, "blue"), picture(300, 200))
    room = media_bytes(extract_document(data, "x.docx", None, 10_000, vision=True).pictures[:1])
    doc = await read_document(data, "x.docx", None, 10_000, vision=True, max_picture_bytes=room)
    assert colors(doc) == [BLUE] and doc.pictures_left_out == ((2, "size"),)
    with pytest.raises(ImagesTooLarge) as caught:
        await read_document(docx(picture(300, 200)), "x.docx", None, 10_000, vision=True, max_picture_bytes=0)
    assert caught.value.limit == 0 and caught.value.count == 1 and caught.value.size > 0


def test_pictures_over_a_whole_requests_budget_are_told_so() -> None:
    told = files_texts.file_error(ImagesTooLarge(MAX_REQUEST_MEDIA_BYTES * 3 // 2, MAX_REQUEST_MEDIA_BYTES, 12))
    assert told.startswith("🖼 Эти картинки вместе слишком большие") and "20 МБ" in told
