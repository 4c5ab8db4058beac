"""The Dockerfile, compose file and .env.example stay consistent with the code (no Docker engine runs here)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pomogator.config import ENV_PREFIX, Settings
from pomogator.heartbeat import STALE_AFTER_S, is_healthy

ROOT = Path(__file__).resolve().parents[2]


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(hadolint).exists():
        pytest.fail("hadolint is not installed (it is part of the dev extra)")
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_as_non_root_with_entrypoint_and_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.count("FROM ") >= 2  # multi-stage
    assert re.search(r"^USER 10001", text, re.M)
    assert 'ENTRYPOINT ["pomogator"]' in text
    assert "HEALTHCHECK" in text and '"pomogator", "healthcheck"' in text
    assert "SECRET" not in text and "TOKEN" not in text


def test_constraints_pin_every_runtime_dependency_as_installed() -> None:
    """The image installs constraints.txt's versions: they must be the ones these tests run with."""
    result = subprocess.run(
        [sys.executable, str(ROOT / ".ci" / "pin-constraints")], capture_output=True, text=True, check=True
    )
    assert (ROOT / "constraints.txt").read_text() == result.stdout, (
        "constraints.txt differs from the installed dependencies: install with `pip install -c constraints.txt`, "
        "or after changing dependencies run `.venv/bin/python .ci/pin-constraints > constraints.txt`"
    )
    text = (ROOT / "Dockerfile").read_text()
    assert "constraints.txt" in text and "pip install -c constraints.txt" in text


def test_env_example_documents_every_setting() -> None:
    example = (ROOT / ".env.example").read_text()
    documented = set(re.findall(rf"^#?\s*({ENV_PREFIX}[A-Z0-9_]+)=", example, re.M))
    expected = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    # Internal tuning knobs that a deployment does not need to see are allowed to stay out.
    optional = {
        ENV_PREFIX + n
        for n in (
            "OPENROUTER_MAX_RETRIES",
            "YOOKASSA_TIMEOUT",
            "MONTH_DAYS",
            "YEAR_DAYS",
            "ROLE_MAX_CHARS",
            "FLOOD_MESSAGES_PER_MINUTE",
            "SHUTDOWN_GRACE_SECONDS",
            "MEMORY_TRIM_SECONDS",
        )
    }
    missing = expected - documented - optional
    assert not missing, f".env.example lacks {sorted(missing)}"
    unknown = documented - expected
    assert not unknown, f".env.example names unknown settings {sorted(unknown)}"


def test_compose_services_and_healthchecks() -> None:
    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "migrate", "bot", "web"} <= set(services)
    assert services["migrate"]["command"] == ["db", "migrate"]
    assert services["migrate"]["healthcheck"] == {"disable": True}
    for name in ("bot", "web"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert "healthcheck" in services[name]
    assert services["web"]["environment"]["POMOGATOR_WEB_HOST"] == "0.0.0.0"
    assert "healthcheck" in services["postgres"]


def test_heartbeat(tmp_path: Path) -> None:
    beat = tmp_path / "beat"
    assert is_healthy(beat)  # nothing long-running here: a one-shot command is never unhealthy
    beat.touch()
    assert is_healthy(beat)
    assert not is_healthy(beat, now=time.time() + STALE_AFTER_S + 1)


def test_compose_webhook_override_serves_the_bot_from_web() -> None:
    yaml = pytest.importorskip("yaml")
    base = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    webhook = yaml.safe_load((ROOT / "docker-compose.webhook.yml").read_text())["services"]
    # The polling bot is left out (a profile nobody enables by default) and web must get the secret.
    assert webhook["bot"]["profiles"] == ["polling"]
    assert "POMOGATOR_TELEGRAM_WEBHOOK_SECRET" in webhook["web"]["environment"]
    assert set(webhook) <= set(base)
    # Shared state for several instances, and room for the shutdown: requests, then answers in progress.
    assert base["web"]["environment"]["POMOGATOR_REDIS_URL"].startswith("redis://")
    grace = Settings.model_fields["shutdown_grace_seconds"].default
    assert int(base["web"]["stop_grace_period"].rstrip("s")) > 2 * grace
    assert int(base["bot"]["stop_grace_period"].rstrip("s")) > grace


def test_compose_takes_secrets_from_env_only() -> None:
    for name in ("docker-compose.yml", "docker-compose.webhook.yml", "Dockerfile"):
        text = (ROOT / name).read_text()
        for line in text.splitlines():
            if re.search(r"(SECRET|TOKEN|API_KEY|PASSWORD)[A-Z_]*:\s*\S", line):
                assert "${" in line, f"{name}: {line.strip()}"
