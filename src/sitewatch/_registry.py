"""Registries by name: detectors, imagery sources and exporters register themselves here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

__all__ = ["Registry"]


class Registry(Generic[T]):
    """Named entries of one kind: ``register`` (a decorator), ``names``, and lookup that fails clearly."""

    def __init__(self, kind: str, missing: Callable[[str], Exception]) -> None:
        self.kind = kind
        self._missing = missing
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: make the decorated object available under ``name`` (once; re-imports are fine)."""

        def deco(obj: T) -> T:
            if self._items.get(name, obj) is not obj:
                raise ValueError(f"a {self.kind} named {name!r} is registered already")
            self._items[name] = obj
            return obj

        return deco

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise self._missing(
                f"no {self.kind} named {name!r}; choose one of: {', '.join(self.names())}"
            ) from None
