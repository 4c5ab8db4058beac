"""Photos and files end to end: the real bot process against FakeTelegram and FakeLLM, with a small test catalog."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest
import pytest_asyncio
from aiogram import Bot
from aiogram.types import Message
from docx import Document
from pypdf import PdfReader, PdfWriter

from pomogator.bot import files_texts, texts
from pomogator.bot.answer.renderer import TYPING_EVERY
from pomogator.bot.attachments import attachment_of, attachment_request, download, downloader
from pomogator.bot.files_texts import FILE_QUESTION, IMAGE_QUESTION
from pomogator.errors import (
    DownloadFailed,
    FileTooComplex,
    FileTooLarge,
    ImagesTooLarge,
    NamedFileTooLarge,
    ScanTooLarge,
    ScanTooLong,
    UnpackedTooLarge,
    UnsupportedFile,
    VisionUnsupported,
)
from pomogator.llm.catalog import Model, load_catalog
from pomogator.llm.tokens import CHARS_PER_TOKEN, IMAGE_TOKENS, estimate_text
from pomogator.services.files import (
    MAX_DOCUMENTS_CHARS,
    MAX_DOWNLOAD_BYTES,
    MAX_IMAGE_BYTES,
    MAX_REQUEST_MEDIA_BYTES,
    MAX_SCAN_BYTES,
    ExtractedDocument,
    extract_document,
    media_bytes,
    read_document,
    truncation_note,
)
from pomogator.services.files import request as attachments
from pomogator.services.files.request import (
    MIN_DOCUMENT_CHARS,
    Attachment,
    AttachmentRequest,
    Prepared,
    fit_tokens,
    max_document_chars,
)
from tests.bot.harness import BotHarness
from tests.fakes.openai_server import RecordedRequest
from tests.fakes.openai_server import Reply as ModelReply
from tests.fakes.telegram_server import Call, SentMessage
from tests.services.test_files import (
    ENCRYPTED_DOCX,
    JPEG,
    blank_pdf,
    encrypt_pdf,
    make_pdf,
    make_png,
    make_zip,
    scanned_pdf,
)
from tests.services.test_files_isolated import HUGE_STREAM, shared_stream_pdf


def e2e(test: Callable[..., Any]) -> Callable[..., Any]:
    """A test against the module's running bot."""
    marked: Callable[..., Any] = pytest.mark.slow(pytest.mark.asyncio(loop_scope="module")(test))
    return marked


CATALOG = """
default = "test/vision"

[[models]]
id = "test/vision"
title = "Зоркая модель"
free_daily = 50
premium_daily = 100
vision = true
context_length = 128000

[[models]]
id = "test/blind"
title = "Незрячая модель"
free_daily = 50
premium_daily = 100
vision = false
context_length = 128000

[[models]]
id = "test/small"
title = "Маленькая модель"
free_daily = 50
premium_daily = 100
vision = true
context_length = 6000
max_output_tokens = 500
"""

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def harness(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotHarness]:
    workdir: Path = tmp_path_factory.mktemp("files")
    catalog = workdir / "models.toml"
    catalog.write_text(CATALOG, "utf-8")
    async with BotHarness.open(workdir, env={"POMOGATOR_MODELS_FILE": str(catalog)}) as h:
        yield h


async def choose_model(h: BotHarness, chat: int, model_id: str) -> None:
    async with h.services(models_file=h.workdir / "models.toml") as services:
        await services.users.ensure(chat)
        await services.users.set_model(chat, model_id)


async def use_up_quota(h: BotHarness, chat: int) -> None:
    async with h.services(models_file=h.workdir / "models.toml") as services:
        account = await services.users.ensure(chat)
        for _ in range(account.model.free_daily):
            await services.quota.reserve(chat, account.model, premium=False)


async def used_today(h: BotHarness, chat: int) -> int:
    async with h.services() as services:
        return sum((await services.quota.used_today(chat)).values())


async def answered(h: BotHarness, chat: int) -> RecordedRequest:
    """Wait for the model's answer to what the test just sent; return the request the model got."""
    before = h.llm.request_count
    await h.llm.wait_for_requests(before + 1, timeout=15)
    await h.tg.wait_for_message(chat, timeout=15)
    await h.settle()
    assert h.llm.request_count == before + 1
    return h.llm.requests[-1]


async def refused(h: BotHarness, chat: int) -> SentMessage:
    """Wait for the bot's one reply to what the test just sent, and check that nothing was asked or counted."""
    before = h.llm.request_count
    reply = await h.tg.wait_for_message(chat, timeout=15)
    await h.settle()
    assert h.llm.request_count == before
    assert len(h.tg.sent_messages(chat)) == 1
    assert await used_today(h, chat) == 0
    return reply


def user_parts(request: RecordedRequest) -> list[dict[str, Any]]:
    content = request.messages[-1]["content"]
    assert request.messages[-1]["role"] == "user"
    return content if isinstance(content, list) else [{"type": "text", "text": content}]


def make_picture(color: str, width: int = 300, height: int = 200) -> io.BytesIO:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    out.seek(0)
    return out


def docx_with_pictures(paragraph: str | None, colors: list[str]) -> bytes:
    """A document of one paragraph (if any), then a picture of each of ``colors``."""
    document = Document()
    if paragraph is not None:
        document.add_paragraph(paragraph)
    for color in colors:
        document.add_picture(make_picture(color))
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def first_pixel(url: str) -> tuple[int, ...]:
    from PIL import Image

    pixel = Image.open(io.BytesIO(base64.b64decode(url.partition(",")[2]))).convert("RGB").getpixel((0, 0))
    assert isinstance(pixel, tuple)
    return pixel


