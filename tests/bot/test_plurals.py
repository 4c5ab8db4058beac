"""Numbers, limits and times in what the bot says: Russian plurals after every number, the quota notice offering
premium only to those it would help, dates with their time zone, and a /help that names no button it may not show.

The texts directly, then end to end (the real bot with a catalog of tiny limits and a 21-character role).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio

from pomogator.billing import texts as billing_texts
from pomogator.bot import files_texts, texts
from pomogator.errors import QuotaExceeded
from pomogator.llm.catalog import Catalog, Model, load_catalog, parse_catalog
from pomogator.services.files import ExtractedDocument
from pomogator.services.formatting.plural import plural
from pomogator.services.users import Account, ModelAllowance, Profile
from tests.bot.harness import BotHarness
from tests.fakes.telegram_html import check_message

MSK = ZoneInfo("Europe/Moscow")
CATALOG = load_catalog()
MODEL = CATALOG.default
# 02:49 UTC is 05:49 in Moscow.
MOMENT = datetime(2025, 1, 5, 2, 49, tzinfo=UTC)


@pytest.mark.parametrize(
    ("n", "form"),
    [
        (0, "запросов"),
        (1, "запрос"),
        (2, "запроса"),
        (4, "запроса"),
        (5, "запросов"),
        (11, "запросов"),
        (12, "запросов"),
        (14, "запросов"),
        (21, "запрос"),
        (22, "запроса"),
        (25, "запросов"),
        (101, "запрос"),
        (111, "запросов"),
        (112, "запросов"),
        (1_000_001, "запрос"),
    ],
)
def test_plural(n: int, form: str) -> None:
    assert plural(n, "запрос", "запроса", "запросов") == form


def test_role_texts_agree_with_their_numbers() -> None:
    assert "Роль слишком длинная: 2001 символ, а можно не больше 2000." in texts.role_too_long(2001, 2000)
    assert "2002 символа," in texts.role_too_long(2002, 2000)
    assert "2011 символов," in texts.role_too_long(2011, 2000)
    # "до" takes the genitive: до 21 символа, до 22 символов.
    assert "(до 2000 символов)" in texts.role_prompt(None, 2000)
    assert "(до 21 символа)" in texts.role_prompt(None, 21)
    assert "(до 22 символов)" in texts.role_prompt(None, 22)


def quota(limit: int, model: Model = MODEL, catalog: Catalog = CATALOG) -> str:
    """The notice for ``limit`` requests of ``model`` used up (``texts.error``, as the error middleware asks)."""
    return texts.error(QuotaExceeded(model.id, limit, MOMENT), catalog, MSK, "@support", premium_on_sale=True)


def test_quota_notice_agrees_with_the_limit() -> None:
    assert "исчерпан: 1 запрос в день." in quota(1)
    assert "исчерпан: 2 запроса в день." in quota(2)
    assert "исчерпан: 21 запрос в день." in quota(21)
    assert "исчерпан: 25 запросов в день." in quota(25)


def test_quota_notice_offers_premium_only_where_it_raises_the_limit() -> None:
    free = quota(MODEL.free_daily)
    assert "/billing" in free and "премиум" in free
    premium = check_message(quota(MODEL.premium_daily), "HTML")
    assert "/billing" not in premium and "премиум" not in premium
    assert "Лимит обновится 05.01.2025 05:49 MSK." in premium
    assert premium.endswith("Можно выбрать другую модель — /model.")
    model = {"id": "a/b", "free_daily": 5, "premium_daily": 5, "context_length": 8192, "max_output_tokens": 10}
    same = parse_catalog({"models": [model]}, "test")
    assert "/billing" not in quota(5, same.default, same)


def test_dates_carry_the_time_zone_billing_shows() -> None:
    assert "Лимит обновится 05.01.2025 05:49 MSK" in quota(1)
    account = Account(
        telegram_id=1,
        first_name="Ann",
        username=None,
        model=MODEL,
        role=None,
        email=None,
        premium_until=MOMENT,
        created_at=MOMENT,
    )
    shown = texts.profile(
        Profile(account, 0, (ModelAllowance(MODEL, 0, MODEL.premium_daily),)), MSK, premium_on_sale=True
    )
    assert "Премиум: активен до 05.01.2025 05:49 MSK" in shown
    billing = billing_texts.billing_screen(
        premium_until=MOMENT, plans=[], tz=MSK, offer_url="", privacy_url="", email=None, receipts=False
    )
    assert "05.01.2025 05:49 MSK" in billing


def test_help_does_not_promise_a_stop_button() -> None:
    # Private chats stream drafts with Telegram's own stop control; the bot's button only replaces it where drafts
    # are refused.
    help_text = check_message(texts.help_text("@support", MSK), "HTML")
    assert texts.STOP_BUTTON not in help_text and "Стоп" not in help_text
    assert "остановить" in help_text


def document(
    chars: int, *, total_chars: int | None = None, pages_read: int | None = None, pages_total: int | None = None
) -> str:
    doc = ExtractedDocument(
        filename="a.pdf",
        kind="pdf",
        text="x" * chars,
        total_chars=total_chars,
        pages_read=pages_read,
        pages_total=pages_total,
    )
    return files_texts.document_cut(doc)


def test_document_cut_agrees_with_its_numbers() -> None:
    assert "прочитает 1\u00a0001 символ с первой из 3 страниц." in document(1001, pages_read=1, pages_total=3)
    assert "прочитает 2 символа с первых 2 из 21 страницы." in document(2, pages_read=2, pages_total=21)
    assert "прочитает 5 символов с первых 20 из 25 страниц." in document(5, pages_read=20, pages_total=25)
    assert "прочитает первые 21 из 101 символа." in document(21, total_chars=101)
    assert "прочитает первые 21 из 105 символов." in document(21, total_chars=105)
    assert "прочитает первые 21 символ." in document(21)
    assert "прочитает первые 24 символа." in document(24)


def test_billing_plans_show_days_in_words() -> None:
    screen = billing_texts.billing_screen(
        premium_until=None,
        plans=[
            ("month", Decimal(599), 30),
            ("year", Decimal(1999), 365),
            ("week", Decimal(99), 1),
            ("x", Decimal(1), 22),
        ],
        tz=MSK,
        offer_url="",
        privacy_url="",
        email=None,
        receipts=False,
    )
    for days in ("(30 дней)", "(365 дней)", "(1 день)", "(22 дня)"):
        assert days in screen


# --- end to end ------------------------------------------------------------------------------------------------

TINY_CATALOG = """
default = "test/tiny"

