"""Find providers: the ``accord.providers`` entry-point group, plus explicit registrations.

Built-ins register through the same entry points as third-party kinds, so both are found the
same way. Loading happens once per process, on first use.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import metadata
from typing import Any

from accord import errors
from accord.model.specs import Spec
from accord.providers.base import Provider

GROUP = "accord.providers"

AnyProvider = Provider[Any, Any]


class Registry:
    """Kind name → provider instance."""

    def __init__(self, providers: Mapping[str, AnyProvider] | None = None) -> None:
        self._providers: dict[str, AnyProvider] = dict(providers or {})

    @classmethod
    def from_entry_points(cls) -> Registry:
        registry = cls()
        for entry in metadata.entry_points(group=GROUP):
            provider_class = entry.load()
            if getattr(provider_class, "kind", None) != entry.name:
                raise errors.AccordError(
                    f"entry point {entry.name!r} loads {provider_class!r} whose kind differs"
                )
            registry.register(provider_class())
        return registry

    def register(self, provider: AnyProvider) -> None:
        self._providers[provider.kind] = provider

    def get(self, kind: str) -> AnyProvider:
        try:
            return self._providers[kind]
        except KeyError:
            known = ", ".join(sorted(self._providers))
            raise errors.UnknownKindError(f"unknown kind {kind!r}; known kinds: {known}") from None

    def kinds(self) -> dict[str, type[Spec]]:
        """Kind name → spec model, for validating manifests."""
        return {kind: p.spec_model for kind, p in sorted(self._providers.items())}

    def __contains__(self, kind: object) -> bool:
        return kind in self._providers


_default: Registry | None = None


def default() -> Registry:
    """The registry of every installed provider."""
    global _default
    if _default is None:
        _default = Registry.from_entry_points()
    return _default
