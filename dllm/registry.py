"""Registries: stable short names for components, and third-party plugin discovery.

Every registry entry is a factory: `registry.build(name, **kwargs)` calls it. Built-in
components register when `dllm` is imported; plugins register through the `dllm.plugins`
entry-point group the first time any registry is read, so a plugin needs no import by
the user and no fork of `dllm`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Any, TypeVar

from dllm.errors import DllmError, PluginError, UnknownNameError, did_you_mean

logger = logging.getLogger(__name__)

PLUGIN_GROUP = "dllm.plugins"
CONF_GROUP = "dllm.conf"

T = TypeVar("T", bound=Callable[..., Any])

REGISTRIES: dict[str, Registry] = {}


class DuplicateNameError(DllmError, ValueError):
    """Two components registered under one name."""


class Registry:
    """Maps names to component factories of one kind (`model`, `sampler`, ...)."""

    def __init__(self, kind: str, interface: type | None = None, config_group: str | None = None) -> None:
        if kind in REGISTRIES:
            raise DuplicateNameError(f"a registry of kind {kind!r} exists already")
        self.kind = kind
        self.interface = interface
        self.config_group = config_group or kind  # where this kind's YAML lives (`conf/<config_group>/`)
        self._entries: dict[str, Callable[..., Any]] = {}
        REGISTRIES[kind] = self

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: `@SAMPLERS.register("llada")` over a class or factory function."""

        def decorator(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                existing = _qualified_name(self._entries[name])
                raise DuplicateNameError(
                    f"{self.kind} {name!r} is registered already (by {existing}); "
                    f"choose another name for {_qualified_name(obj)}"
                )
            if not callable(obj):
                raise TypeError(f"{self.kind} {name!r}: {obj!r} is not callable")
            if self.interface is not None and isinstance(obj, type) and not issubclass(obj, self.interface):
                raise TypeError(
                    f"{self.kind} {name!r}: {_qualified_name(obj)} must subclass {_qualified_name(self.interface)}"
                )
            self._entries[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> Callable[..., Any]:
        load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            known = sorted(self._entries) + self.presets()
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}{did_you_mean(name, known)} known: {', '.join(known) or '(none)'}"
            ) from None

    def build(self, name: str, **kwargs: Any) -> Any:
        """The component `name` built with `kwargs`; a name that is not registered but is a
        YAML preset of this kind's config group (e.g. `diffu_grpo`, the `rl` algorithm with
        d1's hyper-parameters) is built from its YAML, `kwargs` overriding its values."""
        load_plugins()
        if name not in self._entries and name in self.presets():
            from dllm.config import build_preset

            return build_preset(self.config_group, name, kwargs)
        return self.get(name)(**kwargs)

    def presets(self) -> list[str]:
        """The YAML options of this kind's config group that are not registered names: presets
        of a registered component with other values."""
        from dllm.config import group_options

        load_plugins()
        return sorted(set(group_options(self.config_group)) - set(self._entries))

    def names(self) -> list[str]:
        load_plugins()
        return sorted(self._entries)

    def name_of(self, obj: Any) -> str | None:
        """The name `obj` (a factory, or an instance of a registered class) is registered under."""
        load_plugins()
        for name, entry in self._entries.items():
            if entry is obj or (isinstance(entry, type) and type(obj) is entry):
                return name
        return None

    def __contains__(self, name: object) -> bool:
        load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        load_plugins()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"


def registry(kind: str) -> Registry:
    """The registry of `kind`; an unknown kind names the known ones."""
    import dllm  # noqa: F401  (registers the built-in components)

    try:
        return REGISTRIES[kind]
    except KeyError:
        known = sorted(REGISTRIES)
        raise UnknownNameError(
            f"unknown component kind {kind!r}{did_you_mean(kind, known)} known: {', '.join(known)}"
        ) from None


def build(kind: str, name: str, **kwargs: Any) -> Any:
    """Build component `name` of `kind` with `kwargs`: `build("sampler", "llada", steps=8)`."""
    return registry(kind).build(name, **kwargs)


_plugins_loaded = False


def load_plugins() -> None:
    """Call every `dllm.plugins` entry point's `register()` once; a failure names the plugin."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            register = ep.load()
            register()
        except Exception as exc:
            raise PluginError(
                f"dllm plugin {ep.name!r} ({ep.value}) failed to load: "
                f"{type(exc).__name__}: {exc}. Fix or uninstall the package that provides it."
            ) from exc
        logger.debug("loaded dllm plugin %s", ep.name)


def plugin_conf_packages() -> list[str]:
    """Python packages holding config group folders, declared by plugins under `dllm.conf`."""
    return [ep.value for ep in entry_points(group=CONF_GROUP)]


def _qualified_name(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
