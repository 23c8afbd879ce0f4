"""Module attributes resolved on first access, so optional dependencies load only when used."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def lazy_attributes(
    module_name: str, table: Mapping[str, str], public: Iterable[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module's ``__getattr__`` and ``__dir__``: ``table`` maps a name to the module that
    defines it; the first access imports that module and caches the value on ``module_name``.
    """
    names = sorted(public)

    def __getattr__(name: str) -> Any:
        source = table.get(name)
        if source is None:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        try:
            value = getattr(importlib.import_module(source), name)
        except AttributeError:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}") from None
        setattr(sys.modules[module_name], name, value)
        return value

    def __dir__() -> list[str]:
        return list(names)

    return __getattr__, __dir__
