"""The deploy docs, the compose files and .env.example agree where an operator follows them step by step (no Docker
engine runs here: the files are read, not run)."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest

from pomogator.config import MIN_WEBHOOK_SECRET_LENGTH, parse_networks

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "docs" / "deploy.md"


def load_yaml(text: str) -> Any:
    """YAML as compose reads it, its ``!reset`` and ``!override`` tags kept as ``("!reset", value)``."""
    yaml = pytest.importorskip("yaml")

    class Loader(yaml.SafeLoader):  # type: ignore[misc,name-defined]
        pass

    def tagged(loader: Any, node: Any) -> tuple[str, Any]:
        if isinstance(node, yaml.SequenceNode):
            value: Any = loader.construct_sequence(node)
        elif isinstance(node, yaml.MappingNode):
            value = loader.construct_mapping(node)
        else:
            value = loader.construct_scalar(node)
        return node.tag, value

    for tag in ("!reset", "!override"):
        Loader.add_constructor(tag, tagged)
    return yaml.load(text, Loader=Loader)


def interpolate_defaults(value: str) -> str:
    """``${NAME:-default}`` read as compose does when NAME is not set."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def section(text: str, title: str) -> str:
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def prose(text: str) -> str:
    """The text with its line breaks and indents as single spaces."""
    return " ".join(text.split())


def shell_lines(text: str) -> list[str]:
    """The lines of the text's ```sh blocks."""
    return [line.strip() for block in re.findall(r"```sh\n(.*?)```", text, re.S) for line in block.splitlines()]


def env_example_value(name: str) -> str:
    found = re.findall(rf"^{name}=(.*)$", (ROOT / ".env.example").read_text(), re.M)
    assert len(found) == 1, name
    return str(found[0])


def compose_network() -> tuple[ipaddress.IPv4Network, ipaddress.IPv4Network, ipaddress.IPv4Address]:
    """The subnet, the containers' range and the gateway docker-compose.yml pins, with .env.example's prefix."""
    compose = load_yaml((ROOT / "docker-compose.yml").read_text())
    [config] = compose["networks"]["default"]["ipam"]["config"]
    prefix = re.findall(r"^# NETWORK_PREFIX=(.*)$", (ROOT / ".env.example").read_text(), re.M)
    assert len(prefix) == 1
    for key in ("subnet", "ip_range", "gateway"):
        assert config[key].startswith("${NETWORK_PREFIX:-" + prefix[0] + "}."), (key, config[key])
    subnet = ipaddress.IPv4Network(interpolate_defaults(config["subnet"]))
    ip_range = ipaddress.IPv4Network(interpolate_defaults(config["ip_range"]))
    gateway = ipaddress.IPv4Address(interpolate_defaults(config["gateway"]))
    return subnet, ip_range, gateway


def test_compose_network_is_pinned_and_env_example_trusts_only_its_gateway() -> None:
    """The default trusted proxy is the one address a proxy on the host is seen from, not every Docker network on
    the host (172.16.0.0/12 also covered every other container)."""
    subnet, ip_range, gateway = compose_network()
    assert subnet.is_private and subnet.prefixlen == 24
    assert ip_range.subnet_of(subnet) and ip_range != subnet
    assert gateway in ip_range
    trusted = parse_networks(env_example_value("POMOGATOR_WEB_TRUSTED_PROXIES"))
    assert [str(network) for network in trusted] == [f"{gateway}/32"]


def docs_proxy_overlay() -> dict[str, Any]:
    blocks = re.findall(r"```yaml\n(.*?)```", DEPLOY.read_text(), re.S)
    overlays = [load_yaml(block) for block in blocks if "caddy:" in block]
    assert len(overlays) == 1
    overlay: dict[str, Any] = overlays[0]
    return overlay


def test_docs_scale_web_behind_a_proxy_container_web_trusts() -> None:
    """Scaling web: the overlay drops the fixed published port (the second replica could not take it), and the
    proxy's pinned address is in the compose network, outside the containers' range, and what the docs trust."""
    overlay = docs_proxy_overlay()["services"]
    assert overlay["web"]["ports"] == ("!reset", [])
    assert overlay["web"]["deploy"]["replicas"] > 1
    address = ipaddress.IPv4Address(overlay["caddy"]["networks"]["default"]["ipv4_address"])
    subnet, ip_range, gateway = compose_network()
    assert address in subnet and address not in ip_range and address != gateway
    text = DEPLOY.read_text()
    assert f"POMOGATOR_WEB_TRUSTED_PROXIES={address}`" in text
    assert "COMPOSE_FILE=docker-compose.yml:docker-compose.webhook.yml:docker-compose.proxy.yml" in text
    assert str(address) in (ROOT / ".env.example").read_text()
    # The Caddyfile that goes with it finds every instance by the service's name.
    assert "dynamic a web 8080" in text


