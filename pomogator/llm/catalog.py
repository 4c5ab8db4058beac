"""The models catalog: which OpenRouter models Pomogator offers, and their daily limits."""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pomogator.errors import CatalogError, UnknownModel

DEFAULT_MAX_OUTPUT_TOKENS = 4096


@dataclass(frozen=True, slots=True)
class Model:
    id: str
    title: str
    free_daily: int
    premium_daily: int
    vision: bool
    context_length: int
    max_output_tokens: int

    @property
    def key(self) -> str:
        """A short stable name for menus' buttons (Telegram allows 64 bytes of data per button): derived from the id,
        so a menu sent before the catalog changed still picks the model its button names."""
        return hashlib.blake2s(self.id.encode(), digest_size=6).hexdigest()

    @property
    def input_tokens(self) -> int:
        """What a request may take of the context: the rest is kept for the answer."""
        return self.context_length - self.max_output_tokens

    @property
    def premium_only(self) -> bool:
        return self.free_daily == 0

    def daily_limit(self, premium: bool) -> int:
        # PostgreSQL's one-trip statement decides the same in SQL (``services.opening.open_sql``); a test runs
        # both on the same cases (``test_the_one_trip_statement_decides_as_the_services_do``).
        return self.premium_daily if premium else self.free_daily


@dataclass(frozen=True, slots=True)
class Catalog:
    models: tuple[Model, ...]
    default_id: str

    @property
    def default(self) -> Model:
        return self.get(self.default_id)

    @property
    def ids(self) -> list[str]:
        return [m.id for m in self.models]

    def get(self, model_id: str) -> Model:
        for model in self.models:
            if model.id == model_id:
                return model
        raise UnknownModel(model_id, self.ids)

    def find(self, model_id: str | None) -> Model | None:
        return next((m for m in self.models if m.id == model_id), None)

    def by_key(self, key: str) -> Model:
        """The model whose ``Model.key`` is ``key``; raises UnknownModel (a menu older than a catalog without it)."""
        for model in self.models:
            if model.key == key:
                return model
        raise UnknownModel(key, self.ids)

    def vision_models(self) -> list[Model]:
        return [m for m in self.models if m.vision]


def _field(raw: dict[str, Any], key: str, kind: type, where: str, default: Any = None) -> Any:
    if key not in raw:
        if default is not None:
            return default
        raise CatalogError(f"{where}: missing {key!r}")
    value = raw[key]
    # bool is an int subclass; a limit of `true` is a typo, not 1.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CatalogError(f"{where}: {key!r} must be {kind.__name__}, got {value!r}")
    return value


def parse_catalog(data: dict[str, Any], source: str) -> Catalog:
    raw_models = data.get("models")
    if not isinstance(raw_models, list) or not raw_models:
        raise CatalogError(f"{source}: no [[models]] entries")
    models: list[Model] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_models):
        where = f"{source}: model #{index + 1}"
        if not isinstance(raw, dict):
            raise CatalogError(f"{where}: must be a table")
        model_id = _field(raw, "id", str, where).strip()
        where = f"{source}: model {model_id!r}"
        if not model_id:
            raise CatalogError(f"{source}: model #{index + 1} has an empty id")
        if model_id in seen:
            raise CatalogError(f"{where}: duplicate id")
        seen.add(model_id)
        model = Model(
            id=model_id,
            title=_field(raw, "title", str, where, default=model_id),
            free_daily=_field(raw, "free_daily", int, where),
            premium_daily=_field(raw, "premium_daily", int, where),
            vision=_field(raw, "vision", bool, where, default=False),
            context_length=_field(raw, "context_length", int, where),
            max_output_tokens=_field(raw, "max_output_tokens", int, where, default=DEFAULT_MAX_OUTPUT_TOKENS),
        )
        for key in ("free_daily", "premium_daily"):
            if getattr(model, key) < 0:
                raise CatalogError(f"{where}: {key} must not be negative")
        # A model nobody may use would still be offered to premium users, who would be refused every request.
        if model.premium_daily == 0:
            raise CatalogError(f"{where}: premium_daily must be positive")
        if model.premium_daily < model.free_daily:
            raise CatalogError(f"{where}: premium_daily is lower than free_daily")
        if model.context_length <= 0 or model.max_output_tokens <= 0:
            raise CatalogError(f"{where}: context_length and max_output_tokens must be positive")
        if model.max_output_tokens >= model.context_length:
            raise CatalogError(f"{where}: max_output_tokens must be smaller than context_length")
        models.append(model)
    default_id = data.get("default", models[0].id)
    if default_id not in seen:
        raise CatalogError(f"{source}: default model {default_id!r} is not in the catalog")
    default = next(m for m in models if m.id == default_id)
    if default.premium_only:
        raise CatalogError(f"{source}: default model {default_id!r} must be available to free users")
    return Catalog(models=tuple(models), default_id=default_id)


def load_catalog(path: Path | None = None) -> Catalog:
    """Load the catalog from ``path`` or the built-in one; raises CatalogError naming the problem."""
    if path is None:
        text = resources.files("pomogator.llm").joinpath("models.toml").read_text("utf-8")
        source = "built-in models.toml"
    else:
        try:
            text = path.read_text("utf-8")
        except OSError as exc:
            raise CatalogError(f"{path}: cannot read ({exc.strerror})") from None
        source = str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{source}: {exc}") from None
    return parse_catalog(data, source)
