"""Running a matrix step without Prefect: one call per combination, one flat labelled output,
each finished combination checkpointed, a resumed step running only the missing ones (and
the ones whose request changed), a failed combination named after the others ended, each
combination's drafts shown apart."""

from __future__ import annotations

import dataclasses
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field, JsonValue

from fetchflow.errors import StepError
from fetchflow.run.execution import execute_step
from fetchflow.run.matrix_execution import MATRIX_KEPT_KEY
from fetchflow.step import Previews, Step, StepConfig, StepContext
from fetchflow.testing import make_context
from fetchflow.workflow.plan import PlannedStep
from fetchflow.workflow.spec import StepCommon


class Item(BaseModel):
    model_config = {"frozen": True}

    file_name: str
    text: str
    matrix: dict[str, JsonValue] = Field(default_factory=dict)


class EchoConfig(StepConfig):
    text: str
    copies: int = 1


CALLS: list[str] = []
_LOCK = threading.Lock()


class EchoStep(Step[EchoConfig, list[Item]]):
    """Makes ``copies`` items of its text; fails on text that says so; keeps each."""

    billable = True

    def run(self, config: EchoConfig, ctx: StepContext) -> list[Item]:
        with _LOCK:
            CALLS.append(config.text)
        if "fail" in config.text:
            raise StepError(message=f"refused {config.text!r}", retryable=False)
        items = [
            Item(file_name=f"{ctx.step_id}-{n + 1}.txt", text=config.text)
            for n in range(config.copies)
        ]
        for item in items:
            ctx.keep(item.model_dump(mode="json"))
        return items

    def finish_matrix(self, config: EchoConfig, output: list[Item], ctx: StepContext) -> list[Item]:
        return [*output, Item(file_name="sheet.txt", text=f"sheet after {config.text}")]


class WordConfig(StepConfig):
    word: str


class WordStep(Step[WordConfig, str]):
    """Says its word (an output that is not a list)."""

    def run(self, config: WordConfig, ctx: StepContext) -> str:
        return config.word.upper()


def planned(step_cls: type[Step[Any, Any]], raw: dict[str, object], **common: Any) -> PlannedStep:
    return PlannedStep(
        common=StepCommon(id="hero", type="echo", **common),
        step_cls=step_cls,
        raw_config=raw,
        templated=frozenset(k for k, v in raw.items() if isinstance(v, str) and "<<" in v),
        depends_on=(),
        line=1,
    )


def context(tmp_path: Path, kept: object = None) -> tuple[StepContext, list[object]]:
    recorded: list[object] = []
    ctx = make_context(tmp_path, step_id="hero", kept=kept)
    return dataclasses.replace(ctx, on_kept=recorded.append), recorded


AXES = {"product": ["mug", "tote", "poster"], "style": ["ink", "oil"]}
RAW = {"text": "<< matrix.style >> << matrix.product >>", "copies": 2}


@pytest.fixture(autouse=True)
def _no_calls_yet() -> None:
    CALLS.clear()


def test_every_combination_runs_once_and_the_output_is_flat_labelled_and_in_order(
    tmp_path: Path,
) -> None:
    step = planned(EchoStep, RAW, matrix=AXES)
    ctx, recorded = context(tmp_path)

    output = execute_step(step, ctx.templates, ctx)

    assert sorted(CALLS) == sorted(f"{s} {p}" for p in AXES["product"] for s in AXES["style"])
    assert isinstance(output, list) and len(output) == 13  # 6 × 2, then finish_matrix's
    assert [item["text"] for item in output[:12:2]] == [
        "ink mug", "oil mug", "ink tote", "oil tote", "ink poster", "oil poster",
    ]  # fmt: skip
    assert output[0] == {
        "file_name": "hero-mug-ink-1.txt",
        "text": "ink mug",
        "matrix": {"product": "mug", "style": "ink"},
    }
    assert output[1]["file_name"] == "hero-mug-ink-2.txt"
    # finish_matrix saw the flat output and the first combination's config.
    assert output[12] == {"file_name": "sheet.txt", "text": "sheet after ink mug", "matrix": {}}
    items = [i for i in recorded if isinstance(i, dict) and "text" in i]
    assert len(items) == 12 and all(i["matrix"] for i in items)  # kept with their values
    markers = [i[MATRIX_KEPT_KEY] for i in recorded if isinstance(i, dict) and MATRIX_KEPT_KEY in i]
    assert len(markers) == 6


