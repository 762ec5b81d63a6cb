"""Step plugins: the fast entry-point reader and the registry, with real distributions on disk.

A step class is checked when the registry loads it: each missing or mistyped piece is a
PluginError naming the entry point, the distribution and the fix. The README's "Writing a
step type" is taken at its word: its code, written to a package, registers and runs.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Generic, Self, TypeVar

import pytest
from pydantic import ValidationInfo, model_validator

from fetchflow import RuleViolation, Step, StepConfig, StepContext, deferred
from fetchflow.errors import PluginError
from fetchflow.registry import ENTRY_POINT_GROUP, EntryPoint, StepRegistry, entry_points
from fetchflow.step import step_type_arguments
from fetchflow.testing import run_step
from fetchflow.workflow.validation import validate_config
from steps.template import TemplateStep

REPO = Path(__file__).resolve().parents[1]

OTHER_STEP = '''\
from pydantic import BaseModel

from fetchflow.step import Step, StepConfig


class OtherConfig(StepConfig):
    text: str = ""


class OtherStep(Step[OtherConfig, str]):
    """Another template step."""

    def run(self, config, ctx):
        return config.text


NOT_A_STEP = BaseModel


class PlainModel(BaseModel):
    text: str = ""


class Blob:
    """Not something a JSON Schema can describe."""


class NoTypesStep(Step):
    def run(self, config, ctx):
        return ""


class PlainConfigStep(Step[PlainModel, str]):
    def run(self, config, ctx):
        return ""


class NoRunStep(Step[OtherConfig, str]):
    """Forgot run."""


class BlobStep(Step[OtherConfig, Blob]):
    def run(self, config, ctx):
        return Blob()


class DisagreeingStep(Step[OtherConfig, str]):
    output_type = int

    def run(self, config, ctx):
        return 1
'''

Install = Callable[[str, str], Path]


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Install]:
    """Install a distribution (a real ``*.dist-info`` folder) on sys.path for this test.

    ``install(dist, entry_points_lines)`` writes its METADATA and entry_points.txt; the
    module ``ffplugin_other`` (a Step subclass, a non-Step and broken steps) sits beside it.
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


@pytest.mark.parametrize(
    ("target", "problem", "hint"),
    [
        pytest.param(
            "NoTypesStep",
            "NoTypesStep does not say its config model",
            "state the config model and output type in the class line: "
            "class NoTypesStep(Step[NoTypesConfig, OutputType])",
            id="no-generics",
        ),
        pytest.param(
            "PlainConfigStep",
            "PlainConfigStep's config model PlainModel is not a fetchflow StepConfig",
            "derive PlainModel from fetchflow.StepConfig (unknown fields are then errors and "
            "values immutable)",
            id="config-not-a-StepConfig",
        ),
        pytest.param(
            "NoRunStep",
            "NoRunStep does not implement run(config, ctx)",
            "add def run(self, config: OtherConfig, ctx: StepContext) -> str to NoRunStep",
            id="no-run",
        ),
        pytest.param(
            "BlobStep",
            "BlobStep's output type Blob has no JSON Schema (Unable to generate pydantic-core "
            "schema for <class 'ffplugin_other.Blob'>)",
            "return a pydantic model, a dataclass or JSON types (str, int, float, bool, "
            "list[...], dict[str, ...]); references to the output are checked against its "
            "schema",
            id="output-not-serialisable",
        ),
        pytest.param(
            "DisagreeingStep",
            "DisagreeingStep sets output_type = int but its class line says str",
            "remove output_type (the class line says it once) or make them the same",
            id="attribute-disagrees-with-generics",
        ),
    ],
)
def test_a_broken_step_class_is_refused_at_registration(
    install: Install, target: str, problem: str, hint: str
) -> None:
    install("ffplugin_other", f"broken = ffplugin_other:{target}")

    with pytest.raises(PluginError) as caught:
        StepRegistry.from_entry_points()

    assert str(caught.value) == (
        f'step type "broken" from ffplugin_other (ffplugin_other:{target}): {problem}\n'
        f"  hint: {hint}"
    )
    assert [caught.value.message, caught.value.hint] == str(caught.value).split("\n  hint: ")


class GreetConfig(StepConfig):
    name: str


_O = TypeVar("_O")


class Greeter(Step[GreetConfig, _O], Generic[_O]):
    """A generic base a step library might share between its steps."""


class GreetStep(Greeter[list[str]]):
    """Greet, once per letter."""

    def run(self, config: GreetConfig, ctx: StepContext) -> list[str]:
        return [f"hi {letter}" for letter in config.name]


def test_types_are_read_from_the_class_line_through_a_generic_base() -> None:
    assert step_type_arguments(GreetStep) == (GreetConfig, list[str])
    assert GreetStep.config_model is GreetConfig
    assert GreetStep.output_type == list[str]
    assert step_type_arguments(TemplateStep) == (TemplateStep.config_model, str)