def make_docx(paragraphs: list[str]) -> bytes:
    document = Document()
    document.add_heading("Отчёт за квартал", level=1)
    for text in paragraphs:
        document.add_paragraph(text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


# --- documents that reach the model ---------------------------------------------------------------------------


@e2e
async def test_a_text_file_with_a_caption_reaches_the_model_as_text(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    h.tg.user_document(
        chat, "Список покупок:\nмолоко\nхлеб\n".encode(), "покупки.txt", "text/plain", caption="Что купить?"
    )
    text = (await answered(h, chat)).last_user_text
    assert 'name="покупки.txt"' in text
    assert "молоко\nхлеб" in text
    assert text.endswith("Что купить?")
    assert await used_today(h, chat) == 1


@e2e
async def test_a_file_that_no_longer_fits_the_context_is_told_once_after_the_answer(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    name = "отчёт <2026>.txt"
    h.llm.enqueue(ModelReply(text="Прочитал."))
    h.tg.user_document(chat, ("строка отчёта\n" * 1500).encode(), name, "text/plain", caption="Прочитай")
    assert 'name="отчёт &lt;2026&gt;.txt"' in (await answered(h, chat)).last_user_text
    # Some 7000 tokens: the small model's 5500 cannot take them beside the next question.
    await choose_model(h, chat, "test/small")
    after = h.last_message_id(chat)
    h.tg.user_message(chat, "А что в нём?")
    request = await answered(h, chat)
    assert "строка отчёта" not in str(request.messages)
    sent = h.messages_after(chat, after)
    assert [m.text for m in sent if m.from_bot] == [
        "Echo: А что в нём?",
        f"ℹ️ Файл «{name}» больше не помещается в контекст модели вместе с перепиской, и модель его уже не видит. "
        "Чтобы спросить о нём, пришлите его снова или очистите контекст: /delete_context.",
    ]
    assert sent[-1].html == files_texts.files_forgotten([name])
    # Told once: the next answer comes alone.
    after = h.last_message_id(chat)
    h.tg.user_message(chat, "А ещё?")
    await answered(h, chat)
    assert [m.text for m in h.messages_after(chat, after) if m.from_bot] == ["Echo: А ещё?"]


@e2e
async def test_a_file_sent_in_reply_goes_with_the_text_it_replies_to(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    h.tg.user_message(chat, "Бюджет: 1000 рублей")
    await answered(h, chat)
    replied_to = max(h.tg.chats[chat].messages)  # the bot's answer
    h.tg.user_document(
        chat,
        "молоко\nхлеб\n".encode(),
        "покупки.txt",
        "text/plain",
        caption="Хватит?",
        reply_to_message_id=replied_to,
    )
    text = (await answered(h, chat)).last_user_text
    assert text.endswith("Хватит?")
    # The answer replied to (the fake model echoes the question) goes with the question, as a quote.
    question = text.split("</file>")[-1].strip()
    assert question.startswith("> ") and "Бюджет: 1000 рублей" in question


@e2e
async def test_a_cp1251_csv_is_decoded(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    h.tg.user_document(chat, "город;население\nМосква;13 млн\n".encode("cp1251"), "города.csv", "text/csv")
    text = (await answered(h, chat)).last_user_text
    assert "Москва;13 млн" in text
    assert text.endswith(FILE_QUESTION)


@e2e
async def test_a_pdf_text_layer_reaches_the_model(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    pdf = make_pdf(["Invoice number 4711", "Total: 99 EUR"])
    h.tg.user_document(chat, pdf, "invoice.pdf", "application/pdf", caption="Сколько платить?")
    request = await answered(h, chat)
    text = request.last_user_text
    assert 'name="invoice.pdf"' in text
    assert "Invoice number 4711" in text and "Total: 99 EUR" in text
    assert text.endswith("Сколько платить?")
    assert all(part["type"] == "text" for part in user_parts(request))


@e2e
async def test_a_pdf_without_text_goes_to_the_model_as_a_file(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    h.tg.user_document(chat, blank_pdf(), "scan.pdf", "application/pdf", caption="Прочитай скан")
    parts = user_parts(await answered(h, chat))
    files = [part for part in parts if part["type"] == "file"]
    assert len(files) == 1
    assert files[0]["file"]["filename"] == "scan.pdf"
    assert files[0]["file"]["file_data"].startswith("data:application/pdf;base64,")


@e2e
async def test_a_docx_with_a_caption_reaches_the_model_as_text(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    data = make_docx(["Выручка выросла на 12 процентов.", "Расходы не изменились."])
    h.tg.user_document(chat, data, "отчёт.docx", DOCX, caption="Итоги одним предложением")
    text = (await answered(h, chat)).last_user_text
    assert 'name="отчёт.docx"' in text
    assert "# Отчёт за квартал" in text and "Выручка выросла на 12 процентов." in text
    assert text.endswith("Итоги одним предложением")


@e2e
async def test_the_pictures_of_a_docx_reach_a_vision_model_as_images_in_document_order(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    data = docx_with_pictures("Схема подключения и фото бланка.", ["blue", "red"])
    h.tg.user_document(chat, data, "схема.docx", DOCX, caption="Что на схеме?")
    request = await answered(h, chat)
    assert [first_pixel(url) for url in request.image_urls] == [(0, 0, 255), (255, 0, 0)]
    text = request.last_user_text
    assert "Схема подключения и фото бланка." in text and "[Its 2 pictures follow as images" in text
    assert [part["type"] for part in user_parts(request)] == ["text", "image_url", "image_url"]
    assert not any((m.text or "").startswith("🖼") for m in h.tg.sent_messages(chat))


@e2e
async def test_a_docx_of_pictures_alone_is_answered_by_a_vision_model(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    h.tg.user_document(chat, docx_with_pictures(None, ["white"]), "скан.docx", DOCX, caption="Что тут написано?")
    request = await answered(h, chat)
    assert len(request.image_urls) == 1
    assert request.last_user_text.startswith('<file name="скан.docx" attached="true" />')
    assert await used_today(h, chat) == 1


@e2e
async def test_a_model_that_cannot_see_answers_the_text_of_a_docx_and_says_its_pictures_were_not_read(
    harness: BotHarness,
) -> None:
    h = harness
    chat = h.new_chat()
    await choose_model(h, chat, "test/blind")
    h.tg.user_document(chat, docx_with_pictures("Выручка выросла.", ["blue"]), "отчёт.docx", DOCX)
    request = await answered(h, chat)
    assert request.model == "test/blind" and not request.image_urls
    assert "Выручка выросла." in request.last_user_text
    assert "[The pictures of this file (1) are not available: only its text is]" in request.last_user_text
    assert h.tg.sent_messages(chat)[0].text == (
        "🖼 Картинки из «отчёт.docx» я пропустил: выбранная модель изображений не видит. "
        "Модель получит только текст документа. Сменить модель: /model."
    )
    assert await used_today(h, chat) == 1


@e2e
async def test_a_docx_of_pictures_alone_is_refused_for_a_model_that_cannot_see(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    await choose_model(h, chat, "test/blind")
    h.tg.user_document(chat, docx_with_pictures(None, ["white"]), "скан.docx", DOCX)
    text = (await refused(h, chat)).text or ""
    assert "В документе только картинки, а выбранная модель изображений не видит" in text and "/model" in text
    assert files_texts.ACCEPTED not in text


@e2e
async def test_documents_of_an_album_are_one_request(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    h.tg.user_document(chat, b"alpha text", "a.txt", "text/plain", caption="Сравни", media_group_id="docs-1")
    h.tg.user_document(chat, b"beta text", "b.md", "text/markdown", media_group_id="docs-1")
    text = (await answered(h, chat)).last_user_text
    assert text.index('name="a.txt"') < text.index("alpha text") < text.index('name="b.md"') < text.index("beta")
    assert text.endswith("Сравни")
    assert await used_today(h, chat) == 1


@e2e
async def test_an_album_is_answered_without_the_file_that_cannot_be_read(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    h.tg.user_document(chat, b"alpha text", "a.txt", "text/plain", caption="Сравни", media_group_id="docs-2")
    h.tg.user_document(chat, b"%PDF-1.4 broken", "broken.pdf", "application/pdf", media_group_id="docs-2")
    h.tg.user_document(chat, b"beta text", "b.txt", "text/plain", media_group_id="docs-2")
    text = (await answered(h, chat)).last_user_text
    assert "alpha text" in text and "beta text" in text
    assert "broken.pdf" not in text
    notice = h.tg.sent_messages(chat)[0].text or ""
    assert notice.startswith("Файл «broken.pdf» повреждён") and notice.endswith("Отвечаю на остальное.")
    assert await used_today(h, chat) == 1


@e2e
async def test_an_album_is_answered_without_the_file_over_the_limit_which_is_not_downloaded(
    harness: BotHarness,
) -> None:
    h = harness
    chat = h.new_chat()
    downloads = len(h.tg.calls_of("getFile"))
    h.tg.user_document(chat, b"alpha text", "a.txt", "text/plain", caption="Сравни", media_group_id="docs-big")
    h.tg.user_document(chat, b"beta text", "b.txt", "text/plain", media_group_id="docs-big")
    h.tg.user_document(chat, b"%PDF-1.4", "c.pdf", "application/pdf", media_group_id="docs-big", file_size=25 << 20)
    text = (await answered(h, chat)).last_user_text
    assert "alpha text" in text and "beta text" in text and "c.pdf" not in text
    notice = h.tg.sent_messages(chat)[0].text or ""
    assert notice == files_texts.unreadable_parts([NamedFileTooLarge("c.pdf", 25 << 20, MAX_DOWNLOAD_BYTES)])
    assert notice.startswith("📦 Файл «c.pdf» слишком большой (25 МБ)")
    assert len(h.tg.calls_of("getFile")) == downloads + 2
    assert await used_today(h, chat) == 1


@e2e
async def test_an_album_whose_other_file_cannot_be_read_is_refused_for_the_file_over_the_limit(
    harness: BotHarness,
) -> None:
    h = harness
    chat = h.new_chat()
    h.tg.user_document(chat, b"%PDF-1.4", "c.pdf", "application/pdf", media_group_id="docs-none", file_size=25 << 20)
    h.tg.user_document(chat, b"%PDF-1.4 broken", "broken.pdf", "application/pdf", media_group_id="docs-none")
    reply = await refused(h, chat)
    assert (reply.text or "").startswith("📦 Файл «c.pdf» слишком большой (25 МБ)")


@e2e
async def test_an_album_for_a_model_that_cannot_see_is_answered_without_its_photos(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    await choose_model(h, chat, "test/blind")
    downloads = len(h.tg.calls_of("getFile"))
    h.tg.user_photo(chat, JPEG, caption="Что в отчёте?", media_group_id="blind-mixed")
    h.tg.user_document(chat, b"quarterly report", "report.txt", "text/plain", media_group_id="blind-mixed")
    request = await answered(h, chat)
    assert request.model == "test/blind" and not request.image_urls
    assert "quarterly report" in request.last_user_text and request.last_user_text.endswith("Что в отчёте?")
    notice = h.tg.sent_messages(chat)[0].text or ""
    assert notice == files_texts.skipped_parts(["vision"])
    assert len(h.tg.calls_of("getFile")) == downloads + 1
    assert await used_today(h, chat) == 1


@e2e
async def test_an_album_of_files_none_of_which_can_be_read_is_refused(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    h.tg.user_document(chat, b"%PDF-1.4 broken", "one.pdf", "application/pdf", media_group_id="docs-3")
    h.tg.user_document(chat, b"%PDF-1.4 broken too", "two.pdf", "application/pdf", media_group_id="docs-3")
    reply = await refused(h, chat)
    assert (reply.text or "").startswith("Файл «one.pdf» повреждён")


@e2e
async def test_a_long_file_is_cut_to_the_model_context_with_a_note(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    await choose_model(h, chat, "test/small")
    whole = "\n".join(f"Строка {i}: немного текста для проверки." for i in range(2000))
    h.tg.user_document(chat, whole.encode(), "long.txt", "text/plain")
    request = await answered(h, chat)
    text = request.last_user_text
    assert request.model == "test/small"
    assert "Строка 0:" in text and "Строка 1999:" not in text
    assert "[The file was cut to fit the model's context" in text
    assert len(text) < 6000 * 3
    first = h.tg.sent_messages(chat)[0].text or ""
    assert first.startswith("✂️ «long.txt» не помещается") and f"из {files_texts.number(len(whole))}" in first


@e2e
async def test_a_pdf_over_the_page_cap_is_not_said_to_be_too_long_for_the_model(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    slides = make_pdf([f"Slide {n}" for n in range(1, 601)])
    h.tg.user_document(chat, slides, "slides.pdf", "application/pdf")
    text = (await answered(h, chat)).last_user_text
    assert "Slide 500" in text and "Slide 501" not in text
    assert "cut to fit the model's context" not in text and "the reader's page limit" in text
    notice = h.tg.sent_messages(chat)[0].text or ""
    assert notice.startswith("✂️ «slides.pdf» я прочитал не целиком: больше 500 страниц за раз я не читаю.")
    assert "с первых 500 из 600 страниц" in notice and "контекст" not in notice


@e2e
async def test_an_empty_file_is_refused_before_the_model_is_asked(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    h.tg.user_document(chat, b"  \n\r\n \t\n", "notes.txt", "text/plain", caption="Что тут?")
    assert (await refused(h, chat)).text == "📭 Файл «notes.txt» пустой — в нём нет текста."
    other = h.new_chat()
    h.tg.user_document(other, blank_pdf(0), "nothing.pdf", "application/pdf")
    assert (await refused(h, other)).text == "📭 Файл «nothing.pdf» пустой — в нём нет текста."


@e2e
async def test_an_album_is_answered_without_its_empty_file(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    h.tg.user_document(chat, b"alpha text", "a.txt", "text/plain", caption="Сравни", media_group_id="docs-empty")
    h.tg.user_document(chat, b"\n\n", "blank.txt", "text/plain", media_group_id="docs-empty")
    text = (await answered(h, chat)).last_user_text
    assert "alpha text" in text and "blank.txt" not in text
    notice = h.tg.sent_messages(chat)[0].text or ""
    assert notice.startswith("📭 Файл «blank.txt» пустой") and notice.endswith("Отвечаю на остальное.")
    assert await used_today(h, chat) == 1


@e2e
async def test_file_names_are_escaped_in_messages(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    h.tg.user_document(chat, b"%PDF-1.4 broken", "<b>bad</b>.pdf", "application/pdf")
    reply = await refused(h, chat)
    assert "<b>bad</b>.pdf" in (reply.text or "")
    assert not reply.entities


# --- photos -----------------------------------------------------------------------------------------------------


@e2e
async def test_a_photo_reaches_a_vision_model_as_an_image(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    h.tg.user_photo(chat, JPEG, caption="Что это за место?")
    request = await answered(h, chat)
    assert request.model == "test/vision"
    assert len(request.image_urls) == 1
    assert request.image_urls[0].startswith("data:image/jpeg;base64,")
    assert request.last_user_text == "Что это за место?"


@e2e
async def test_a_photo_without_a_caption_gets_the_default_question(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    h.tg.user_photo(chat, JPEG)
    assert (await answered(h, chat)).last_user_text == IMAGE_QUESTION


@e2e
async def test_an_image_sent_as_a_file_is_an_image(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    h.tg.user_document(chat, make_png(), "chart.png", "image/png", caption="Что на графике?")
    request = await answered(h, chat)
    assert len(request.image_urls) == 1
    assert request.image_urls[0].startswith("data:image/png;base64,")
    assert request.last_user_text == "Что на графике?"


@e2e
async def test_a_photo_for_a_model_without_vision_is_refused(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    await choose_model(h, chat, "test/blind")
    downloads = len(h.tg.calls_of("getFile"))
    h.tg.user_photo(chat, JPEG, caption="Что тут?")
    text = (await refused(h, chat)).text or ""
    assert "Незрячая модель" in text and "не видит изображения" in text
    assert "Зоркая модель" in text and "/model" in text
    assert len(h.tg.calls_of("getFile")) == downloads


def test_a_photo_refusal_names_the_free_models_that_see_first() -> None:
    catalog = load_catalog(None)
    blind = next(m for m in catalog.models if not m.vision)
    text = texts.vision_unsupported(VisionUnsupported(blind.id, []), catalog)
    free = [m.title for m in catalog.vision_models() if not m.premium_only]
    premium = [m.title for m in catalog.vision_models() if m.premium_only]
    assert free and premium
    assert max(text.index(title) for title in free) < min(text.index(title) for title in premium)
    assert all(f"{title} 🔒" in text for title in premium) and "🔒 — только с премиумом" in text


# --- refusals ---------------------------------------------------------------------------------------------------


@e2e
async def test_a_file_over_the_download_limit_is_refused_before_downloading(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    downloads = len(h.tg.calls_of("getFile"))
    h.tg.user_document(chat, b"x", "big.pdf", "application/pdf", file_size=MAX_DOWNLOAD_BYTES + 5 * 1024 * 1024)
    text = (await refused(h, chat)).text or ""
    assert "слишком большой" in text and "25 МБ" in text and "20 МБ" in text
    assert len(h.tg.calls_of("getFile")) == downloads


@e2e
async def test_get_file_saying_too_big_is_the_same_refusal(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    h.tg.fail_next("getFile", description="Bad Request: file is too big")
    h.tg.user_document(chat, b"hello", "notes.txt", "text/plain")
    text = (await refused(h, chat)).text or ""
    assert "слишком большой" in text and "20 МБ" in text


@e2e
@pytest.mark.parametrize(
    ("data", "name", "mime", "expected"),
    [
        (b"%PDF-1.4\nthis is not really a pdf", "broken.pdf", "application/pdf", "повреждён"),
        (encrypt_pdf(make_pdf(["secret"]), "password", "owner"), "locked.pdf", "application/pdf", "паролем"),
        (ENCRYPTED_DOCX, "report.docx", DOCX, "паролем"),
        (make_zip({"a.txt": b"inside"}), "files.zip", "application/zip", "Архивы"),
        (b"\x7fELF\x02\x01\x01" + b"\x00" * 64, "tool", "application/octet-stream", "исполняемые"),
    ],
    ids=["corrupt-pdf", "encrypted-pdf", "encrypted-docx", "zip", "executable"],
)
async def test_files_the_bot_cannot_read_get_a_clear_message(
    harness: BotHarness, data: bytes, name: str, mime: str, expected: str
) -> None:
    h = harness
    chat = h.new_chat()
    h.tg.user_document(chat, data, name, mime, caption="Прочитай")
    text = (await refused(h, chat)).text or ""
    assert name in text and expected in text


@e2e
@pytest.mark.parametrize("send", ["sticker", "voice", "location"])
async def test_other_messages_are_told_what_the_bot_accepts(harness: BotHarness, send: str) -> None:
    h = harness
    chat = h.new_chat()
    senders: dict[str, Callable[[int], object]] = {
        "sticker": h.tg.user_sticker,
        "voice": h.tg.user_voice,
        "location": h.tg.user_location,
    }
    senders[send](chat)
    reply = await refused(h, chat)
    assert reply.text == texts.NOT_TEXT
    assert "фотографии и файлы" in (reply.text or "")


# --- texts forwarded with files ----------------------------------------------------------------------------------


def anna() -> dict[str, Any]:
    return {"type": "hidden_user", "date": 1_700_000_000, "sender_user_name": "Анна"}


def forward_document(h: BotHarness, chat: int, data: bytes, name: str, mime: str) -> None:
    stored = h.tg._store_file(data, "documents", "." + name.rsplit(".", 1)[-1])
    document = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id, "file_name": name}
    h.tg._user_message(
        chat,
        user_id=None,
        first_name="Test",
        chat_type="private",
        kind="document",
        media={"document": {**document, "mime_type": mime}, "forward_origin": anna()},
    )


def forward_photo(h: BotHarness, chat: int, data: bytes) -> None:
    stored = h.tg._store_file(data, "photos", ".jpg")
    media = {"photo": h.tg._photo_sizes(stored), "forward_origin": anna()}
    h.tg._user_message(chat, user_id=None, first_name="Test", chat_type="private", kind="photo", media=media)


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@e2e
async def test_texts_forwarded_with_a_file_the_bot_cannot_read_are_answered(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    h.tg.user_message(chat, "Вот цены на этот год", extra={"forward_origin": anna()})
    forward_document(h, chat, make_zip({"xl/workbook.xml": b"<workbook/>"}), "prices.xlsx", XLSX)
    h.tg.user_message(chat, "Дорого, как думаешь?", extra={"forward_origin": anna()})
    request = await answered(h, chat)
    assert request.last_user_text == "Вот цены на этот год\n\nДорого, как думаешь?"
    notice = h.tg.sent_messages(chat)[0].text or ""
    assert notice.startswith("Не могу прочитать «prices.xlsx». Таблицы Excel я пока не читаю")
    assert notice.endswith("Отвечаю на остальное.")
    assert await used_today(h, chat) == 1


@e2e
async def test_texts_forwarded_with_a_photo_are_answered_by_a_model_that_cannot_see(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    await choose_model(h, chat, "test/blind")
    downloads = len(h.tg.calls_of("getFile"))
    h.tg.user_message(chat, "Смотри, что я нашла", extra={"forward_origin": anna()})
    forward_photo(h, chat, JPEG)
    h.tg.user_message(chat, "Брать?", extra={"forward_origin": anna()})
    request = await answered(h, chat)
    assert request.model == "test/blind" and not request.image_urls
    assert request.last_user_text == "Смотри, что я нашла\n\nБрать?"
    notice = h.tg.sent_messages(chat)[0].text or ""
    assert notice.startswith("🖼 Картинки из присланного я пропустил: выбранная модель изображений не видит.")
    assert len(h.tg.calls_of("getFile")) == downloads
    assert await used_today(h, chat) == 1


# --- downloads that fail -----------------------------------------------------------------------------------------


def lose_file(h: BotHarness, data: bytes) -> None:
    """Telegram's file server stops handing out the file holding ``data`` (it answers 404)."""
    stored = next(stored for stored in h.tg.files.values() if stored.data == data)
    del h.tg.files_by_path[stored.file_path]


@e2e
async def test_a_file_that_cannot_be_downloaded_is_asked_for_again(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    h.tg.user_document(chat, b"lost notes 1", "notes.txt", "text/plain")
    lose_file(h, b"lost notes 1")
    reply = await refused(h, chat)
    assert reply.text == "📥 Не удалось скачать «notes.txt» из Telegram — пришлите его ещё раз."


@e2e
async def test_an_album_is_answered_without_the_file_that_could_not_be_downloaded(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    h.tg.user_document(chat, b"alpha text", "a.txt", "text/plain", caption="Сравни", media_group_id="docs-lost")
    h.tg.user_document(chat, b"lost beta 2", "b.txt", "text/plain", media_group_id="docs-lost")
    lose_file(h, b"lost beta 2")
    text = (await answered(h, chat)).last_user_text
    assert "alpha text" in text and 'name="b.txt"' not in text
    notice = h.tg.sent_messages(chat)[0].text or ""
    assert notice == "📥 Не удалось скачать «b.txt» из Telegram — пришлите его ещё раз.\n\nОтвечаю на остальное."
    assert await used_today(h, chat) == 1


@e2e
async def test_a_file_telegram_does_not_hand_out_is_asked_for_again(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    h.tg.user_document(chat, b"withheld notes 1", "notes.txt", "text/plain")
    h.tg.withhold_file(b"withheld notes 1")
    reply = await refused(h, chat)
    assert reply.text == "📥 Не удалось скачать «notes.txt» из Telegram — пришлите его ещё раз."


@e2e
async def test_an_album_is_answered_without_the_photo_telegram_does_not_hand_out(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    withheld = make_picture("teal").getvalue()
    offset = h.bot.log_size()
    h.tg.user_photo(chat, JPEG, caption="Сравни", media_group_id="photos-withheld")
    h.tg.user_photo(chat, withheld, media_group_id="photos-withheld")
    h.tg.withhold_file(withheld)
    request = await answered(h, chat)
    assert len(request.image_urls) == 1 and request.image_urls[0].startswith("data:image/jpeg;base64,")
    notice = h.tg.sent_messages(chat)[0].text or ""
    assert notice == "📥 Не удалось скачать «фото» из Telegram — пришлите его ещё раз.\n\nОтвечаю на остальное."
    assert await used_today(h, chat) == 1
    assert "Traceback" not in h.bot.log_since(offset)


class TimingOutBot:
    async def download(self, file_id: str, timeout: int) -> None:  # noqa: ASYNC109 - aiogram's signature
        raise TimeoutError


async def test_a_download_that_times_out_is_download_failed() -> None:
    attachment = Attachment("f", "report.pdf", 1000, "application/pdf", photo=False)
    with pytest.raises(DownloadFailed) as caught:
        await download(cast(Bot, TimingOutBot()), attachment)
    assert caught.value.filename == "report.pdf"


class FilesBot:
    """Serves each file by its id, as Telegram would."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    async def download(self, file_id: str, timeout: int) -> io.BytesIO:  # noqa: ASYNC109 - aiogram's signature
        return io.BytesIO(self.files[file_id])


def pdf_message(file_id: str, size: int, **fields: Any) -> Message:
    document = {"file_id": file_id, "file_unique_id": file_id, "file_name": f"{file_id}.pdf", "file_size": size}
    return message(document={**document, "mime_type": "application/pdf"}, **fields)


async def read_scans(
    monkeypatch: pytest.MonkeyPatch, sizes: dict[str, int], model_id: str | None = None
) -> tuple[Prepared, AttachmentRequest]:
    """An album of scans of ``sizes`` read for ``model_id`` (the default model), the reading left out: a scan of
    so many megabytes takes seconds to build."""

    async def as_scan(
        attachment: Attachment, data: bytes, max_chars: int, *, vision: bool, max_picture_bytes: int | None
    ) -> ExtractedDocument:
        return ExtractedDocument(filename=attachment.name, kind="pdf", text="", pages_total=1, needs_file_part=True)

    monkeypatch.setattr(attachments, "read_attachment", as_scan)
    catalog = load_catalog(None)
    model = catalog.get(model_id) if model_id else catalog.default
    album = [pdf_message(name, size, media_group_id="g") for name, size in sizes.items()]
    request = attachment_request(album, model, None, catalog)
    files = {name: b"%PDF-1.4 " + b"%" * size for name, size in sizes.items()}
    return await request.read(downloader(cast(Bot, FilesBot(files)))), request


def file_names(content: Any) -> list[str]:
    return [part["file"]["filename"] for part in content if part["type"] == "file"]


async def test_scans_of_one_request_share_one_byte_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    third = MAX_REQUEST_MEDIA_BYTES // 3
    prepared, _ = await read_scans(monkeypatch, {"a": third, "b": third, "c": third, "d": 1000})
    assert file_names(prepared.content) == ["a.pdf", "b.pdf", "d.pdf"]
    assert [(type(exc), exc.filename) for exc in prepared.unreadable] == [(ScanTooLarge, "c.pdf")]  # type: ignore[attr-defined]
    assert media_bytes(cast(list[dict[str, Any]], prepared.content)) <= MAX_REQUEST_MEDIA_BYTES
    notice = files_texts.unreadable_parts(prepared.unreadable)
    assert notice.startswith("📄 «c.pdf» — скан без текстового слоя") and "осталось место только на" in notice
    # One scan over its own cap is refused whatever the budget.
    with pytest.raises(ScanTooLarge) as caught:
        await read_scans(monkeypatch, {"huge": MAX_SCAN_BYTES + (1 << 20)})
    assert caught.value.limit == MAX_SCAN_BYTES
    assert "Он весит 16 МБ, а можно не больше 15 МБ" in files_texts.file_error(caught.value)


async def test_a_scan_is_refused_for_a_model_that_cannot_see(monkeypatch: pytest.MonkeyPatch) -> None:
    blind = next(m for m in load_catalog(None).models if not m.vision)
    with pytest.raises(UnsupportedFile) as caught:
        await read_scans(monkeypatch, {"scan": 1000}, blind.id)
    assert caught.value.kind == "scan"
    text = files_texts.file_error(caught.value)
    assert "скан без текстового слоя" in text and "/model" in text and files_texts.ACCEPTED not in text


async def test_a_partly_scanned_pdf_goes_whole_or_as_its_text_with_a_notice() -> None:
    catalog = load_catalog(None)
    cover = "Contract No. 17 between Alpha LLC and Beta LLC, with its annexes. " * 3
    data = scanned_pdf([f"text:{cover}", None, "3", None])
    bot = cast(Bot, FilesBot({"m": data}))
    seeing = await attachment_request([pdf_message("m", len(data))], catalog.default, None, catalog).read(
        downloader(bot)
    )
    assert file_names(seeing.content) == ["m.pdf"] and not seeing.without_scans
    blind = next(m for m in catalog.models if not m.vision)
    prepared = await attachment_request([pdf_message("m", len(data))], blind, None, catalog).read(downloader(bot))
    assert file_names(prepared.content) == [] and not prepared.unreadable
    text = cast(list[dict[str, Any]], prepared.content)[0]["text"]
    assert "Contract No. 17" in text and "[Pages 2-4 of this file are scanned images" in text
    [(doc, reason)] = prepared.without_scans
    assert files_texts.scanned_pages_left_out(doc, reason) == (
        "📄 В «m.pdf» страницы 2–4 — сканы без текстового слоя, и прочитать их не получится: выбранная модель "
        "изображений не видит (сменить модель: /model). Модель получит только текст файла, без картинок этих страниц."
    )


def slide_deck(titles: list[str]) -> bytes:
    """A PDF whose every page is a page-sized picture with its own title over it, as a presentation exported to PDF."""
    from PIL import Image

    picture = io.BytesIO()
    Image.new("L", (1280, 720), 230).save(picture, "PDF")
    writer = PdfWriter()
    for title in titles:
        page = writer.add_page(PdfReader(io.BytesIO(picture.getvalue())).pages[0])
        page.merge_page(PdfReader(io.BytesIO(make_pdf([title]))).pages[0])
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_one_scanned_page_left_out_is_told_in_the_singular() -> None:
    doc = ExtractedDocument(filename="a.pdf", kind="pdf", text="Договор", scanned_pages=(3,))
    assert files_texts.scanned_pages_left_out(doc, UnsupportedFile("a.pdf", "scan")) == (
        "📄 В «a.pdf» страница 3 — скан без текстового слоя, и прочитать её не получится: выбранная модель "
        "изображений не видит (сменить модель: /model). Модель получит только текст файла, без картинки этой страницы."
    )


async def test_a_slide_deck_too_long_to_go_whole_goes_as_its_text_with_a_notice() -> None:
    """Every slide is a picture with a one-line title: the PDF would go whole, but its pages do not fit the model."""
    catalog = load_catalog(None)
    assert catalog.default.vision
    data = slide_deck([f"Slide {number}: quarterly results" for number in range(1, 121)])
    bot = cast(Bot, FilesBot({"deck": data}))
    prepared = await attachment_request([pdf_message("deck", len(data))], catalog.default, None, catalog).read(
        downloader(bot)
    )
    assert file_names(prepared.content) == [] and not prepared.unreadable
    text = cast(list[dict[str, Any]], prepared.content)[0]["text"]
    assert "Slide 1: quarterly results" in text and "Slide 120: quarterly results" in text
    [(doc, reason)] = prepared.without_scans
    assert isinstance(reason, ScanTooLong)
    assert files_texts.scanned_pages_left_out(doc, reason) == (
        "📄 В «deck.pdf» страницы 1–120 — сканы без текстового слоя, и прочитать их не получится: целиком файл "
        "(120 страниц) выбранной модели за раз не прочитать. Модель получит только текст файла, без картинок этих "
        "страниц."
    )


async def test_a_tiff_sent_as_a_file_reaches_the_model_as_an_image() -> None:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (600, 400), "white").save(out, "TIFF")
    catalog = load_catalog(None)
    fax = message(
        document={"file_id": "t", "file_unique_id": "t", "file_name": "fax.tif", "mime_type": "image/tiff"},
        caption="Что тут?",
    )
    prepared = await attachment_request([fax], catalog.default, None, catalog).read(
        downloader(cast(Bot, FilesBot({"t": out.getvalue()})))
    )
    assert [part["type"] for part in cast(list[dict[str, Any]], prepared.content)] == ["text", "image_url"]


async def test_the_pictures_of_a_docx_share_the_request_media_budget_with_photos(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = docx_with_pictures("Отчёт", ["blue", "red", "white"])
    pictures = extract_document(data, "d.docx", None, 10_000, vision=True).pictures
    # Room for the photo and two of the document's three pictures.
    monkeypatch.setattr(attachments, "MAX_REQUEST_MEDIA_BYTES", len(JPEG) + media_bytes(pictures[:2]))
    catalog = load_catalog(None)
    photo = {"file_id": "p", "file_unique_id": "p", "width": 1, "height": 1, "file_size": len(JPEG)}
    document = {"file_id": "d", "file_unique_id": "d", "file_name": "d.docx", "mime_type": DOCX}
    album = [message(photo=[photo], media_group_id="g"), message(document=document, media_group_id="g")]
    prepared = await attachment_request(album, catalog.default, None, catalog).read(
        downloader(cast(Bot, FilesBot({"p": JPEG, "d": data})))
    )
    content = cast(list[dict[str, Any]], prepared.content)
    assert [part["type"] for part in content] == ["text", "image_url", "image_url", "image_url"]
    assert [first_pixel(part["image_url"]["url"]) for part in content[1:3]] == [(0, 0, 255), (255, 0, 0)]
    [doc] = prepared.without_pictures
    assert doc.pictures_left_out == ((3, "size"),)
    assert files_texts.pictures_left_out(doc) == (
        "🖼 Не все картинки из «d.docx» дойдут до модели: картинка 3 — не хватило места: картинок и сканов за раз "
        "можно не больше 20 МБ. Модель увидит 2 из 3 картинок."
    )
    assert "pictures 3 of 3 are not available" in content[0]["text"]


# --- the checks made before anything is downloaded ----------------------------------------------------------------


def message(**fields: Any) -> Message:
    return Message.model_validate({"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"}, **fields})


def test_a_document_without_a_name_is_called_a_file_in_russian() -> None:
    attachment = attachment_of(message(document={"file_id": "d", "file_unique_id": "d", "mime_type": "text/plain"}))
    assert attachment.name == files_texts.DOCUMENT_NAME == "файл"
    assert files_texts.file_error(DownloadFailed(attachment.name)).startswith("📥 Не удалось скачать «файл»")


def test_the_largest_photo_size_is_read() -> None:
    sizes = [
        {"file_id": f"size{n}", "file_unique_id": f"u{n}", "width": 80 * n, "height": 60 * n, "file_size": 1000 * n}
        for n in (1, 16, 4)
    ]
    attachment = attachment_of(message(photo=sizes))
    assert attachment.photo and attachment.file_id == "size16"


@pytest.mark.parametrize(
    ("fields", "kind", "named"),
    [
        ({"video": {"file_id": "v", "file_unique_id": "v", "width": 1, "height": 1, "duration": 1}}, "video", ""),
        (
            {
                "animation": {
                    "file_id": "a",
                    "file_unique_id": "a",
                    "width": 1,
                    "height": 1,
                    "duration": 1,
                    "file_name": "cat.mp4",
                },
                "document": {"file_id": "a", "file_unique_id": "a", "file_name": "cat.mp4"},
            },
            "video",
            "cat.mp4",
        ),
        ({"voice": {"file_id": "o", "file_unique_id": "o", "duration": 1}}, "audio", ""),
    ],
    ids=["video", "animation", "voice"],
)
def test_parts_that_are_not_photos_or_documents_are_refused(fields: dict[str, Any], kind: str, named: str) -> None:
    with pytest.raises(UnsupportedFile) as caught:
        attachment_of(message(media_group_id="g", **fields))
    assert caught.value.kind == kind
    assert caught.value.filename == named
    text = files_texts.file_error(caught.value)
    assert ("«" in text) == bool(named)


def test_documents_get_what_the_context_holds_after_the_answer_the_role_and_the_rest() -> None:
    model = load_catalog(None).default
    alone = max_document_chars(model, None, documents=1, images=0)
    tokens = model.context_length - model.max_output_tokens
    assert tokens * CHARS_PER_TOKEN // 2 < alone < tokens * CHARS_PER_TOKEN
    assert max_document_chars(model, "роль " * 2000, documents=1, images=0) < alone
    assert max_document_chars(model, None, documents=1, images=3) < alone
    # Each document of several may take all that is left: they share it once read.
    assert alone // 2 < max_document_chars(model, None, documents=2, images=0) < alone
    tiny = replace(model, context_length=600, max_output_tokens=500)
    assert max_document_chars(tiny, None, documents=1, images=0) == MIN_DOCUMENT_CHARS


def test_refusals_come_before_any_download() -> None:
    catalog = load_catalog(None)
    blind = next(m for m in catalog.models if not m.vision)
    photo = message(photo=[{"file_id": "p", "file_unique_id": "p", "width": 1, "height": 1}])
    with pytest.raises(VisionUnsupported) as caught:
        attachment_request([photo], blind, None, catalog)
    assert caught.value.vision_models == [m.id for m in catalog.vision_models()]
    huge = message(document={"file_id": "d", "file_unique_id": "d", "file_name": "a.txt", "file_size": 21 << 20})
    with pytest.raises(FileTooLarge):
        attachment_request([huge], catalog.default, None, catalog)


# --- limits: what a file may cost --------------------------------------------------------------------------------


@e2e
async def test_a_crafted_pdf_is_refused_as_too_complex_and_costs_nothing(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    h.tg.user_document(chat, shared_stream_pdf(200, HUGE_STREAM), "report.pdf", "application/pdf", caption="Что тут?")
    text = (await refused(h, chat)).text or ""
    assert "«report.pdf» слишком сложный" in text


@e2e
async def test_a_scan_is_measured_by_its_pages(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    await choose_model(h, chat, "test/small")  # 5500 tokens for the request: 3 scanned pages, not 4
    h.tg.user_document(chat, blank_pdf(5), "scan.pdf", "application/pdf")
    text = (await refused(h, chat)).text or ""
    assert "«scan.pdf» — скан без текстового слоя" in text
    assert "а в нём 5 страниц — столько ей за раз не прочитать (поместится около 3)" in text
    # The models that see files and would hold it are named: not the one that cannot see.
    assert "выберите модель, которая прочитает его целиком: Зоркая модель. Сменить модель: /model." in text
    assert "Незрячая" not in text and "как фото" in text
    h.tg.user_document(chat, blank_pdf(2), "short.pdf", "application/pdf")
    parts = user_parts(await answered(h, chat))
    assert [part["type"] for part in parts] == ["text", "file"]


@e2e
async def test_a_file_from_someone_out_of_requests_is_not_downloaded(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    await choose_model(h, chat, "test/small")
    await use_up_quota(h, chat)
    downloads = len(h.tg.calls_of("getFile"))
    requests = h.llm.request_count
    whole = "\n".join(f"Строка {i}: немного текста для проверки." for i in range(2000))
    h.tg.user_document(chat, whole.encode(), "long.txt", "text/plain")
    reply = await h.tg.wait_for_message(chat, timeout=15)
    await h.settle()
    assert "Маленькая модель" in (reply.text or "") and "✂️" not in (reply.text or "")
    assert len(h.tg.sent_messages(chat)) == 1
    assert len(h.tg.calls_of("getFile")) == downloads
    assert h.llm.request_count == requests


@e2e
async def test_an_image_file_of_fifteen_megabytes_is_read(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    h.tg.user_document(chat, make_png(), "photo.png", "image/png", file_size=15 * 1024 * 1024)
    request = await answered(h, chat)
    assert len(request.image_urls) == 1


@e2e
async def test_an_album_of_photos_and_a_video_answers_the_photos(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    h.tg.user_photo(chat, JPEG, caption="Сравни", media_group_id="mixed-1")
    h.tg.user_video(chat, "v1", media_group_id="mixed-1")
    request = await answered(h, chat)
    assert len(request.image_urls) == 1 and request.last_user_text == "Сравни"
    notice = h.tg.sent_messages(chat)[0].text or ""
    assert notice.startswith("🎬 Видео из присланного я пропустил") and "Отвечаю на остальное" in notice
    assert await used_today(h, chat) == 1


@e2e
async def test_typing_is_shown_all_the_while_a_file_downloads(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()

    def typing_calls() -> list[Call]:
        return [call for call in h.tg.calls_of("sendChatAction") if str(call.params.get("chat_id")) == str(chat)]

    def typing() -> int:
        return len(typing_calls())

    h.tg.hold("getFile")  # a big file: Telegram takes its time to hand it out
    try:
        h.tg.user_document(chat, b"quarterly report", "report.txt", "text/plain", caption="Кратко?")
        await h.tg.wait_until(lambda: typing() >= 2, 20, "typing sent again during the download")
    finally:
        h.tg.release("getFile")
    # Telegram shows a chat action for about five seconds: it is sent again before that runs out. The bound on the
    # gap seen here leaves room for a loaded machine; the interval itself is checked against those five seconds.
    first, second = typing_calls()[:2]
    assert second.time - first.time < TYPING_EVERY + 3.5
    assert TYPING_EVERY < 5
    assert (await answered(h, chat)).last_user_text.endswith("Кратко?")
    shown = typing()
    await asyncio.sleep(5)  # once the answer is there, the indicator stops
    assert typing() == shown


def test_documents_are_capped_whatever_the_context() -> None:
    huge = max(load_catalog(None).models, key=lambda model: model.context_length)
    assert huge.context_length >= 1_000_000
    assert max_document_chars(huge, None, documents=1, images=0) == MAX_DOCUMENTS_CHARS
    assert max_document_chars(huge, None, documents=4, images=0) == MAX_DOCUMENTS_CHARS


def test_a_pdf_cut_further_once_read_is_told_with_the_pages_left() -> None:
    page = "Revenue grew while costs stayed flat, and the board approved the plan. " * 40
    read = extract_document(make_pdf([page] * 30), "r.pdf", "application/pdf", 20 * len(page))
    assert (read.pages_read, read.pages_total, read.total_chars) == (20, 30, None)
    cut = fit_tokens(read, estimate_text(read.text) // 4)
    assert cut.pages_read is not None and cut.pages_read < 7 and f"--- page {cut.pages_read} ---" in cut.text
    assert f"с первых {cut.pages_read} из 30 страниц" in files_texts.document_cut(cut)


async def test_an_image_whose_name_hides_it_is_left_out_for_a_model_that_cannot_see() -> None:
    catalog = load_catalog(None)
    blind = next(m for m in catalog.models if not m.vision)
    hidden = {
        "file_id": "img",
        "file_unique_id": "img",
        "file_name": "IMG_1234",
        "mime_type": "application/octet-stream",
    }
    note = {"file_id": "note", "file_unique_id": "note", "file_name": "note.txt", "mime_type": "text/plain"}
    bot = cast(Bot, FilesBot({"img": JPEG, "note": b"Meeting at ten."}))
    album = [message(document=hidden, media_group_id="g"), message(document=note, media_group_id="g")]
    prepared = await attachment_request(album, blind, None, catalog).read(downloader(bot))
    assert "Meeting at ten." in cast(list[dict[str, Any]], prepared.content)[0]["text"]
    [refused] = prepared.unreadable
    assert isinstance(refused, UnsupportedFile) and refused.kind == "vision"
    with pytest.raises(UnsupportedFile) as caught:
        await attachment_request([message(document=hidden)], blind, None, catalog).read(downloader(bot))
    assert files_texts.file_error(caught.value) == (
        "Не могу прочитать «IMG_1234». Это картинка, а выбранная модель изображений не видит. "
        "Выберите модель, которая видит картинки: /model."
    )


def text_message(file_id: str) -> Message:
    document = {"file_id": file_id, "file_unique_id": file_id, "file_name": f"{file_id}.txt", "mime_type": "text/plain"}
    return message(document=document, media_group_id="g")


async def read_texts(texts: dict[str, str], model: Model) -> Prepared:
    catalog = load_catalog(None)
    bot = cast(Bot, FilesBot({name: text.encode() for name, text in texts.items()}))
    return await attachment_request([text_message(name) for name in texts], model, None, catalog).read(downloader(bot))


async def test_small_documents_leave_their_room_to_a_big_one_in_the_same_album() -> None:
    """A long contract with four short annexes: together they fit, so none is cut."""
    model = load_catalog(None).default
    contract = "The tenant pays the rent by the fifth day of each month. " * 3500
    annexes = {f"annex{n}": f"Annex {n}: the inventory of room {n}.\n" * 20 for n in range(4)}
    # Split evenly, as before they were read, it would have been cut to a fifth.
    assert len(contract) > max_document_chars(model, None, documents=5, images=0) // 5 * 3
    prepared = await read_texts({"contract": contract, **annexes}, model)
    text = cast(list[dict[str, Any]], prepared.content)[0]["text"]
    assert prepared.cut == [] and contract.strip() in text
    assert all(annex.strip() in text for annex in annexes.values())
    # When they do not fit, the big ones share what the small ones leave: each is cut to the same room.
    big = {"a": contract * 2, "b": contract * 2, "small": "A short note.\n"}
    prepared = await read_texts(big, model)
    assert sorted(doc.filename for doc in prepared.cut) == ["a.txt", "b.txt"]
    first, second = (len(doc.text) for doc in prepared.cut)
    assert abs(first - second) < 100 and "A short note." in cast(list[dict[str, Any]], prepared.content)[0]["text"]
    budget = max_document_chars(model, None, documents=3, images=0)
    assert first + second > budget * 0.9


async def test_a_document_cut_by_the_bots_own_cap_says_so_not_the_models_context() -> None:
    huge = max(load_catalog(None).models, key=lambda model: model.context_length)
    book = "The tenant pays the rent by the fifth day of each month.\n" * 10_000
    assert len(book) > MAX_DOCUMENTS_CHARS
    [cut] = (await read_texts({"book": book}, huge)).cut
    assert cut.stopped_by == "cap" and len(cut.text) <= MAX_DOCUMENTS_CHARS
    assert files_texts.document_cut(cut).startswith(
        "✂️ «book.txt» я прочитал не целиком: больше 400\xa0000 символов за раз я не читаю. Модель прочитает первые"
    )
    assert "the bot's limit, not the model's context" in (truncation_note(cut) or "")
    # Two long ones share the cap.
    prepared = await read_texts({"a": book[:300_000], "b": book[:300_000]}, huge)
    assert [doc.stopped_by for doc in prepared.cut] == ["cap", "cap"]
    assert sum(len(doc.text) for doc in prepared.cut) <= MAX_DOCUMENTS_CHARS


def test_numeric_text_is_cut_to_what_its_tokens_allow() -> None:
    rows = "".join(f"2024-01-{n % 28 + 1:02};{n * 17.31:.2f};{n * 3}\n" for n in range(3000))
    prose = "Выручка выросла, а расходы не изменились. " * 1500
    tokens = 10_000
    numeric = fit_tokens(ExtractedDocument(filename="a.csv", kind="csv", text=rows[: tokens * CHARS_PER_TOKEN]), tokens)
    assert numeric.truncated and estimate_text(numeric.text) <= tokens
    assert len(numeric.text) < tokens * CHARS_PER_TOKEN * 2 // 3
    # Prose keeps nearly all of what was read for it: its commas and full stops are few.
    text = prose[: tokens * CHARS_PER_TOKEN]
    kept = fit_tokens(ExtractedDocument(filename="a.txt", kind="text", text=text), tokens)
    assert len(kept.text) > len(text) * 0.9
    words = ExtractedDocument(filename="a.txt", kind="text", text="слово " * (tokens * CHARS_PER_TOKEN // 6 - 1))
    assert fit_tokens(words, tokens) is words


def document_message(name: str, mime: str, size: int) -> Message:
    return message(
        document={"file_id": "d", "file_unique_id": "d", "file_name": name, "mime_type": mime, "file_size": size}
    )


def test_image_files_are_checked_as_images_before_any_download() -> None:
    catalog = load_catalog(None)
    # Images are shrunk before they are sent: one as big as a bot may download is read.
    big = document_message("photo.png", "image/png", 15 << 20)
    assert attachment_request([big], catalog.default, None, catalog).attachments
    with pytest.raises(FileTooLarge) as caught:
        attachment_request([document_message("photo.png", "image/png", 21 << 20)], catalog.default, None, catalog)
    assert caught.value.limit == MAX_DOWNLOAD_BYTES == MAX_IMAGE_BYTES
    blind = next(m for m in catalog.models if not m.vision)
    with pytest.raises(VisionUnsupported):
        attachment_request([document_message("chart.png", "image/png", 1000)], blind, None, catalog)
    attachment_request([document_message("notes.txt", "text/plain", 15 << 20)], catalog.default, None, catalog)


def test_an_svg_is_read_as_text_even_by_a_model_that_cannot_see() -> None:
    catalog = load_catalog(None)
    blind = next(m for m in catalog.models if not m.vision)
    logo = document_message("logo.svg", "image/svg+xml", 1000)
    request = attachment_request([logo], blind, None, catalog)
    assert [a.name for a in request.attachments] == ["logo.svg"] and not request.attachments[0].image
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><text>\xd0\x9b\xd0\xbe\xd0\xb3\xd0\xbe</text></svg>'
    doc = extract_document(svg, "logo.svg", "image/svg+xml", 1000)
    assert doc.kind == "code" and "<text>Лого</text>" in doc.text


VIDEO = {"video": {"file_id": "v", "file_unique_id": "v", "width": 1, "height": 1, "duration": 1}}
PHOTO = {"photo": [{"file_id": "p", "file_unique_id": "p", "width": 1, "height": 1}]}


def test_an_album_leaves_out_what_the_bot_cannot_read() -> None:
    catalog = load_catalog(None)
    album = [message(media_group_id="g", caption="Сравни", **PHOTO), message(media_group_id="g", **VIDEO)]
    request = attachment_request(album, catalog.default, None, catalog)
    assert [a.file_id for a in request.attachments] == ["p"]
    assert [exc.kind for exc in request.skipped] == ["video"]
    assert request.question == "Сравни"
    with pytest.raises(UnsupportedFile) as caught:
        attachment_request([message(media_group_id="g", **VIDEO)] * 2, catalog.default, None, catalog)
    assert caught.value.kind == "video"
    # Forwarded with texts, the videos are left out and the texts go on alone.
    videos = [message(media_group_id="g", caption="Тексты", **VIDEO), message(media_group_id="g", **VIDEO)]
    request = attachment_request(videos, catalog.default, None, catalog, with_texts=True)
    assert (request.attachments, [exc.kind for exc in request.skipped]) == ([], ["video", "video"])


def test_a_file_over_the_limit_is_left_out_by_name_while_other_parts_remain() -> None:
    catalog = load_catalog(None)
    huge = {"file_id": "d", "file_unique_id": "d", "file_name": "video.mov.pdf", "file_size": 21 << 20}
    parts = [message(caption="Тексты", document=huge), message(**PHOTO)]
    for with_texts in (True, False):
        request = attachment_request(parts, catalog.default, None, catalog, with_texts=with_texts)
        assert [a.file_id for a in request.attachments] == ["p"]
        assert [getattr(exc, "filename", None) for exc in request.refused] == ["video.mov.pdf"]
    # Nothing else left: refused, unless forwarded texts can be answered.
    with pytest.raises(FileTooLarge):
        attachment_request([parts[0], message(**VIDEO)], catalog.default, None, catalog)
    assert not attachment_request(parts[:1], catalog.default, None, catalog, with_texts=True).attachments


def test_images_for_a_model_that_cannot_see_are_left_out_while_other_files_remain() -> None:
    catalog = load_catalog(None)
    blind = next(m for m in catalog.models if not m.vision)
    notes = message(document={"file_id": "n", "file_unique_id": "n", "file_name": "notes.txt", "file_size": 10})
    request = attachment_request([message(**PHOTO), notes], blind, None, catalog)
    assert [a.file_id for a in request.attachments] == ["n"]
    assert request.skipped_kinds == ["vision"]
    for parts in ([message(**PHOTO)] * 2, [message(**PHOTO), message(**VIDEO)]):
        with pytest.raises(VisionUnsupported):
            attachment_request(parts, blind, None, catalog)


def test_file_messages_say_what_happened() -> None:
    scan = files_texts.file_error(FileTooLarge(300_433, 278_784))
    assert "293 КБ" in scan and "272 КБ" in scan
    assert "1,04 МБ" in files_texts.file_error(FileTooLarge(int(1.04 * 1024 * 1024), 1024 * 1024))
    assert files_texts.size_and_limit(1025, 1024) == ("1\u00a0025 байт", "1\u00a0024 байт")
    long_scan = files_texts.file_error(ScanTooLong("<b>.pdf", 21, 0))
    assert "«&lt;b&gt;.pdf»" in long_scan and "в нём 21 страница — столько ей за раз не прочитать." in long_scan
    complex_file = files_texts.file_error(FileTooComplex("bomb.pdf"))
    assert "«bomb.pdf» слишком сложный" in complex_file
    assert files_texts.skipped_parts(["video", "video", "audio"]).count("пропустил") == 2
    over = files_texts.unreadable_parts([NamedFileTooLarge("big.pdf", 25 << 20, MAX_DOWNLOAD_BYTES)])
    assert over.startswith("📦 Файл «big.pdf» слишком большой (25 МБ)")
    unpacked = files_texts.file_error(UnpackedTooLarge("<b>.docx", 60 << 20, 50 << 20))
    assert unpacked.startswith("📦 «&lt;b&gt;.docx» в распакованном виде слишком большой") and "60 МБ" in unpacked
    # An old spreadsheet is not told to become a DOCX.
    legacy = files_texts.file_error(UnsupportedFile("prices.xls", "legacy-office"))
    assert "таблицу — как CSV" in legacy and "Сохраните документ как DOCX" not in legacy


# --- the pictures of several documents within one request's media budget -------------------------------------------


def docx_message(file_id: str) -> Message:
    document = {"file_id": file_id, "file_unique_id": file_id, "file_name": f"{file_id}.docx", "mime_type": DOCX}
    return message(document=document, media_group_id="g")


async def test_each_document_is_read_for_the_media_room_the_request_has_left(monkeypatch: pytest.MonkeyPatch) -> None:
    data = docx_with_pictures("Отчёт", ["blue", "red"])
    pictures = media_bytes(extract_document(data, "a.docx", None, 10_000, vision=True).pictures)
    budget = pictures + pictures // 4  # one document's pictures, and a little
    monkeypatch.setattr(attachments, "MAX_REQUEST_MEDIA_BYTES", budget)
    reads: list[tuple[int | None, int]] = []

    async def recorded(*args: Any, **kwargs: Any) -> ExtractedDocument:
        doc = await read_document(*args, **kwargs)
        reads.append((kwargs.get("max_picture_bytes"), media_bytes(doc.pictures)))
        return doc

    monkeypatch.setattr(attachments, "read_document", recorded)
    catalog = load_catalog(None)
    alone = docx_with_pictures(None, ["white"])
    album = [docx_message(name) for name in ("a", "b", "c", "d")]
    prepared = await attachment_request(album, catalog.default, None, catalog).read(
        downloader(cast(Bot, FilesBot({"a": data, "b": data, "c": data, "d": alone})))
    )
    # The first document takes its pictures; the others get what is left, which holds none of theirs.
    assert reads == [(budget, pictures), (budget - pictures, 0), (budget - pictures, 0)]
    assert sum(sent for _, sent in reads) <= budget
    content = cast(list[dict[str, Any]], prepared.content)
    assert [part["type"] for part in content] == ["text", "image_url", "image_url"]
    assert [doc.filename for doc in prepared.without_pictures] == ["b.docx", "c.docx"]
    assert all(doc.pictures_left_out == ((1, "size"), (2, "size")) for doc in prepared.without_pictures)
    # A document of pictures alone none of which fits is left out, told as before.
    [refusal] = prepared.unreadable
    assert isinstance(refusal, ImagesTooLarge) and refusal.limit == budget - pictures
    assert "рядом с остальными фото и файлами сообщения осталось место только на" in files_texts.file_error(refusal)


async def test_a_docx_whose_pictures_do_not_fit_keeps_the_text_their_room_would_have_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = "Выручка выросла, а расходы не изменились. " * 300
    data = docx_with_pictures(text.strip(), ["blue", "red"])
    read = extract_document(data, "d.docx", None, 100_000, vision=True)
    from PIL import Image

    out = io.BytesIO()
    Image.effect_noise((200, 200), 64).convert("RGB").save(out, "JPEG")
    jpeg = out.getvalue()
    photo_bytes = len(jpeg)
    assert photo_bytes > media_bytes(read.pictures)
    catalog = load_catalog(None)
    photo = {"file_id": "p", "file_unique_id": "p", "width": 200, "height": 200, "file_size": photo_bytes}
    # The photo comes after the document: the document is read with room for its pictures, which the photo takes.
    album = [docx_message("d"), message(photo=[photo], media_group_id="g")]
    bot = cast(Bot, FilesBot({"p": jpeg, "d": data}))

    async def prepare(budget: int) -> Prepared:
        monkeypatch.setattr(attachments, "MAX_REQUEST_MEDIA_BYTES", budget)
        request = attachment_request(album, catalog.default, None, catalog)
        # Room in the context for the text, but not for the text and both pictures.
        request.document_tokens = estimate_text(read.text) + IMAGE_TOKENS
        return await request.read(downloader(bot))

    # No room is left for the document's pictures beside the photo: its text goes whole.
    prepared = await prepare(photo_bytes + 1)
    content = cast(list[dict[str, Any]], prepared.content)
    assert [part["type"] for part in content] == ["text", "image_url"]
    assert not prepared.cut and read.text in content[0]["text"]
    [doc] = prepared.without_pictures
    assert doc.pictures == () and doc.pictures_left_out == ((1, "size"), (2, "size"))
    # When they do go, they take their share of the context from the text.
    prepared = await prepare(photo_bytes + media_bytes(read.pictures))
    content = cast(list[dict[str, Any]], prepared.content)
    assert [part["type"] for part in content] == ["text", "image_url", "image_url", "image_url"]
    [cut] = prepared.cut
    assert cut.stopped_by == "context" and estimate_text(cut.text) <= estimate_text(read.text) - IMAGE_TOKENS
