"""Keyboards and callback data, without Telegram."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from pomogator.bot import texts
from pomogator.bot.answer.answerer import DRAFT_ID_LIMIT
from pomogator.bot.callbacks import (
    DeleteMeCallback,
    MenuAction,
    MenuCallback,
    ModelAction,
    ModelCallback,
    RoleAction,
    RoleCallback,
    StopCallback,
)
from pomogator.bot.keyboards import (
    make_delete_me_keyboard,
    make_model_keyboard,
    make_role_keyboard,
    make_start_keyboard,
    make_stop_keyboard,
)
from pomogator.llm.catalog import Catalog, load_catalog, parse_catalog
from pomogator.services.users import Account

TELEGRAM_CALLBACK_LIMIT = 64


def account(catalog: Catalog, model_id: str | None = None, premium: bool = False) -> Account:
    return Account(
        telegram_id=1,
        first_name="Ann",
        username=None,
        model=catalog.get(model_id) if model_id else catalog.default,
        role=None,
        email=None,
        premium_until=datetime(2100, 1, 1, tzinfo=UTC) if premium else None,
        created_at=datetime(2024, 1, 1, tzinfo=UTC),
    )


def big_catalog(count: int) -> Catalog:
    models = [
        {
            "id": f"some-very-long-provider-name/an-even-longer-model-name-{i}:free:beta",
            "title": f"Model {i}",
            "free_daily": 0 if i % 3 == 0 else 5,
            "premium_daily": 50,
            "context_length": 100_000,
        }
        for i in range(count)
    ]
    return parse_catalog({"models": models, "default": models[1]["id"]}, "test")


def all_callback_data(markup: object) -> list[str]:
    rows = getattr(markup, "inline_keyboard")  # noqa: B009
    return [str(button.callback_data) for row in rows for button in row]


@pytest.mark.parametrize("catalog", [load_catalog(), big_catalog(90)], ids=["built-in", "90 models"])
def test_model_buttons_fit_telegram_and_point_at_their_model(catalog: Catalog) -> None:
    markup = make_model_keyboard(catalog, account(catalog))
    data = all_callback_data(markup)
    assert len(data) == len(catalog.models) + 1
    for index, packed in enumerate(data[:-1]):
        assert len(packed.encode()) <= TELEGRAM_CALLBACK_LIMIT
        unpacked = ModelCallback.unpack(packed)
        assert unpacked.action is ModelAction.pick
        assert catalog.by_key(unpacked.key) is catalog.models[index]
    assert ModelCallback.unpack(data[-1]).action is ModelAction.exit


def test_a_menu_sent_before_the_catalog_changed_still_picks_the_model_its_button_names() -> None:
    old = big_catalog(5)
    button = all_callback_data(make_model_keyboard(old, account(old)))[3]
    # The operator took a model out: every model after it moved up one place.
    changed = parse_catalog(
        {
            "models": [
                {"id": m.id, "free_daily": 1, "premium_daily": 1, "context_length": 1000, "max_output_tokens": 100}
                for m in old.models
                if m is not old.models[1]
            ],
            "default": old.models[0].id,
        },
        "test",
    )
    assert changed.by_key(ModelCallback.unpack(button).key).id == old.models[3].id


def test_model_buttons_mark_the_current_model_and_lock_premium_ones_for_free_users() -> None:
    catalog = load_catalog()
    locked = next(m for m in catalog.models if m.premium_only)
    free_user = make_model_keyboard(catalog, account(catalog))
    labels = [button.text for row in free_user.inline_keyboard for button in row]
    assert labels[catalog.models.index(catalog.default)] == f"{texts.MODEL_CURRENT_MARK} {catalog.default.title}"
    assert labels[catalog.models.index(locked)] == f"{texts.MODEL_LOCKED_MARK} {locked.title}"
    assert labels[-1] == texts.MODEL_EXIT

    premium_user = make_model_keyboard(catalog, account(catalog, locked.id, premium=True))
    labels = [button.text for row in premium_user.inline_keyboard for button in row]
    assert labels[catalog.models.index(locked)] == f"{texts.MODEL_CURRENT_MARK} {locked.title}"
    assert not any(label.startswith(texts.MODEL_LOCKED_MARK) for label in labels)


def test_the_model_menu_offers_premium_beside_its_exit_to_a_free_user_while_it_is_on_sale() -> None:
    catalog = load_catalog()
    locked = next(m for m in catalog.models if m.premium_only)
    offered = make_model_keyboard(catalog, account(catalog), premium_on_sale=True)
    assert [button.text for button in offered.inline_keyboard[-1]] == [texts.MENU_BILLING, texts.MODEL_EXIT]
    assert MenuCallback.unpack(str(offered.inline_keyboard[-1][0].callback_data)).action is MenuAction.billing
    assert all(len(row) == 1 for row in offered.inline_keyboard[:-1])
    for markup in (
        make_model_keyboard(catalog, account(catalog), premium_on_sale=False),
        make_model_keyboard(catalog, account(catalog, locked.id, premium=True), premium_on_sale=True),
    ):
        assert [[button.text for button in row] for row in markup.inline_keyboard[-1:]] == [[texts.MODEL_EXIT]]


def test_the_model_menu_marks_the_models_that_see_images() -> None:
    catalog = load_catalog()
    text = texts.model_menu(catalog, account(catalog), premium_on_sale=True)
    for model in catalog.models:
        line = next(line for line in text.splitlines() if line.startswith(f"• {model.title} "))
        assert (texts.MODEL_VISION_MARK in line) is model.vision, line
    assert f"{texts.MODEL_VISION_MARK} — видит изображения" in text
    # /help, which says only some models see photos, tells how to find them.
    assert f"отмечены {texts.MODEL_VISION_MARK}" in texts.help_text("", ZoneInfo("Europe/Moscow"))


def test_start_keyboard_has_one_button_per_menu_action() -> None:
    data = all_callback_data(make_start_keyboard())
    assert [MenuCallback.unpack(d).action for d in data] == list(MenuAction)


def test_other_keyboards_round_trip_and_fit() -> None:
    role = [RoleCallback.unpack(d).action for d in all_callback_data(make_role_keyboard(has_role=True))]
    assert role == [RoleAction.cancel, RoleAction.delete]
    # Without a role there is nothing to delete.
    role = [RoleCallback.unpack(d).action for d in all_callback_data(make_role_keyboard(has_role=False))]
    assert role == [RoleAction.cancel]
    confirm = [DeleteMeCallback.unpack(d).confirm for d in all_callback_data(make_delete_me_keyboard())]
    assert confirm == [True, False]
    stop = all_callback_data(make_stop_keyboard(DRAFT_ID_LIMIT))
    assert StopCallback.unpack(stop[0]).answer == DRAFT_ID_LIMIT
    assert len(stop[0].encode()) <= TELEGRAM_CALLBACK_LIMIT


def test_model_menu_lists_limits_and_escapes_titles() -> None:
    catalog = parse_catalog(
        {
            "models": [
                {"id": "a/b", "title": "A <b> & co", "free_daily": 3, "premium_daily": 30, "context_length": 9000},
                {"id": "c/d:free", "title": "Locked", "free_daily": 0, "premium_daily": 7, "context_length": 9000},
            ]
        },
        "test",
    )
    text = texts.model_menu(catalog, account(catalog), premium_on_sale=True)
    assert "A &lt;b&gt; &amp; co — 3 / 30" in text
    assert "Locked 🔒 — только премиум / 7" in text
    assert "/billing" in text
    soon = texts.model_menu(catalog, account(catalog), premium_on_sale=False)
    assert "/billing" not in soon and soon.endswith("🔒 — только с премиумом")
