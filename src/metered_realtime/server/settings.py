"""Configuration sources for ``serve``: flags, then environment, then a TOML file."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from typing import Any

from .config import ServerConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ENV_PREFIX = "METERED_REALTIME_"


def _coerce(field: dataclasses.Field[Any], raw: Any) -> Any:
    kind = str(field.type)
    if not isinstance(raw, str):
        if "tuple" in kind and isinstance(raw, list):
            return tuple(raw)
        return raw
    if raw.lower() in ("none", "") and "None" in kind:
        return None
    if "tuple" in kind:
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if kind.startswith("int"):
        return int(raw)
    if kind.startswith("float"):
        return float(raw)
    return raw


def load_config(
    flags: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    toml_path: str | None = None,
) -> ServerConfig:
    """Merge the three sources; a flag beats a variable beats the file. Unknown keys fail."""
    env = os.environ if env is None else env
    fields = {f.name: f for f in dataclasses.fields(ServerConfig)}
    values: dict[str, Any] = {}
    if toml_path:
        with open(toml_path, "rb") as fh:
            data = tomllib.load(fh)
        section = data.get("server", data)
        for key, raw in section.items():
            name = key.replace("-", "_")
            if name not in fields:
                raise ValueError(f"unknown setting in {toml_path}: {key}")
            values[name] = _coerce(fields[name], raw)
    for name, field in fields.items():
        raw_env = env.get(ENV_PREFIX + name.upper())
        if raw_env is not None:
            values[name] = _coerce(field, raw_env)
    for name, raw in flags.items():
        if raw is not None:
            if name not in fields:
                raise ValueError(f"unknown setting: {name}")
            values[name] = _coerce(fields[name], raw)
    return ServerConfig(**values)
