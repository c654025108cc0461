"""The command line of what `dllm-eval` and `dllm-generate` point at: a target (see
`dllm.targets`) and config overrides in any order."""

from __future__ import annotations

import argparse
import re

from dllm.errors import ConfigError

# What a config override looks like on the command line: `key=value`, `+key=value`, `++key=value`,
# `group=name`, `group/sub=name` or `~key` (Hydra's grammar; the value may hold anything).
OVERRIDE = re.compile(r"(~[\w./@-]+(=.*)?|(\+\+?)?[A-Za-z_][\w./@-]*=.*)", re.DOTALL)


def target_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """A parser taking what to load (`target`) and config `overrides`, as both commands do."""
    parser = argparse.ArgumentParser(prog=prog, description=description, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("target", help="run directory, checkpoint directory, or model preset")
    parser.add_argument("overrides", nargs="*", help="config overrides, key=value (e.g. sampler.steps=8)")
    return parser


def parse_target_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """`parser`'s arguments, with config overrides accepted in any position among the options
    (`RUN --prompt x sampler.steps=2`): argparse takes only those before the first option as
    `overrides`, the rest come back unrecognised and join them in command-line order. Anything
    else unrecognised is refused, named."""
    args, rest = parser.parse_known_args(argv)
    args.overrides = [*args.overrides, *rest]
    for item in args.overrides:
        if not OVERRIDE.fullmatch(item):
            raise ConfigError(
                f"{item!r} is neither an option of {parser.prog} nor a config override (key=value, +key=value, "
                f"group=name); see {parser.prog} --help"
            )
    return args