def test_a_resumed_step_runs_only_the_combinations_that_did_not_end(tmp_path: Path) -> None:
    step = planned(EchoStep, RAW, matrix=AXES)
    ctx, recorded = context(tmp_path)
    whole = execute_step(step, ctx.templates, ctx)
    markers = [i for i in recorded if isinstance(i, dict) and MATRIX_KEPT_KEY in i]
    one_missing = [
        m
        for m in markers
        if m[MATRIX_KEPT_KEY]["combination"] != {"product": "tote", "style": "oil"}
    ]
    CALLS.clear()

    again, _ = context(tmp_path, kept=one_missing)
    output = execute_step(step, again.templates, again)

    assert CALLS == ["oil tote"]
    assert output == whole


def test_a_failed_combination_fails_the_step_after_the_others_and_keeps_them(
    tmp_path: Path,
) -> None:
    step = planned(EchoStep, {"text": "<< matrix.word >>"}, matrix={"word": ["a", "fail", "b"]})
    ctx, _ = context(tmp_path)

    with pytest.raises(
        StepError, match=r"^step \"hero\": matrix word=fail: refused 'fail'$"
    ) as caught:
        execute_step(step, ctx.templates, ctx)

    assert sorted(CALLS) == ["a", "b", "fail"]
    assert caught.value.step_id == "hero"
    partial = caught.value.partial_output
    assert isinstance(partial, list) and [item["text"] for item in partial] == ["a", "b"]


def test_an_output_that_is_not_a_list_gives_one_item_per_combination(tmp_path: Path) -> None:
    step = planned(
        WordStep,
        {"word": "<< matrix.a >><< matrix.b >>"},
        matrix={"a": ["x", "y"], "b": ["1", "2"]},
        matrix_mode="zip",
    )
    ctx, recorded = context(tmp_path)

    assert execute_step(step, ctx.templates, ctx) == ["X1", "Y2"]
    assert recorded == []  # free work that makes no file: no checkpoint per combination


def test_a_templated_axis_is_checked_when_rendered_before_any_call(tmp_path: Path) -> None:
    step = planned(EchoStep, RAW, matrix={"product": "<< inputs.products >>", "style": ["ink"]})
    ctx = make_context(tmp_path, step_id="hero", inputs={"products": "mug"})

    with pytest.raises(
        StepError, match=r'^step "hero": field "matrix.product": a matrix axis is a list'
    ):
        execute_step(step, ctx.templates, ctx)
    assert CALLS == []

    ok = make_context(tmp_path, step_id="hero", inputs={"products": ["mug", "cup"]})
    output = execute_step(step, ok.templates, ok)
    assert isinstance(output, list) and [i["text"] for i in output[:4:2]] == ["ink mug", "ink cup"]


def test_a_combination_whose_request_changed_is_made_again_and_the_note_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    step = planned(EchoStep, RAW, matrix=AXES)
    ctx, recorded = context(tmp_path)
    execute_step(step, ctx.templates, ctx)
    CALLS.clear()
    # Edited after that run: the oil combinations render another text, the ink ones not.
    edited = planned(
        EchoStep,
        {
            **RAW,
            "text": "<< matrix.style >> << matrix.product >>"
            "<< '!' if matrix.style == 'oil' else '' >>",
        },
        matrix=AXES,
    )

    again, _ = context(tmp_path, kept=recorded)
    with caplog.at_level("WARNING"):
        output = execute_step(edited, again.templates, again)

    assert sorted(CALLS) == ["oil mug!", "oil poster!", "oil tote!"]
    assert [item["text"] for item in output[:12:2]] == [
        "ink mug", "oil mug!", "ink tote", "oil tote!", "ink poster", "oil poster!",
    ]  # fmt: skip
    assert [r.getMessage() for r in caplog.records] == [
        f"3 of 6 combinations kept from run {ctx.run_id}, 3 made now (3 made again: their "
        "request changed since, e.g. an edited prompt or input: product=mug style=oil; "
        "product=tote style=oil; product=poster style=oil)"
    ]


