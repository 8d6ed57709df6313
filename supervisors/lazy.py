"""Names a package loads on first use (PEP 562), written once for every package face.

A face (``trustchain.supervisors``, each actor package) imports its light names
eagerly and lets heavy ones (the runtime, an actor implementation) load only when
someone asks for them, so that importing the vocabulary does not load the machinery.
Imports nothing itself.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_names(
    package: str, homes: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: each name in ``homes`` is
    imported from ``package.<homes[name]>`` the first time it is looked up."""

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{home}"), name)
        setattr(sys.modules[package], name, value)  # later look-ups do not come back here
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *homes})

    return __getattr__, __dir__
