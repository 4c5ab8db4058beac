"""Reading the settings: the environment over ``.env``, names in any case, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pomogator.config import load_settings
from pomogator.errors import ConfigError


@pytest.fixture
def env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path / ".env"


def test_env_file_values_are_read_and_the_environment_wins(env_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file.write_text(
        "# a comment\n"
        "POMOGATOR_WEB_PORT=9000\n"
        "export POMOGATOR_APP_TITLE='Помогатор тест'\n"
        'POMOGATOR_SUPPORT_CONTACT="@help"\n'
        "POMOGATOR_ROLE_MAX_CHARS=100\n"
        "OTHER_APP_SETTING=ignored\n"
        "POMOGATOR_NO_SUCH_SETTING=ignored too\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("POMOGATOR_ROLE_MAX_CHARS", "300")
    settings = load_settings()
    assert settings.web_port == 9000
    assert settings.app_title == "Помогатор тест"
    assert settings.support_contact == "@help"
    assert settings.role_max_chars == 300


def test_names_are_case_insensitive_and_env_file_values_expand_variables(
    env_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DB_HOST", "db.internal")
    env_file.write_text("POMOGATOR_DATABASE_URL=postgresql://app@${DB_HOST}/pomogator\n", encoding="utf-8")
    monkeypatch.setenv("pomogator_log_json", "true")
    settings = load_settings()
    assert settings.database_url == "postgresql://app@db.internal/pomogator"
    assert settings.log_json is True


def test_secrets_stay_secret(env_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POMOGATOR_BOT_TOKEN", "123:very-secret")
    settings = load_settings()
    assert settings.bot_token is not None and settings.bot_token.get_secret_value() == "123:very-secret"
    assert "very-secret" not in repr(settings)


def test_without_env_file_defaults_apply(env_file: Path) -> None:
    settings = load_settings()
    assert not env_file.exists()
    assert settings.database_url == "sqlite:///pomogator.sqlite3"
    assert settings.web_port == 8080
    assert settings.database_pool_size == 20


def test_the_database_pool_size_is_read_and_checked(env_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POMOGATOR_DATABASE_POOL_SIZE", "5")
    assert load_settings().database_pool_size == 5
    monkeypatch.setenv("POMOGATOR_DATABASE_POOL_SIZE", "0")
    with pytest.raises(ConfigError, match=r"^POMOGATOR_DATABASE_POOL_SIZE:"):
        load_settings()


def test_a_bad_value_is_one_line_naming_the_variable(env_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POMOGATOR_WEB_PORT", "eighty")
    with pytest.raises(ConfigError) as failed:
        load_settings()
    message = str(failed.value)
    assert message.startswith("POMOGATOR_WEB_PORT:")
    assert "\n" not in message and "eighty" not in message