[[models]]
id = "test/tiny"
title = "Tiny"
free_daily = 1
premium_daily = 2
context_length = 8192
max_output_tokens = 100
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bot(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotHarness]:
    workdir = tmp_path_factory.mktemp("plurals")
    models = workdir / "models.toml"
    models.write_text(TINY_CATALOG, "utf-8")
    env = {
        "POMOGATOR_MODELS_FILE": str(models),
        "POMOGATOR_ROLE_MAX_CHARS": "21",
        # Payments configured, so premium is offered where it helps (no payment is made here).
        "POMOGATOR_YOOKASSA_SHOP_ID": "123456",
        "POMOGATOR_YOOKASSA_SECRET_KEY": "test_secret",
        "POMOGATOR_YOOKASSA_API_URL": "http://127.0.0.1:9/v3",
    }
    async with BotHarness.open(workdir, env=env) as h:
        yield h


async def used_up(h: BotHarness, chat: int, allowed: int) -> str:
    for n in range(allowed):
        assert (await h.ask(chat, f"q{n}")).text == f"Echo: q{n}"
        await h.settle(quiet=0.3)
    notice = (await h.ask(chat, "one more")).text or ""
    await h.settle(quiet=0.3)
    return notice


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_a_free_user_out_of_requests_is_offered_premium(bot: BotHarness) -> None:
    notice = await used_up(bot, bot.new_chat(), 1)
    assert "исчерпан: 1 запрос в день." in notice
    assert "MSK." in notice
    assert "/billing" in notice


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_a_premium_user_out_of_requests_is_not_offered_premium(bot: BotHarness) -> None:
    h = bot
    chat = h.new_chat()
    await h.ask(chat, "/start")
    await h.settle(quiet=0.3)
    async with h.services() as services:
        await services.subscriptions.grant(chat, 30)
    notice = await used_up(h, chat, 2)
    assert "исчерпан: 2 запроса в день." in notice
    assert "MSK." in notice
    assert "/billing" not in notice and "премиум" not in notice
    assert notice.endswith("/model.")
    profile = (await h.ask(chat, "/profile")).text or ""
    assert "Премиум: активен до" in profile and profile.endswith(" MSK")


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_the_role_limit_is_told_with_the_right_forms(bot: BotHarness) -> None:
    h = bot
    chat = h.new_chat()
    prompt = await h.ask(chat, "/role")
    assert "(до 21 символа)" in (prompt.text or "")
    await h.settle(quiet=0.3)
    refusal = await h.ask(chat, "я" * 22)
    assert "Роль слишком длинная: 22 символа, а можно не больше 21." in (refusal.text or "")


def test_the_offer_is_accepted_only_where_there_is_one() -> None:
    def screen(offer_url: str, privacy_url: str) -> str:
        return billing_texts.billing_screen(
            premium_until=None,
            plans=[],
            tz=MSK,
            offer_url=offer_url,
            privacy_url=privacy_url,
            email=None,
            receipts=False,
        )

    only_privacy = screen("", "https://example.ru/privacy")
    assert "Политика конфиденциальности: https://example.ru/privacy" in only_privacy
    assert "оферт" not in only_privacy
    both = screen("https://example.ru/offer", "https://example.ru/privacy")
    assert "Оплачивая, вы принимаете условия оферты.\nОферта: https://example.ru/offer" in both
