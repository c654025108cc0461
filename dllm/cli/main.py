"""`dllm`: inspect the framework. `dllm list [KIND]` prints the registered components."""

from __future__ import annotations

import argparse

from dllm.cli.common import reports_user_errors
from dllm.registry import REGISTRIES, registry


def list_components(kind: str | None) -> str:
    """One line per kind: `sampler: llada, ...`, or the names of one kind, one per line."""
    import dllm  # noqa: F401  (registers the built-in components)

    if kind is not None:
        return "\n".join(registry(kind).names())
    return "\n".join(f"{name}: {', '.join(REGISTRIES[name].names())}" for name in sorted(REGISTRIES))


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
