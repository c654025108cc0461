"""`dllm`: inspect the framework. `dllm list [KIND]` prints the registered components."""

from __future__ import annotations

import argparse

from dllm import registry as registries
from dllm.cli.common import reports_user_errors
from dllm.registry import REGISTRIES, registry


def list_components(kind: str | None) -> str:
    """One line per kind: `sampler: llada, ...` (YAML presets of a registered component after
    it, as `name (preset)`), or the names of one kind, one per line; then a line per plugin
    that failed to load: `plugin acme: BROKEN (ImportError: ...)`."""
    import dllm  # noqa: F401  (registers the built-in components)

    def names(registry_of_kind) -> list[str]:
        return registry_of_kind.names() + [f"{name} (preset)" for name in registry_of_kind.presets()]

    if kind is not None:
        lines = names(registry(kind))
    else:
        lines = [f"{name}: {', '.join(names(REGISTRIES[name]))}" for name in sorted(REGISTRIES)]
    broken = [f"plugin {plugin}: BROKEN ({error})" for plugin, error in registries.PLUGIN_FAILURES.items()]
    return "\n".join(lines + broken)


@reports_user_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="dllm", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    list_parser = commands.add_parser("list", help="print registered components")
    list_parser.add_argument("kind", nargs="?", help="model, sampler, algorithm, reward or task")
    args = parser.parse_args(argv)
    if args.command == "list":
        print(list_components(args.kind))


if __name__ == "__main__":
    main()