def test_webhook_switch_leaves_no_polling_bot_and_fills_the_existing_secret_line() -> None:
    """The bot's container goes while the base file still names it, the overlay stays on for later commands, and the
    secret fills the line .env.example has instead of adding a second one."""
    header = (ROOT / "docker-compose.webhook.yml").read_text().split("\nservices:", 1)[0]
    webhook = section(DEPLOY.read_text(), "Webhook mode (and several instances)")
    for text in (header, webhook):
        steps = [line.lstrip("# ").strip() for line in text.splitlines()]
        rm = next(n for n, line in enumerate(steps) if line.startswith("docker compose rm -sf bot"))
        compose_file = next(
            n for n, line in enumerate(steps) if "COMPOSE_FILE=docker-compose.yml:docker-compose.webhook.yml" in line
        )
        up = next(n for n, line in enumerate(steps) if line.startswith("docker compose up -d"))
        assert rm < compose_file < up
        assert "-f docker-compose" not in text
        assert not re.search(r"WEBHOOK_SECRET=.*>> ?\.env", text)
        new_secret = "POMOGATOR_TELEGRAM_WEBHOOK_SECRET=$(openssl rand -hex 32)"
        assert f'sed -i "s/^POMOGATOR_TELEGRAM_WEBHOOK_SECRET=.*/{new_secret}/" .env' in text
    env_example = (ROOT / ".env.example").read_text()
    assert len(re.findall(r"^POMOGATOR_TELEGRAM_WEBHOOK_SECRET=", env_example, re.M)) == 1
    assert "several web instances" not in (ROOT / "README.md").read_text()


def test_the_secret_length_is_documented_where_it_is_set() -> None:
    rule = f"{MIN_WEBHOOK_SECRET_LENGTH}-256"
    readme_row = next(
        line
        for line in (ROOT / "README.md").read_text().splitlines()
        if line.startswith("| `POMOGATOR_TELEGRAM_WEBHOOK_SECRET`")
    )
    assert f"{rule} characters of A-Z a-z 0-9 _ -" in readme_row
    assert f"{rule} chars" in (ROOT / ".env.example").read_text()
    upgrades = section(DEPLOY.read_text(), "Upgrades")
    assert f"shorter than {MIN_WEBHOOK_SECRET_LENGTH} characters" in upgrades
    assert "too short to be safe" in prose(upgrades)
    assert "openssl rand -hex 32" in prose(upgrades) and "bot set-webhook" in prose(upgrades)


def test_rollback_restores_into_an_empty_database_with_bot_and_web_stopped() -> None:
    """``pg_restore --clean`` leaves a newer version's tables behind and the next upgrade fails on them: it is only
    for a dump of the running version."""
    text = DEPLOY.read_text()
    upgrades = section(text, "Upgrades")
    rollback = upgrades.split("Migrations only move forward", 1)[1]
    commands = shell_lines(rollback)
    order = ["docker compose stop bot web", "dropdb", "createdb", "pg_restore", "docker compose up -d"]
    at = [next(n for n, line in enumerate(commands) if step in line) for step in order]
    assert at == sorted(at), commands
    assert not any("--clean" in line for line in commands)
    backups = section(text, "Backups")
    assert any("--clean --if-exists" in line for line in shell_lines(backups))
    assert not any("--clean" in line for line in shell_lines(text.replace(backups, "")))


def test_docs_commands_work_in_both_modes() -> None:
    """``docker compose start`` creates nothing (the webhook mode has no bot container), and plain ``ps`` hides the
    exited migrate."""
    text = DEPLOY.read_text()
    assert "docker compose start" not in text
    for line in shell_lines(text):
        if line.startswith("docker compose ps"):
            assert line.startswith("docker compose ps -a"), line
        if line.startswith("docker compose stop bot web"):
            assert "webhook mode: docker compose stop web" in line, line


def test_docs_describe_the_upgrade_order_compose_follows() -> None:
    upgrades = prose(section(DEPLOY.read_text(), "Upgrades"))
    assert "one by one), stop every old process" in upgrades
    assert "recreated after it succeeded" not in upgrades
    assert "stops bot and web, runs migrate, then starts the new bot and web" in upgrades
    assert "didn't complete successfully" in upgrades and "docker compose logs migrate" in upgrades
