"""``fetchflow.testing``: a step's unit test runs it the way a run does, with real files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fetchflow import Step, StepConfig, StepContext
from fetchflow.errors import PluginError, StepError, TemplateError, WorkflowInvalid
from fetchflow.registry import StepRegistry
from fetchflow.storage import AssetRecord, LocalStore
from fetchflow.testing import STARTED_AT, make_context, run_step


class NoteConfig(StepConfig):
    text: str
    file_name: str = "note.txt"


class NoteStep(Step[NoteConfig, AssetRecord]):
    """Store a text file through the run's asset store."""

    def run(self, config: NoteConfig, ctx: StepContext) -> AssetRecord:
        return ctx.store.put(
            config.text.encode(),
            file_name=config.file_name,
            file_type="text/plain",
            step_id=ctx.step_id,
            run_id=ctx.run_id,
        )


class SecretConfig(StepConfig):
    name: str


class SecretStep(Step[SecretConfig, int]):
    """The length of a secret (never the secret itself)."""

    def run(self, config: SecretConfig, ctx: StepContext) -> int:
        return len(ctx.secret(config.name))


def test_context_keeps_everything_under_the_folder_given(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "hi.txt").write_text("hi << inputs.who >>", encoding="utf-8")

    ctx = make_context(tmp_path, step_id="hero", inputs={"who": "ann"}, upstream={"a": [1]})

    assert ctx.settings.home == tmp_path / ".fetchflow"
    assert isinstance(ctx.store, LocalStore)
    assert ctx.store.root == (tmp_path / ".fetchflow" / "assets").resolve()
    assert ctx.scope["inputs"] == {"who": "ann"}
    assert ctx.scope["a"] == {"output": [1]}
    assert ctx.started_at == STARTED_AT
    assert ctx.render_file("hi.txt") == "hi ann"


def test_a_step_writes_through_the_local_store(tmp_path: Path) -> None:
    record = run_step(NoteStep, {"text": "<< inputs.text >>"}, tmp_path, inputs={"text": "ok"})

    assert record.file_name == "note.txt"
    assert record.file_size == 2
    assert record.step_id == "step"
    stored = LocalStore(tmp_path / ".fetchflow" / "assets", spool_dir=tmp_path / "spool")
    assert stored.read(record.storage_uri) == b"ok"


def test_secrets_are_what_the_test_gives(tmp_path: Path) -> None:
    ctx = make_context(tmp_path, secrets={"token": "abcd"})

    assert run_step(SecretStep, {"name": "token"}, tmp_path, ctx=ctx) == 4
    with pytest.raises(StepError, match='no secret "other" in this test'):
        run_step(SecretStep, {"name": "other"}, tmp_path, ctx=ctx)
    with pytest.raises(StepError, match='cannot read secret "token": this run has no secret'):
        run_step(SecretStep, {"name": "token"}, tmp_path)


def test_fields_are_checked_as_fetchflow_validate_checks_them(tmp_path: Path) -> None:
    with pytest.raises(WorkflowInvalid) as caught:
        run_step(NoteStep, {"txt": "hi"}, tmp_path)

    assert str(caught.value) == (
        '<workflow>: step "step" (NoteStep) field "text": missing required field "text"\n'
        "  hint: add text: <value>\n"
        '<workflow>: step "step" (NoteStep) field "txt": unknown field "txt"; did you mean '
        '"text"?\n  hint: rename txt to text'
    )


def test_a_template_that_fails_is_a_template_error(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match=r'field "text": template failed: .*nope'):
        run_step(NoteStep, {"text": "<< inputs.nope >>"}, tmp_path)


def test_a_broken_class_is_refused_as_the_registry_would(tmp_path: Path) -> None:
    class Untyped(Step):  # type: ignore[type-arg]
        def run(self, config: object, ctx: StepContext) -> str:
            return ""

    with pytest.raises(
        PluginError,
        match=re.escape('step type "Untyped": Untyped does not say its config model\n  hint: '),
    ):
        run_step(Untyped, {}, tmp_path)


# -- the suite's own test steps, by their registered names --------------------------------


def test_echo_passes_an_upstream_list_on_natively(
    plugin_registry: StepRegistry, tmp_path: Path
) -> None:
    assert run_step("echo", {"value": "<< a.output >>"}, tmp_path, upstream={"a": [1, 2]}) == [
        1,
        2,
    ]


def test_list_output_returns_its_models(plugin_registry: StepRegistry, tmp_path: Path) -> None:
    items = run_step("list_output", {"count": "<< inputs.n >>"}, tmp_path, inputs={"n": 2})

    assert [item.file_name for item in items] == ["item-0.png", "item-1.png"]  # type: ignore[attr-defined]


def test_fail_rule_over_a_templated_field_is_checked_once_rendered(
    plugin_registry: StepRegistry, tmp_path: Path
) -> None:
    """FailConfig's rule does not call deferred(): it waits by itself, then is checked."""
    config = {"message": "no", "fail_times": "<< inputs.n >>"}

    with pytest.raises(
        StepError,
        match=re.escape('field "state_file": fail_times 0 needs a state_file to count attempts in'),
    ):
        run_step("fail", config, tmp_path, inputs={"n": 0})
    with pytest.raises(StepError, match=r'^step "step": no\n  hint: this is the test suite'):
        run_step("fail", config, tmp_path, inputs={"n": -1})


def test_an_unknown_type_name_says_the_nearest(
    plugin_registry: StepRegistry, tmp_path: Path
) -> None:
    with pytest.raises(PluginError, match='no step type "ecko" is registered; did you mean "echo"'):
        run_step("ecko", {}, tmp_path)