def test_explicit_config_model_still_counts() -> None:
    assert TemplateStep.config_model.__name__ == "TemplateConfig"
    assert TemplateStep.output_type is str


class WindowConfig(StepConfig):
    """A rule that does not ask deferred() first: it waits by itself while a field is a template."""

    low: int = 0
    high: int = 10

    @model_validator(mode="after")
    def _low_below_high(self) -> Self:
        if self.low >= self.high:
            raise RuleViolation(
                f"low {self.low} must be below high {self.high}",
                fields=("low", "high"),
                hint="lower low or raise high",
            )
        return self


class AskingWindowConfig(WindowConfig):
    """The same rule, asking deferred() first (the rules after it still see the values)."""

    @model_validator(mode="after")
    def _low_below_high(self, info: ValidationInfo) -> Self:  # type: ignore[override]
        if deferred(info, "low", "high"):
            return self
        return WindowConfig._low_below_high(self)


class WindowStep(Step[WindowConfig, int]):
    """The width of the window."""

    def run(self, config: WindowConfig, ctx: StepContext) -> int:
        return config.high - config.low


@pytest.mark.parametrize("model", [WindowConfig, AskingWindowConfig], ids=["by-itself", "asked"])
def test_a_rule_over_a_templated_field_waits(model: type[WindowConfig]) -> None:
    raw = {"low": "<< inputs.low >>", "high": 3}

    assert validate_config(model, raw, frozenset({"low"})) == (None, [])
    _, issues = validate_config(model, {"low": 5, "high": 3}, frozenset())
    assert [(issue.field, issue.message) for issue in issues] == [
        ("low", "low 5 must be below high 3")
    ]


def test_a_waiting_rule_is_checked_once_the_template_is_rendered(tmp_path: Path) -> None:
    from fetchflow.errors import StepError

    assert run_step(WindowStep, {"low": "<< inputs.low >>"}, tmp_path, inputs={"low": 4}) == 6
    with pytest.raises(StepError, match=r'field "low": low 12 must be below high 10 \(rendered'):
        run_step(WindowStep, {"low": "<< inputs.low >>"}, tmp_path, inputs={"low": 12})


def readme_step_package() -> tuple[str, dict[str, str]]:
    """The README's "Writing a step type": its Python module and its entry points."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Writing a step type", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    toml = re.search(r"```toml\n(.*?)```", section, re.DOTALL)
    assert code and toml, "the README shows a step module and its entry point"
    points = dict(re.findall(r'^(\w+) = "([\w.:]+)"$', toml.group(1), re.MULTILINE))
    assert points, toml.group(1)
    return code.group(1), points


def write_package(root: Path, code: str, points: dict[str, str]) -> None:
    """The README's package installed under ``root``: its module and a ``*.dist-info``."""
    for target in points.values():
        module = target.split(":", 1)[0]
        path = root.joinpath(*module.split(".")).with_suffix(".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        for folder in path.relative_to(root).parents:
            (root / folder / "__init__.py").touch()
        path.write_text(code, encoding="utf-8")
    info = root / "my_package-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: my-package\nVersion: 1.0\n", encoding="utf-8"
    )
    lines = "".join(f"{name} = {target}\n" for name, target in points.items())
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}", encoding="utf-8")


@pytest.mark.prefect
def test_the_readme_step_registers_and_runs(prefect_api: str, tmp_path: Path) -> None:
    code, points = readme_step_package()
    (name,) = points
    site = tmp_path / "site"
    write_package(site, code, points)
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        f"name: readme\nsteps:\n  - id: loud\n    type: {name}\n    text: hello\n",
        encoding="utf-8",
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PREFECT_", "FETCHFLOW_", "AWS_", "COV_CORE_"))
    }
    env.update(
        PYTHONPATH=os.pathsep.join([str(REPO), str(site)]),
        FETCHFLOW_HOME=str(tmp_path / "home"),
        PREFECT_API_URL=prefect_api,
        NO_COLOR="1",
    )

    done = subprocess.run(
        [sys.executable, "-m", "fetchflow.cli", "run", str(flow), "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=240,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["status"] == "completed"
    assert document["steps"]["loud"]["output"] == "HELLO"


def test_the_readme_step_runs_in_a_unit_test(tmp_path: Path) -> None:
    code, points = readme_step_package()
    (name,) = points
    write_package(tmp_path / "site", code, points)
    sys.path.insert(0, str(tmp_path / "site"))
    try:
        assert run_step(name, {"text": "<< inputs.word >>"}, tmp_path, inputs={"word": "hi"}) == (
            "HI"
        )
    finally:
        sys.path.remove(str(tmp_path / "site"))
        for module in [m for m in sys.modules if m == "my_package" or m.startswith("my_package.")]:
            del sys.modules[module]
