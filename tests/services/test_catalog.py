"""The models catalog: the built-in file, a replacement file, and every way a file can be wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from pomogator.container import build_services
from pomogator.errors import CatalogError, UnknownModel
from pomogator.llm.catalog import load_catalog
from tests.conftest import make_settings

GOOD_MODEL = """
[[models]]
id = "test/alpha"
title = "Alpha"
free_daily = 5
premium_daily = 50
vision = false
context_length = 8000
max_output_tokens = 1000
"""

SECOND_MODEL = """
[[models]]
id = "test/beta"
free_daily = 0
premium_daily = 10
vision = true
context_length = 16000
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(text, "utf-8")
    return path


def test_builtin_catalog_is_valid() -> None:
    catalog = load_catalog()
    assert len(catalog.models) >= 2
    assert len(set(catalog.ids)) == len(catalog.ids)
    assert not catalog.default.premium_only
    assert any(m.premium_only for m in catalog.models)
    assert catalog.vision_models()
    for model in catalog.models:
        assert catalog.by_key(model.key) is model
        assert 0 <= model.free_daily <= model.premium_daily
        assert 0 < model.max_output_tokens < model.context_length
    assert len({model.key for model in catalog.models}) == len(catalog.models)


def test_builtin_catalog_offers_no_free_variants() -> None:
    # OpenRouter's ``:free`` variants are limited per account (tens of requests a day for the whole bot), not per
    # person as the catalog's daily limits promise; and a title is shown as is in the Russian menu.
    for model in load_catalog().models:
        assert not model.id.endswith(":free"), model.id
        assert "free" not in model.title.lower(), model.title


def test_models_file_replaces_builtin_catalog(tmp_path: Path) -> None:
    path = write(tmp_path, 'default = "test/alpha"\n' + GOOD_MODEL + SECOND_MODEL)
    catalog = load_catalog(path)
    assert catalog.ids == ["test/alpha", "test/beta"]
    assert catalog.default_id == "test/alpha"
    alpha, beta = catalog.models
    assert (alpha.title, alpha.free_daily, alpha.premium_daily) == ("Alpha", 5, 50)
    assert (alpha.context_length, alpha.max_output_tokens, alpha.vision) == (8000, 1000, False)
    # Optional fields take their defaults.
    assert beta.title == "test/beta"
    assert beta.max_output_tokens == 4096
    assert beta.premium_only
    assert beta.daily_limit(premium=False) == 0
    assert beta.daily_limit(premium=True) == 10


def test_default_is_first_model_when_not_given(tmp_path: Path) -> None:
    assert load_catalog(write(tmp_path, GOOD_MODEL + SECOND_MODEL)).default_id == "test/alpha"


async def test_models_file_setting_reaches_services(tmp_path: Path) -> None:
    settings = make_settings(
        database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}", models_file=write(tmp_path, GOOD_MODEL)
    )
    async with build_services(settings) as services:
        assert services.catalog.ids == ["test/alpha"]
        assert services.users.catalog is services.catalog


def test_unknown_model_lists_valid_ids() -> None:
    catalog = load_catalog()
    with pytest.raises(UnknownModel) as caught:
        catalog.get("nobody/nothing")
    assert caught.value.model_id == "nobody/nothing"
    assert caught.value.valid == catalog.ids
    for model_id in catalog.ids:
        assert model_id in str(caught.value)
    with pytest.raises(UnknownModel):
        catalog.by_key("0" * 12)
    assert catalog.find("nobody/nothing") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param('default = "test/missing"\n' + GOOD_MODEL, "test/missing", id="unknown-default"),
        pytest.param('default = "test/beta"\n' + GOOD_MODEL + SECOND_MODEL, "test/beta", id="premium-default"),
        pytest.param(GOOD_MODEL + GOOD_MODEL, "'test/alpha': duplicate id", id="duplicate-id"),
        pytest.param(
            GOOD_MODEL.replace("free_daily = 5", "free_daily = -1"), "'test/alpha': free_daily", id="negative-free"
        ),
        pytest.param(
            GOOD_MODEL.replace("premium_daily = 50", "premium_daily = -5"),
            "'test/alpha': premium_daily",
            id="negative-premium",
        ),
        pytest.param(
            GOOD_MODEL.replace("free_daily = 5", 'free_daily = "5"'), "'test/alpha': 'free_daily'", id="str-limit"
        ),
        pytest.param(
            GOOD_MODEL.replace("free_daily = 5", "free_daily = true"), "'test/alpha': 'free_daily'", id="bool-limit"
        ),
        pytest.param(GOOD_MODEL.replace("vision = false", 'vision = "no"'), "'test/alpha': 'vision'", id="str-vision"),
        pytest.param(
            GOOD_MODEL.replace("context_length = 8000", "context_length = 8000.5"),
            "'test/alpha': 'context_length'",
            id="float-context",
        ),
        pytest.param(
            GOOD_MODEL.replace("premium_daily = 50\n", ""), "'test/alpha': missing 'premium_daily'", id="missing"
        ),
        pytest.param(
            GOOD_MODEL.replace("max_output_tokens = 1000", "max_output_tokens = 9000"),
            "'test/alpha': max_output_tokens",
            id="output-over-context",
        ),
        pytest.param(
            GOOD_MODEL.replace("premium_daily = 50", "premium_daily = 1"),
            "'test/alpha': premium_daily is lower",
            id="premium-below-free",
        ),
        pytest.param(
            GOOD_MODEL.replace("free_daily = 5", "free_daily = 0").replace("premium_daily = 50", "premium_daily = 0"),
            "'test/alpha': premium_daily must be positive",
            id="nobody-may-use",
        ),
        pytest.param(GOOD_MODEL.replace('id = "test/alpha"', "id = 7"), "model #1: 'id'", id="int-id"),
        pytest.param('default = "x"\n', "no [[models]]", id="no-models"),
        pytest.param("[[models]\nid =", "models.toml", id="not-toml"),
    ],
)
def test_invalid_catalog_is_refused_naming_the_model(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(CatalogError) as caught:
        load_catalog(write(tmp_path, text))
    assert expected in str(caught.value)
    assert str(tmp_path / "models.toml") in str(caught.value)


def test_missing_models_file_is_a_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog(tmp_path / "absent.toml")
