"""Registries: stable short names for components, and third-party plugin discovery.

Every registry entry is a factory: `registry.build(name, **kwargs)` calls it (a registry of
components that may be plain callables, as rewards, says otherwise through `make`). A registry
knows no component and no config: `dllm.build(kind, name, **kwargs)` (in `dllm.config`) also
builds the YAML presets of a kind's config group, which the registry only lists (`presets`). Built-in
components register when `dllm` is imported; plugins register through the `dllm.plugins`
entry-point group the first time any registry is read, so a plugin needs no import by
the user and no fork of `dllm`. A plugin that fails to load (an import error, its
`register()` raising, a name taken already or by a shipped preset) is logged once and left
out, the names it registered with it; the other components load, and a lookup of a name no
registry knows names the broken plugin and its error.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Any, TypeVar

from dllm.config_files import group_options, option_bases
from dllm.errors import DllmError, PluginError, UnknownNameError, did_you_mean

logger = logging.getLogger(__name__)

PLUGIN_GROUP = "dllm.plugins"

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
            self.check_entry(name, obj)
            if _plugin_names is not None and name not in self._entries:  # a plugin's register() is running
                self._refuse_preset_name(name, obj)
                _plugin_names.append((self, name))
            self._entries[name] = obj
            return obj

        return decorator

    def check_entry(self, name: str, obj: Any) -> None:
        """Refuse `obj` at registration: not callable, or a class outside this kind's interface."""
        if not callable(obj):
            raise TypeError(f"{self.kind} {name!r}: {obj!r} is not callable")
        if self.interface is not None and isinstance(obj, type) and not issubclass(obj, self.interface):
            raise TypeError(
                f"{self.kind} {name!r}: {_qualified_name(obj)} must subclass {_qualified_name(self.interface)}"
            )

    def make(self, name: str, entry: Any, kwargs: dict[str, Any]) -> Any:
        """The component the entry `name` gives with `kwargs`: the factory called."""
        return entry(**kwargs)

    def _refuse_preset_name(self, name: str, obj: Any) -> None:
        # `dllm-train` would still compose dllm's YAML of that name while `dllm.build` built the plugin's.
        if name in group_options(self.config_group, plugins=False):
            raise DuplicateNameError(
                f"{self.kind} {name!r} is a preset dllm ships (conf/{self.config_group}/{name}.yaml); "
                f"choose another name for {_qualified_name(obj)}"
            )

    def get(self, name: str) -> Callable[..., Any]:
        load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            presets = self.presets()
            if name in presets:
                raise UnknownNameError(
                    f"{self.kind} {name!r} is a YAML preset (conf/{self.config_group}/{name}.yaml), not a registered "
                    f"name: build it with dllm.build({self.kind!r}, {name!r})"
                ) from None
            known = sorted(self._entries) + presets
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}{did_you_mean(name, known)} known: {', '.join(known) or '(none)'}"
                + "".join(f"; plugin {plugin!r} failed to load: {error}" for plugin, error in PLUGIN_FAILURES.items())
            ) from None

    def build(self, name: str, **kwargs: Any) -> Any:
        """The registered component `name` built with `kwargs` (`dllm.build` builds presets too)."""
        return self.make(name, self.get(name), kwargs)

    def presets(self) -> list[str]:
        """The YAML options of this kind's config group that are not registered names: presets
        of a registered component with other values."""
        load_plugins()
        return sorted(set(group_options(self.config_group)) - set(self._entries))

    def preset_of(self, name: str) -> str | None:
        """The registered name preset `name` builds: the option its YAML starts from, followed
        through other presets (`tracerl_value` -> `tracerl` -> `rl`); None when it names none."""
        seen = {name}
        while name not in self._entries:
            bases = [base for base in option_bases(self.config_group, name) if base not in seen]
            if not bases:
                return None
            name = bases[0]
            seen.add(name)
        return name

    def names(self) -> list[str]:
        load_plugins()
        return sorted(self._entries)

    def name_of(self, obj: Any) -> str | None:
        """The name `obj` (a factory, or an instance of a registered class) is registered under."""
        load_plugins()
        obj = getattr(obj, "func", obj) if isinstance(obj, functools.partial) else obj  # Hydra's `_partial_`
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
    """The registry of `kind`; an unknown kind names the known ones. (Importing this module ran
    `dllm/__init__.py`, which registers the built-in components.)"""
    try:
        return REGISTRIES[kind]
    except KeyError:
        known = sorted(REGISTRIES)
        raise UnknownNameError(
            f"unknown component kind {kind!r}{did_you_mean(kind, known)} known: {', '.join(known)}"
        ) from None


_plugins_loaded = False
_plugin_names: list[tuple[Registry, str]] | None = None  # what the plugin now loading registered
PLUGIN_FAILURES: dict[str, str] = {}  # plugin name -> why it failed to load
_plugin_packages: dict[str, str] = {}  # broken plugin -> the top-level package of its entry point


def load_plugins() -> None:
    """Call every `dllm.plugins` entry point's `register()` once. A plugin that fails is logged
    (naming it and the error), its registrations are undone, and the others still load."""
    global _plugins_loaded, _plugin_names
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group=PLUGIN_GROUP):
        _plugin_names = []
        try:
            ep.load()()
        except Exception as exc:
            for registry_of_kind, name in _plugin_names:
                del registry_of_kind._entries[name]
            PLUGIN_FAILURES[ep.name] = f"{type(exc).__name__}: {exc}"
            _plugin_packages[ep.name] = ep.value.split(":")[0].split(".")[0]
            logger.warning(
                "dllm plugin %r (%s) failed to load and is left out: %s. Fix or uninstall the package providing it.",
                ep.name,
                ep.value,
                PLUGIN_FAILURES[ep.name],
            )
        else:
            logger.debug("loaded dllm plugin %s", ep.name)
        finally:
            _plugin_names = None


def check_plugin_of(target: str) -> None:
    """Raise the load error of the broken plugin whose package holds `target` (a dotted path,
    e.g. a YAML `_target_`), so its components fail with that error, not a later one."""
    load_plugins()
    package = target.split(".")[0]
    for plugin, top in _plugin_packages.items():
        if top == package != "dllm":
            error = PLUGIN_FAILURES[plugin]
            raise PluginError(f"{target} belongs to dllm plugin {plugin!r}, which failed to load: {error}")


def _qualified_name(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
