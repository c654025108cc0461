import pytest

import dllm
from dllm.errors import PluginError, UnknownNameError
from dllm.registry import DuplicateNameError, Registry, registry


@pytest.fixture
def widgets():
    from dllm.registry import REGISTRIES

    reg = Registry("widget_test")
    yield reg
    del REGISTRIES["widget_test"]


def test_register_get_build_names(widgets):
    @widgets.register("double")
    def double(x: int = 1) -> int:
        return 2 * x

    assert widgets.get("double") is double
    assert widgets.build("double", x=4) == 8
    assert widgets.names() == ["double"]
    assert "double" in widgets and len(widgets) == 1
    assert widgets.name_of(double) == "double"


def test_unknown_name_lists_known_and_close_matches():
    with pytest.raises(UnknownNameError) as info:
        dllm.SAMPLERS.get("lada")
    message = str(info.value)
    assert "unknown sampler 'lada'" in message
    assert "did you mean 'llada'" in message
    assert "known: " in message and "llada" in message.split("known: ")[1]


def test_duplicate_name_is_an_error(widgets):
    widgets.register("a")(lambda: 1)
    with pytest.raises(DuplicateNameError, match="registered already"):
        widgets.register("a")(lambda: 2)


def test_same_object_may_register_twice(widgets):
    def f():
        return 1

    widgets.register("f")(f)
    widgets.register("f")(f)
    assert widgets.names() == ["f"]


def test_interface_is_enforced(widgets):
    typed = Registry("typed_test", interface=dllm.Sampler)
    try:
        with pytest.raises(TypeError, match="must subclass"):
            typed.register("bad")(int)
    finally:
        from dllm.registry import REGISTRIES

        del REGISTRIES["typed_test"]


def test_build_by_kind_and_unknown_kind():
    sampler = dllm.build("sampler", "llada", steps=4, block_length=4)
    assert sampler.steps == 4
    with pytest.raises(UnknownNameError, match="unknown component kind 'samplr' — did you mean 'sampler'"):
        registry("samplr")


def test_public_registries_hold_the_builtins():
    assert "llada" in dllm.SAMPLERS.names()
    assert {"llada", "llada_tiny", "llada_small"} <= set(dllm.MODELS.names())
    assert "sft" in dllm.ALGORITHMS.names()
    assert "exact_match" in dllm.REWARDS.names()
    assert "addition" in dllm.TASKS.names()


def test_broken_plugin_fails_loudly_naming_it(monkeypatch):
    import dllm.registry as reg

    class BrokenEntryPoint:
        name, value = "broken", "broken_pkg.plugin:register"

        def load(self):
            raise ImportError("No module named 'broken_pkg'")

    monkeypatch.setattr(reg, "_plugins_loaded", False)
    monkeypatch.setattr(reg, "entry_points", lambda group: [BrokenEntryPoint()] if group == reg.PLUGIN_GROUP else [])
    with pytest.raises(PluginError, match=r"dllm plugin 'broken' \(broken_pkg.plugin:register\) failed to load"):
        dllm.SAMPLERS.names()
