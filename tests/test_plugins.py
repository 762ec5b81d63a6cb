"""Step plugins: the fast entry-point reader and the registry, with real distributions on disk."""

from __future__ import annotations

import importlib.metadata
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fetchflow.errors import PluginError
from fetchflow.registry import ENTRY_POINT_GROUP, EntryPoint, StepRegistry, entry_points
from steps.template import TemplateStep

OTHER_STEP = '''\
from pydantic import BaseModel

from fetchflow.step import Step, StepConfig


class OtherConfig(StepConfig):
    text: str = ""


class OtherStep(Step[OtherConfig, str]):
    """Another template step."""

    config_model = OtherConfig
    output_type = str

    def run(self, config, ctx):
        return config.text


NOT_A_STEP = BaseModel
'''

Install = Callable[[str, str], Path]


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Install]:
    """Install a distribution (a real ``*.dist-info`` folder) on sys.path for this test.

    ``install(dist, entry_points_lines)`` writes its METADATA and entry_points.txt; the
    module ``ffplugin_other`` (a Step subclass and a non-Step) sits beside it.
    """
    (tmp_path / "ffplugin_other.py").write_text(OTHER_STEP, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))

    def install(dist: str, lines: str) -> Path:
        info = tmp_path / f"{dist}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n", encoding="utf-8"
        )
        (info / "entry_points.txt").write_text(
            f"[{ENTRY_POINT_GROUP}]\n{lines}\n", encoding="utf-8"
        )
        return info

    yield install
    sys.modules.pop("ffplugin_other", None)


@pytest.mark.parametrize(
    "group", ["fetchflow.steps", "console_scripts", "pytest11", "no.such.group"]
)
def test_entry_points_agree_with_importlib_metadata(group: str) -> None:
    expected = {
        (point.name, point.value, normalized(point.dist.name if point.dist else ""))
        for point in importlib.metadata.entry_points(group=group)
    }

    found = {(point.name, point.value, normalized(point.dist)) for point in entry_points(group)}

    assert found == expected


def test_builtin_template_step_is_an_ordinary_entry_point() -> None:
    assert EntryPoint("template", "steps.template:TemplateStep", "fetchflow") in entry_points(
        ENTRY_POINT_GROUP
    )
    assert StepRegistry.from_entry_points().get("template") is TemplateStep


def test_entry_points_of_a_distribution_found_on_given_paths(
    install: Install, tmp_path: Path
) -> None:
    install("ffplugin_other", "other = ffplugin_other:OtherStep [extra]\n# comment\n")

    found = entry_points(ENTRY_POINT_GROUP, paths=[str(tmp_path), str(tmp_path / "missing")])

    assert found == [EntryPoint("other", "ffplugin_other:OtherStep", "ffplugin_other")]
    assert found[0].load().__name__ == "OtherStep"  # type: ignore[attr-defined]


def test_agreement_includes_a_freshly_installed_distribution(install: Install) -> None:
    install("ffplugin_other", "other = ffplugin_other:OtherStep")

    names = {point.name for point in entry_points(ENTRY_POINT_GROUP)}
    expected = {point.name for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}

    assert names == expected
    assert {"template", "other"} <= names


def test_registry_loads_a_third_party_step(install: Install) -> None:
    install("ffplugin_other", "other = ffplugin_other:OtherStep")

    registry = StepRegistry.from_entry_points()

    assert {"other", "template"} <= set(registry.names())
    assert registry.get("other").summary() == "Another template step."  # type: ignore[union-attr]


def test_same_type_name_from_two_distributions_is_refused(install: Install) -> None:
    install("ffplugin_other", "template = ffplugin_other:OtherStep")

    with pytest.raises(PluginError) as caught:
        StepRegistry.from_entry_points()

    assert str(caught.value) == (
        'step type "template" is registered twice: by ffplugin_other '
        "(ffplugin_other:OtherStep) and by fetchflow (steps.template:TemplateStep)\n"
        "  hint: uninstall one of them or rename its entry point in the "
        '"fetchflow.steps" group'
    )


def test_same_class_seen_twice_is_not_a_duplicate(install: Install) -> None:
    install("ffplugin_copy", "template = steps.template:TemplateStep")

    assert StepRegistry.from_entry_points().get("template") is TemplateStep


def test_entry_point_whose_module_is_missing_is_refused(install: Install) -> None:
    install("ffplugin_broken", "broken = ffplugin_no_such_module:Step")

    with pytest.raises(
        PluginError,
        match=re.escape(
            'step type "broken" from ffplugin_broken cannot be loaded '
            "(ffplugin_no_such_module:Step): ModuleNotFoundError: No module named "
            "'ffplugin_no_such_module'\n  hint: reinstall ffplugin_broken"
        ),
    ) as caught:
        StepRegistry.from_entry_points()

    assert isinstance(caught.value.__cause__, ModuleNotFoundError)


def test_entry_point_naming_a_missing_attribute_is_refused(install: Install) -> None:
    install("ffplugin_other", "other = ffplugin_other:Nope")

    with pytest.raises(PluginError, match=r"cannot be loaded \(ffplugin_other:Nope\): Attribute"):
        StepRegistry.from_entry_points()


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("ffplugin_other:NOT_A_STEP", id="a-pydantic-model"),
        pytest.param("ffplugin_other:OtherConfig", id="a-config"),
        pytest.param("json:dumps", id="a-function"),
    ],
)
def test_entry_point_that_is_not_a_step_is_refused(install: Install, target: str) -> None:
    install("ffplugin_other", f"odd = {target}")

    with pytest.raises(
        PluginError,
        match=re.escape(
            f'step type "odd" from ffplugin_other points at {target}, which is not a '
            "fetchflow Step subclass\n  hint: the entry point must name a class derived "
            "from fetchflow.Step"
        ),
    ):
        StepRegistry.from_entry_points()
