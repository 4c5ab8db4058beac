"""From /billing to the confirmation message: the real bot process and the real web process, the fake Bot API and
the fake YooKassa in the test loop."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from pomogator.billing import texts as billing_texts
from tests.bot.harness import BotHarness
from tests.fakes.telegram_server import SentMessage
from tests.fakes.yookassa_server import FakeYooKassa
from tests.web.support import ADMIN_ID, WEBHOOK, WebProcess

pytestmark = pytest.mark.slow

OFFER = "https://example.ru/offer"
PRIVACY = "https://example.ru/privacy"


def yookassa_env(kassa: FakeYooKassa, **extra: str) -> dict[str, str]:
    return kassa.client_env() | {
        "POMOGATOR_YOOKASSA_TRUSTED_NETWORKS": "127.0.0.1",
        "POMOGATOR_ADMIN_IDS": str(ADMIN_ID),
        "POMOGATOR_OFFER_URL": OFFER,
        "POMOGATOR_PRIVACY_URL": PRIVACY,
        **extra,
    }


def payment_id_of(message: SentMessage) -> str:
    url = message.button("Оплатить")["url"]
    return parse_qs(urlsplit(url).query)["orderId"][0]


async def open_billing(h: BotHarness, chat: int) -> SentMessage:
    return await h.ask(chat, "/billing")


async def press_plan(h: BotHarness, chat: int, screen: SentMessage, plan: str) -> SentMessage:
    before = h.tg.sent_messages(chat)[-1].message_id
    await h.press(chat, screen, plan)
    return await h.tg.wait_for_message(chat, after_message_id=before)


async def test_from_billing_to_the_confirmation(kassa: FakeYooKassa, tmp_path: Path) -> None:
    async with BotHarness.open(tmp_path, env=yookassa_env(kassa)) as h:
        h.tg.add_chat(ADMIN_ID)
        web = await WebProcess(h.env(), tmp_path).start()
        try:
            chat = h.new_chat()
            screen = await open_billing(h, chat)
            text = screen.text or ""
            assert "бесплатный тариф" in text
            assert "без автопродления" in text
            assert OFFER in text and PRIVACY in text
            assert screen.button_texts == ["Месяц — 599 ₽", "Год — 1999 ₽"]

            link = await press_plan(h, chat, screen, "Месяц")
            payment_id = payment_id_of(link)
            url = link.button("Оплатить")["url"]
            assert url in (link.text or "")
            request = kassa.created_requests[-1].json
            assert request["metadata"]["telegram_id"] == str(chat)
            assert request["amount"] == {"value": "599.00", "currency": "RUB"}
            # No POMOGATOR_PAYMENT_RETURN_URL: the payer comes back to this bot.
            assert request["confirmation"]["return_url"] == f"https://t.me/{h.tg.bot_username}"

            # Pressing again while the link can still be paid shows the same link.
            again = await press_plan(h, chat, screen, "Месяц")
            assert payment_id_of(again) == payment_id
            assert len(kassa.payments) == 1

            async with httpx.AsyncClient() as client:
                assert (await client.get(url)).status_code == 200  # the user pays
            last = h.tg.sent_messages(chat)[-1].message_id
            assert await kassa.send_notification(web.url + WEBHOOK, "payment.succeeded", payment_id) == 200
            confirmation = await h.tg.wait_for_message(chat, after_message_id=last)
            assert "Оплата 599 ₽ получена" in (confirmation.text or "")
            assert any(payment_id in t for t in h.tg.sent_texts(ADMIN_ID))

            status = await open_billing(h, chat)
            assert "Премиум активен до" in (status.text or "")
            async with h.services() as services:
                assert (await services.users.get(chat)).premium
        finally:
            await web.stop()


async def test_receipt_email_is_asked_once_and_the_api_down_is_explained(kassa: FakeYooKassa, tmp_path: Path) -> None:
    async with BotHarness.open(tmp_path, env=yookassa_env(kassa, POMOGATOR_RECEIPT_ENABLED="1")) as h:
        chat = h.new_chat()
        screen = await open_billing(h, chat)
        assert "Для чека понадобится e-mail" in (screen.text or "")
        prompt = await press_plan(h, chat, screen, "Год")
        assert "e-mail" in (prompt.text or "")
        assert kassa.created_requests == []

        invalid = await h.ask(chat, "not an email")
        assert "не похоже на e-mail" in (invalid.text or "")
        kassa.down = True
        saved = await h.ask(chat, "ann@example.ru")
        assert "сохранён: ann@example.ru" in (saved.text or "")
        refused = await h.tg.wait_for_message(chat, lambda m: "не отвечает" in (m.text or ""), after_message_id=0)
        assert refused.text == billing_texts.PROVIDER_UNAVAILABLE
        async with h.services() as services:
            assert (await services.users.get(chat)).email == "ann@example.ru"

        kassa.down = False
        screen = await open_billing(h, chat)
        assert "Чек придёт на ann@example.ru" in (screen.text or "")
        link = await press_plan(h, chat, screen, "Год")
        payment_id = payment_id_of(link)
        receipt = kassa.payments[payment_id]
        assert receipt["amount"]["value"] == "1999.00"
        # The failed attempt and the retry carried one idempotence key: one payment at YooKassa.
        assert len({r.idempotence_key for r in kassa.created_requests}) == 1
        assert kassa.created_requests[-1].json["receipt"]["customer"] == {"email": "ann@example.ru"}
