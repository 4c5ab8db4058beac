"""Photos, documents and albums go to the chosen model; the caption is the question.

An album arrives here once, with all its messages in ``album`` (see ``pomogator.bot.middlewares.gather``), and so
do photos and files sent one by one at once; a text sent just before or after them (Telegram Desktop's comment for
several files) is in the first one's caption. So do photos and files forwarded together, with the forwarded texts
in the first one's caption (``with_texts``: the texts are answered alone when none of the files can be).
Refusals (a file too big, of a kind the bot does not read, a photo for a model that cannot see, no requests left
today) are raised as domain errors before anything is downloaded or counted, and become messages in the error
middleware.
"""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.types import Message

from pomogator.bot import files_texts, texts
from pomogator.bot.answer import Answerer, StopRegistry
from pomogator.bot.answer.output import ChatOutput
from pomogator.bot.answer.renderer import typing_shown
from pomogator.bot.answer.stops import unless_stopped
from pomogator.bot.attachments import attachment_request, downloader
from pomogator.llm.catalog import Catalog
from pomogator.services.chat import ChatService
from pomogator.services.users import Account


def make_router() -> Router:
    router = Router(name="files")
    router.message.register(on_files, F.photo | F.document | F.media_group_id)
    return router


async def on_files(
    message: Message,
    bot: Bot,
    account: Account,
    answerer: Answerer,
    catalog: Catalog,
    chat: ChatService,
    stops: StopRegistry,
    album: list[Message] | None = None,
    with_texts: bool = False,
) -> None:
    request = attachment_request(album or [message], account.model, account.role, catalog, with_texts=with_texts)
    # Refused before the files are downloaded and read when no request is left today.
    await chat.ensure_can_ask(account)
    # A download may take two minutes and reading a document one more; "typing…" lasts five seconds.
    async with typing_shown(ChatOutput(bot, message.chat.id)):
        # /stop meanwhile ends the reading: the model is not asked, nothing is counted.
        prepared = await unless_stopped(request.read(downloader(bot)), stops.turn_event(message.chat.id))
    if prepared is None:
        await message.answer(texts.STOPPED_EMPTY)
        return
    if prepared.skipped:
        await message.answer(files_texts.skipped_parts(prepared.skipped))
    if prepared.unreadable:
        await message.answer(files_texts.unreadable_parts(prepared.unreadable))
    for document, reason in prepared.without_scans:
        await message.answer(files_texts.scanned_pages_left_out(document, reason))
    for document in prepared.without_pictures:
        await message.answer(files_texts.pictures_left_out(document))
    for document in prepared.cut:
        await message.answer(files_texts.document_cut(document))
    await answerer.reply(bot, message.chat, account, prepared.content)