class DraftStep(Step[EchoConfig, list[Item]]):
    """Shows a draft of each item before making it, as an image step streams partials."""

    produces_files = True

    def run(self, config: EchoConfig, ctx: StepContext) -> list[Item]:
        progress = ctx.progress
        assert progress is not None
        progress.start(config.copies)
        for n in range(config.copies):
            if isinstance(progress, Previews):
                progress.preview(n, "partial 1 of 1", config.text.encode())
            progress.advance()
        return [Item(file_name=f"{n}.txt", text=config.text) for n in range(config.copies)]


class ShownDrafts:
    """A progress that records what it is told, as the run's progress artifact shows it."""

    def __init__(self) -> None:
        self.total = 0
        self.done = 0
        self.drafts: dict[int, tuple[str, bytes]] = {}
        self.lock = threading.Lock()

    def start(self, total: int) -> None:
        self.total = total

    def advance(self, done: int = 1) -> None:
        with self.lock:
            self.done += done

    def preview(self, item: int, label: str, image: bytes) -> None:
        with self.lock:
            self.drafts[item] = (label, image)


class CountOnly:
    """A progress that cannot show drafts."""

    def start(self, total: int) -> None:
        pass

    def advance(self, done: int = 1) -> None:
        pass


def test_each_combination_shows_its_drafts_labelled_with_its_values(tmp_path: Path) -> None:
    step = planned(DraftStep, RAW, matrix={"product": ["mug", "tote"], "style": ["ink"]})
    shown = ShownDrafts()
    ctx = dataclasses.replace(make_context(tmp_path, step_id="hero"), progress=shown)

    execute_step(step, ctx.templates, ctx)

    assert (shown.total, shown.done) == (4, 4)  # 2 combinations × 2 items, one bar
    assert shown.drafts == {  # numbered after the items of the combinations before
        0: ("product=mug style=ink · partial 1 of 1", b"ink mug"),
        1: ("product=mug style=ink · partial 1 of 1", b"ink mug"),
        2: ("product=tote style=ink · partial 1 of 1", b"ink tote"),
        3: ("product=tote style=ink · partial 1 of 1", b"ink tote"),
    }
    # A progress that cannot show drafts is not offered any (the step does not stream).
    seen: list[bool] = []

    class Probe(DraftStep):
        def run(self, config: EchoConfig, ctx: StepContext) -> list[Item]:
            seen.append(isinstance(ctx.progress, Previews))
            return []

    quiet = dataclasses.replace(make_context(tmp_path, step_id="hero"), progress=CountOnly())
    execute_step(
        planned(Probe, RAW, matrix={"product": ["mug"], "style": ["ink"]}), quiet.templates, quiet
    )
    assert seen == [False]


def test_numbers_as_axis_values_name_every_file_after_its_combination(tmp_path: Path) -> None:
    # Slug "1" is also in the file name "hero-1.txt": each file is still named once, right.
    step = planned(EchoStep, {"text": "n << matrix.n >>", "copies": 2}, matrix={"n": [1, 2]})
    ctx, recorded = context(tmp_path)

    output = execute_step(step, ctx.templates, ctx)

    assert isinstance(output, list)
    names = ["hero-1-1.txt", "hero-1-2.txt", "hero-2-1.txt", "hero-2-2.txt"]
    assert [item["file_name"] for item in output[:4]] == names
    kept = [i["file_name"] for i in recorded if isinstance(i, dict) and "text" in i]
    assert sorted(kept) == names


