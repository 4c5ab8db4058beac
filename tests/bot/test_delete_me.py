"""/delete_me end to end: what the prompt warns of, and presses on a prompt that is too old or outdated."""

from __future__ import annotations

import pytest

from pomogator.bot import texts
from pomogator.bot.handlers.delete_me import PROMPT_LIFETIME
from tests.bot.harness import BotHarness

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]


async def exists(h: BotHarness, chat: int) -> bool:
    async with h.services() as services:
        return await services.users.exists(chat)


async def test_the_prompt_warns_that_premium_is_lost_and_not_refunded(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    await h.reply_settled(chat, "/start")
    async with h.services() as services:
        ends = await services.subscriptions.grant(chat, 30)
    text = (await h.reply_settled(chat, "/delete_me")).text or ""
    assert f"премиум до {ends.astimezone(h.settings().tz):%d.%m.%Y} пропадёт" in text
    assert "оплаченные дни не возвращаются" in text
    free = await h.reply_settled(h.new_chat(), "/delete_me")
    assert "пропадёт" not in (free.text or "")


async def test_a_used_prompt_loses_its_buttons(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    for button, told in (
        (texts.DELETE_ME_CANCEL, texts.DELETE_ME_CANCELLED),
        (texts.DELETE_ME_CONFIRM, texts.DELETE_ME_DONE),
    ):
        prompt = await h.reply_settled(chat, "/delete_me")
        await h.press_settled(chat, prompt, button)
        assert (prompt.text, prompt.buttons) == (told, [])  # the fake's messages are live


async def test_a_confirmation_pressed_too_late_is_asked_for_again(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    await h.reply_settled(chat, "remember me")
    prompt = await h.reply_settled(chat, "/delete_me")
    prompt.date -= int(PROMPT_LIFETIME.total_seconds()) + 60
    await h.press_settled(chat, prompt, texts.DELETE_ME_CONFIRM)
    assert (prompt.text, prompt.buttons) == (texts.DELETE_ME_EXPIRED, [])
    assert await exists(h, chat)
    [again] = h.messages_after(chat, prompt.message_id)
    assert again.button_texts == [texts.DELETE_ME_CONFIRM, texts.DELETE_ME_CANCEL]
    await h.press_settled(chat, again, texts.DELETE_ME_CONFIRM)
    assert again.text == texts.DELETE_ME_DONE
    assert not await exists(h, chat)


async def test_prompts_left_open_after_an_erasure_are_outdated(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    await h.reply_settled(chat, "remember me")
    first, second, third = [await h.reply_settled(chat, "/delete_me") for _ in range(3)]
    await h.press_settled(chat, first, texts.DELETE_ME_CONFIRM)
    assert first.text == texts.DELETE_ME_DONE

    # Cancelling on another prompt neither claims the data is still there nor creates the person anew.
    await h.press_settled(chat, second, texts.DELETE_ME_CANCEL)
    assert (second.text, second.buttons) == (texts.DELETE_ME_OUTDATED, [])
    assert not await exists(h, chat)

    # A confirmation on a prompt from before the erasure does not erase the account made since.
    await h.reply_settled(chat, "hello again")
    third.date -= 60  # sent a minute before the account was made anew, as a person's presses would be apart
    await h.press_settled(chat, third, texts.DELETE_ME_CONFIRM)
    assert (third.text, third.buttons) == (texts.DELETE_ME_OUTDATED, [])
    assert await exists(h, chat)
    await h.reply_settled(chat, "and now?")
    assert [m["content"] for m in h.llm.requests[-1].messages] == ["hello again", "Echo: hello again", "and now?"]
