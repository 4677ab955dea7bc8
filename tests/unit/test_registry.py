"""The component registry."""

from skyline.cli.components import REGISTRY


def test_serving_a_component_brings_what_it_needs():
    from skyline.cli.runner import with_needs

    assert [c.name for c in with_needs(["flux"])] == ["webapp", "flux"]
    assert [c.name for c in with_needs(["flux", "webapp", "roomba"])] == [
        "webapp", "flux", "roomba"]


def test_every_component_has_help_and_a_unique_name():
    for name, comp in REGISTRY.items():
        assert comp.name == name and comp.help
        for need in comp.needs:
            assert need in REGISTRY
