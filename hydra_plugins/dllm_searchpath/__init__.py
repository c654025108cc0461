"""Hydra search-path plugin: config groups shipped by dllm plugins appear in dllm's groups.

A plugin declares `[project.entry-points."dllm.conf"] NAME = "package.conf"`; this adds
`pkg://package.conf` to Hydra's search path, so `reward=acme_len` composes after install.
"""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class DllmPluginSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from dllm.config_files import plugin_conf_packages

        for package in plugin_conf_packages():
            search_path.append(provider=f"dllm-plugin:{package}", path=f"pkg://{package}")
