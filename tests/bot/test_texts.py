"""Texts that depend on settings or user input stay valid Telegram HTML."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from pomogator.billing import texts as billing_texts
from pomogator.bot import texts
from pomogator.errors import MessageTooLong, PaymentUnderReview, PremiumRequired, ScanTooLong
from pomogator.llm.catalog import Model, load_catalog
from pomogator.services.users import Account, ModelReset
from tests.fakes.telegram_html import check_message, parse_html


def test_start_shows_offer_and_privacy_links_and_escapes_the_name() -> None:
    model = load_catalog().default
    html = texts.start("<Ann & Bob>", model, "https://example.com/offer?a=1&b=2", "https://example.com/privacy")
    plain = check_message(html, "HTML")
    assert "<Ann & Bob>" in plain
    _, entities = parse_html(html)
    urls = {e.get("url") for e in entities if e["type"] == "text_link"}
    assert urls == {"https://example.com/offer?a=1&b=2", "https://example.com/privacy"}


def test_start_links_keep_quotes_in_their_urls() -> None:
    model = load_catalog().default
    offer, privacy = 'https://example.com/o?q="a"&b=<c>', "https://example.com/it's"
    html = texts.start("Ann", model, offer, privacy)
    check_message(html, "HTML")
    _, entities = parse_html(html)
    assert {e.get("url") for e in entities if e["type"] == "text_link"} == {offer, privacy}


def test_start_without_links() -> None:
    model = load_catalog().default
    plain = check_message(texts.start("", model), "HTML")
    assert "Оферта" not in plain
    assert model.title in plain


def test_help_is_valid_and_names_every_command() -> None:
    plain = check_message(texts.help_text("@support", ZoneInfo("Europe/Moscow")), "HTML")
    for command in ("/start", "/model", "/role", "/profile", "/billing", "/delete_context", "/delete_me", "/help"):
        assert command in plain
    assert "@support" in plain


def test_help_shows_the_zone_as_people_read_it() -> None:
    moscow = check_message(texts.help_text("@support", ZoneInfo("Europe/Moscow")), "HTML")
    assert "в полночь (MSK)" in moscow
    assert "Europe/Moscow" not in moscow
    assert "в полночь (UTC)" in check_message(texts.help_text("@support", ZoneInfo("UTC")), "HTML")


def test_role_prompt_quotes_only_the_start_of_a_long_role() -> None:
    # A higher POMOGATOR_ROLE_MAX_CHARS allows roles that, quoted whole, would not fit in one message.
    role = "Ты — пират. " * 400
    plain = check_message(texts.role_prompt(role, 5000), "HTML")
    assert role[: texts.ROLE_PREVIEW_CHARS] + "…" in plain
    assert role.strip() not in plain
    assert "Ты — пират." in check_message(texts.role_prompt("Ты — пират.", 5000), "HTML")


def test_the_conversation_is_called_one_name_and_the_context_means_it() -> None:
    # The menu, /start, /help and /delete_context speak of "контекст беседы" and "история беседы": "контекст" is the
    # conversation, never the model's window, and the conversation is never a "диалог".
    catalog = load_catalog()
    too_long = texts.message_too_long(MessageTooLong(catalog.default.id, 9000, 8000), catalog)
    assert "контекст" not in too_long
    for text in (texts.BROKEN_OFF_MARK, texts.UNSAVED_MARK, too_long, texts.CONTEXT_CLEARED):
        assert "диалог" not in text, text
    assert "в историю беседы не попал" in texts.BROKEN_OFF_MARK
    assert "в истории беседы" in texts.UNSAVED_MARK


def test_without_a_support_contact_no_text_names_one() -> None:
    # POMOGATOR_SUPPORT_CONTACT is empty by default: a made-up handle would send users (and their payment problems)
    # to a stranger's account.
    tz = ZoneInfo("Europe/Moscow")
    catalog = load_catalog()
    shown = [
        texts.bot_description(""),
        texts.bot_short_description(""),
        check_message(texts.help_text("", tz), "HTML"),
        check_message(texts.billing_soon("", premium_until=None, tz=tz), "HTML"),
        check_message(texts.billing_soon("", premium_until=datetime(2026, 5, 1, tzinfo=UTC), tz=tz), "HTML"),
        check_message(texts.unexpected(""), "HTML"),
        check_message(texts.error(PaymentUnderReview("p"), catalog, tz, "", premium_on_sale=True), "HTML"),
        billing_texts.premium_ending(datetime(2026, 5, 1, tzinfo=UTC), tz, premium_on_sale=False, support=""),
    ]
    for text in shown:
        assert "Поддержка" not in text and "в поддержку" not in text and "Вопросы" not in text, text
        assert not text.rstrip().endswith(":"), text
    with_contact = [
        texts.bot_description("@help_desk"),
        texts.bot_short_description("@help_desk"),
        texts.help_text("@help_desk", tz),
        texts.billing_soon("@help_desk", premium_until=None, tz=tz),
        texts.billing_soon("@help_desk", premium_until=datetime(2026, 5, 1, tzinfo=UTC), tz=tz),
        texts.unexpected("@help_desk"),
        texts.payment_under_review("@help_desk"),
        billing_texts.premium_ending(datetime(2026, 5, 1, tzinfo=UTC), tz, premium_on_sale=False, support="@help_desk"),
    ]
    for text in with_contact:
        assert "@help_desk" in text, text


def reset_account(model: Model, reason: ModelReset, reset_from: Model | None) -> Account:
    return Account(
        telegram_id=1,
        first_name="Ann",
        username=None,
        model=model,
        role=None,
        email=None,
        premium_until=None,
        created_at=datetime(2025, 3, 1, tzinfo=UTC),
        model_reset=reason,
        reset_from=reset_from,
    )


def test_the_model_reset_notice_says_why() -> None:
    catalog = load_catalog()
    default, locked = catalog.default, next(m for m in catalog.models if m.premium_only)

    def notice(reason: ModelReset, reset_from: Model | None, *, premium_on_sale: bool = True) -> str:
        account = reset_account(default, reason, reset_from)
        return check_message(texts.model_reset(account, premium_on_sale=premium_on_sale), "HTML")

    ended = notice(ModelReset.PREMIUM_ENDED, locked)
    assert ended.startswith("ℹ️ Премиум закончился") and default.title in ended and "/billing" in ended
    # Never had premium: the catalog made their model premium-only.
    made_premium_only = notice(ModelReset.PREMIUM_ONLY, locked)
    assert "Премиум закончился" not in made_premium_only
    assert f"Модель {locked.title} теперь доступна только с премиумом, поэтому выбрана {default.title}." in (
        made_premium_only
    )
    assert "/billing" in made_premium_only
    assert "/billing" not in notice(ModelReset.PREMIUM_ONLY, locked, premium_on_sale=False)
    gone = notice(ModelReset.GONE, None)
    assert gone.startswith("ℹ️ Модели, которую вы выбирали, больше нет в списке, поэтому выбрана ")
    assert default.title in gone and gone.endswith("Сменить: /model")


def test_a_premium_only_refusal_claims_nothing_about_the_choice() -> None:
    # The choice may just have changed (premium ended and the model was reset): the refusal only says why.
    catalog = load_catalog()
    locked = next(m for m in catalog.models if m.premium_only)
    text = check_message(texts.premium_required(PremiumRequired(locked.id), catalog, premium_on_sale=True), "HTML")
    assert text == f"🔒 Модель {locked.title} доступна только с премиумом.\n\nОформить премиум: /billing"
    assert (
        texts.model_locked(locked, premium_on_sale=True)
        == f"🔒 {locked.title} — только с премиумом. Оформить — кнопка «💎 Премиум» под списком."
    )


def test_a_message_no_model_would_read_whole_is_only_asked_to_be_shorter() -> None:
    catalog = load_catalog()
    longest = max(catalog.models, key=lambda m: m.context_length)
    text = texts.message_too_long(MessageTooLong(longest.id, longest.context_length, 1), catalog)
    assert "Сократите его. " in text and "/model" not in text and "выберите" not in text


def test_a_scan_too_long_names_the_models_that_see_files_and_would_hold_it() -> None:
    catalog = load_catalog()
    need = sorted(m.input_tokens for m in catalog.vision_models())[-3] + 1  # more than all but the two roomiest
    holding = [m for m in catalog.vision_models() if m.input_tokens >= need]
    free_user = check_message(texts.scan_too_long(ScanTooLong("a.pdf", 400, 90, need), catalog), "HTML")
    assert holding and all(m.title in free_user for m in holding)
    assert all(m.title not in free_user for m in catalog.models if m not in holding)
    assert "Сменить модель: /model." in free_user
    assert ("только с премиумом" in free_user) == any(m.premium_only for m in holding)
    premium_user = texts.scan_too_long(ScanTooLong("a.pdf", 400, 90, need), catalog, premium=True)
    assert "только с премиумом" not in premium_user
    # None would hold it, or the size was not worked out: /model is offered as before.
    for tokens in (max(m.input_tokens for m in catalog.models) + 1, 0):
        text = texts.scan_too_long(ScanTooLong("a.pdf", 400, 0, tokens), catalog)
        assert text.endswith("выберите модель, которая читает больше за раз: /model.")