class WarnStep(Step[WordConfig, str]):
    """Warns the same words in every combination (as a skipped image's note does)."""

    def run(self, config: WordConfig, ctx: StepContext) -> str:
        ctx.logger.warning("image 1 of 1: %s; skipped", "blocked")
        return config.word


def test_a_combinations_warning_names_the_combination(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    step = planned(WarnStep, {"word": "<< matrix.thing >>"}, matrix={"thing": ["cat", "100%"]})
    ctx, _ = context(tmp_path)

    with caplog.at_level("WARNING"):
        execute_step(step, ctx.templates, ctx)

    assert sorted(r.getMessage() for r in caplog.records) == [
        "thing=100%: image 1 of 1: blocked; skipped",
        "thing=cat: image 1 of 1: blocked; skipped",
    ]


class SkipStep(Step[EchoConfig, list[Item]]):
    """Makes nothing for a text that says "skip" (as a skipped blocked image); its grid
    is drawn from every combination."""

    def run(self, config: EchoConfig, ctx: StepContext) -> list[Item]:
        return [] if "skip" in config.text else [Item(file_name="hero-1.txt", text=config.text)]

    def finish_matrix(self, config: EchoConfig, output: list[Item], ctx: StepContext) -> list[Item]:
        every = " ".join(str(values["thing"]) for values in ctx.combinations)
        return [*output, Item(file_name="grid.txt", text=every)]


def test_finish_matrix_knows_every_combination_even_one_that_made_nothing(
    tmp_path: Path,
) -> None:
    step = planned(SkipStep, {"text": "<< matrix.thing >>"}, matrix={"thing": ["cat", "skip"]})
    ctx, _ = context(tmp_path)

    output = execute_step(step, ctx.templates, ctx)

    assert isinstance(output, list)
    assert [item["text"] for item in output] == ["cat", "cat skip"]


def test_file_names_say_a_record_by_its_name_and_keep_every_axis_of_long_or_accented_values(
    tmp_path: Path,
) -> None:
    records = [
        {"file_name": f"base-{n}.png", "sha256": f"{n}" * 64, "file_url": f"file:///tmp/{n}.png"}
        for n in (1, 2)
    ]
    axes = {"img": records, "light": ["büyük café", "x" * 80 + " end"]}
    step = planned(EchoStep, {"text": "<< matrix.light >>"}, matrix=axes)
    ctx, _ = context(tmp_path)

    output = execute_step(step, ctx.templates, ctx)

    assert isinstance(output, list)
    assert [item["file_name"] for item in output[:4]] == [
        "hero-base-1-buyuk-cafe-1.txt",
        f"hero-base-1-{'x' * 40}-1.txt",
        "hero-base-2-buyuk-cafe-1.txt",
        f"hero-base-2-{'x' * 40}-1.txt",
    ]


def test_values_that_would_read_the_same_in_a_file_name_get_names_of_their_own(
    tmp_path: Path,
) -> None:
    axes = {"v": ["blue/green", "Blue Green", "red", "日本", "中国"]}
    step = planned(EchoStep, {"text": "<< matrix.v >>"}, matrix=axes)
    ctx, _ = context(tmp_path)

    first = execute_step(step, ctx.templates, ctx)
    again = execute_step(step, ctx.templates, context(tmp_path)[0])

    assert isinstance(first, list) and isinstance(again, list)
    names = [item["file_name"] for item in first[:5]]
    assert len(set(names)) == 5
    assert names[2] == "hero-red-1.txt"  # a name no other combination has stays plain
    assert all(re.fullmatch(r"hero-blue-green-[0-9a-f]{6}-1\.txt", n) for n in names[:2])
    assert all(re.fullmatch(r"hero-combination-[0-9a-f]{6}-1\.txt", n) for n in names[3:])
    assert [item["file_name"] for item in again[:5]] == names  # the same from run to run
