"""The YAML files of the config groups: dllm's own (`dllm.conf`) and those every plugin ships.

A plugin declares its config package under the `dllm.conf` entry-point group
(`[project.entry-points."dllm.conf"] NAME = "package.conf"`); Hydra searches it
(`hydra_plugins/dllm_searchpath`), and the listings here include it. Only file names and
defaults lists are read here: composing and checking configs is `dllm.config`'s work.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

CONF_MODULE = "dllm.conf"
CONF_GROUP = "dllm.conf"


def plugin_conf_packages() -> list[str]:
    """Python packages holding config group folders, declared by plugins under `dllm.conf`."""
    return [ep.value for ep in entry_points(group=CONF_GROUP)]


def conf_roots(plugins: bool = True) -> list[Any]:
    """The root folders of dllm's config package and (`plugins`) of every plugin's config
    package that imports."""
    from importlib.resources import files

    roots = []
    for package in [CONF_MODULE, *(plugin_conf_packages() if plugins else [])]:
        try:
            roots.append(files(package))
        except ModuleNotFoundError:
            continue
    return roots


def group_options(group: str, plugins: bool = True) -> list[str]:
    """The option names of config group `group` (`algorithm`, `algorithm/estimator`, ...):
    dllm's own YAML files and (`plugins`) those of every plugin's config package."""
    names: set[str] = set()
    for root in conf_roots(plugins):
        folder = root.joinpath(group)
        if folder.is_dir():
            names |= {entry.name[: -len(".yaml")] for entry in folder.iterdir() if entry.name.endswith(".yaml")}
    return sorted(names)


def option_bases(group: str, name: str) -> list[str]:
    """The options of `group` that option `name` starts from: the plain entries of its YAML's
    defaults list that name another option of the group (`tracerl` for `tracerl_value`, `rl` for
    `tracerl`); none for a file not found or with no such entry."""
    from omegaconf import OmegaConf

    for root in conf_roots():
        path = root.joinpath(group, f"{name}.yaml")
        if path.is_file():
            defaults = OmegaConf.create(path.read_text()).get("defaults") or []
            siblings = set(group_options(group))
            return [entry for entry in defaults if isinstance(entry, str) and entry in siblings and entry != name]
    return []


def config_groups() -> list[str]:
    """Every config group (`algorithm`, `algorithm/curriculum`, `experiment`, ...): the folders
    holding YAML options, in dllm's config package and every plugin's."""
    groups: set[str] = set()

    def walk(folder, path: str) -> None:
        for entry in folder.iterdir():
            if entry.is_dir():
                walk(entry, f"{path}{entry.name}/")
            elif entry.name.endswith(".yaml") and path:
                groups.add(path.rstrip("/"))

    for root in conf_roots():
        walk(root, "")
    return sorted(groups)
