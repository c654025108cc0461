"""`dllm`: inspect the framework.

dllm list                  # every kind: registered components, presets, experiments, trainers, ...
dllm list sampler          # the names of one kind, one per line
dllm list experiment       # any config group: experiment, trainer, curriculum, algorithm/estimator
dllm list algorithm        # each preset says what it builds: `tracerl (preset of rl)`
"""

from __future__ import annotations

import argparse

from dllm import registry as registries
from dllm.cli.common import reports_user_errors
from dllm.config_files import config_groups, group_options
from dllm.errors import UnknownNameError, did_you_mean
from dllm.registry import REGISTRIES


def kinds() -> dict[str, list[str]]:
    """Each kind's names: a registry's components, then its YAML presets as `name (preset of BASE)`,
    BASE the registered component it builds (`tracerl (preset of rl)`; `name (preset)` when its
    YAML names none); a
    config group no registry owns (experiment, trainer, curriculum) its options. A nested group
    is listed under its last part (`algorithm/curriculum` as `curriculum`)."""
    import dllm  # noqa: F401  (registers the built-in components)

    listed = {
        kind: registry.names() + [preset_label(registry, name) for name in registry.presets()]
        for kind, registry in REGISTRIES.items()
    }
    owned = {registry.config_group for registry in REGISTRIES.values()}
    for group in config_groups():
        kind = group.rsplit("/", 1)[-1]
        if group not in owned and kind not in listed:
            listed[kind] = group_options(group)
    return listed


def preset_label(registry, name: str) -> str:
    base = registry.preset_of(name)
    return f"{name} (preset of {base})" if base else f"{name} (preset)"


def list_components(kind: str | None) -> str:
    """One line per kind (`sampler: llada, ...`), or the names of one kind (a kind or a config
    group path), one per line; then a line per plugin that failed to load:
    `plugin acme: BROKEN (ImportError: ...)`."""
    listed = kinds()
    if kind is not None:
        groups = {group: group.rsplit("/", 1)[-1] for group in config_groups()}
        name = groups.get(kind, kind)
        if name not in listed:
            known = sorted(listed)
            raise UnknownNameError(
                f"unknown component kind {kind!r}{did_you_mean(kind, known)} known: {', '.join(known)}"
            )
        lines = listed[name]
    else:
        lines = [f"{name}: {', '.join(listed[name])}" for name in sorted(listed)]
    broken = [f"plugin {plugin}: BROKEN ({error})" for plugin, error in registries.PLUGIN_FAILURES.items()]
    return "\n".join(lines + broken)


@reports_user_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="dllm", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    list_parser = commands.add_parser("list", help="print registered components, presets and config options")
    list_parser.add_argument("kind", nargs="?", help="a component kind or config group (see `dllm list`)")
    args = parser.parse_args(argv)
    if args.command == "list":
        print(list_components(args.kind))


if __name__ == "__main__":
    main()
