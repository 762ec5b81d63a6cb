"""Step types that exist only for the test suite, registered through a real entry point.

``tests/conftest.py`` writes a ``fetchflow_teststeps-0.0.0.dist-info`` folder whose
``entry_points.txt`` names these classes in the ``fetchflow.steps`` group, so
:meth:`fetchflow.StepRegistry.from_entry_points` finds them exactly as it finds a
third-party plugin. Each states its config model and output type once, in its class line
(``Step[EchoConfig, JsonValue]``), as the README tells plugin authors to; the built-in steps
set ``config_model`` and ``output_type`` as well, so both ways stay tested.

```yaml
- id: a
  type: echo
  value: [1, 2, 3]              # output: the value itself, native
- id: nap
  type: sleep
  seconds: 0.5                  # output: {"marker", "started", "finished", ...}
  started_file: /tmp/nap-up     # created when the step starts
  after_file: /tmp/other-up     # first wait (at most wait_limit_seconds) for this file
- id: flaky
  type: fail
  message: provider said no
  fail_times: 2                 # then "ok"; -1 (default) fails every time
  state_file: /tmp/attempts     # counts attempts across retries
  then_sleep_seconds: 0         # once done failing, sleep before returning "ok"
- id: broken
  type: crash                   # raises ValueError("boom")
- id: files
  type: list_output
  count: 2                      # output: [{"file_url", "file_name"}, ...]
- id: poster
  type: priced                  # billable: price x count, approval edits prompt and count
  prompt: a poster
  count: 2
  price: 0.04
```
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from fetchflow import CostEstimate, RuleViolation, Step, StepConfig, StepContext, StepError
from fetchflow.settings import Settings

__all__ = [
    "CrashStep",
    "EchoStep",
    "FailStep",
    "Item",
    "ListOutputStep",
    "PricedStep",
    "SleepOutput",
    "SleepStep",
]

#: Sleep in slices this long, so a timeout (an exception sent to the thread) lands soon.
SLEEP_SLICE_SECONDS = 0.02


class EchoConfig(StepConfig):
    """Fields of an ``echo`` step."""

    value: JsonValue = Field(description="Any JSON value; it becomes the output as it is.")


class EchoStep(Step[EchoConfig, JsonValue]):
    """Return the configured value unchanged (lists stay lists)."""

    def run(self, config: EchoConfig, ctx: StepContext) -> JsonValue:
        """Return ``value``."""
        return config.value


def sleep_until(done: Callable[[], bool], deadline: float) -> bool:
    """Sleep in short slices until ``done()`` or the deadline; return ``done()``."""
    while not done() and (left := deadline - time.monotonic()) > 0:
        time.sleep(min(SLEEP_SLICE_SECONDS, left))
    return done()


class SleepConfig(StepConfig):
    """Fields of a ``sleep`` step."""

    seconds: float = Field(ge=0, description="How long to sleep.")
    marker: str = Field("", description="Copied to the output, to tell steps apart.")
    started_file: str | None = Field(None, description="Created as soon as the step starts.")
    after_file: str | None = Field(
        None, description="Wait until this file exists (at most wait_limit_seconds) first."
    )
    wait_limit_seconds: float = Field(10, gt=0, description="How long after_file may take.")


class SleepOutput(BaseModel):
    """When the sleep started and finished (``time.monotonic()`` seconds)."""

    model_config = ConfigDict(frozen=True)

    marker: str
    started: float
    finished: float
    found_after_file: bool


class SleepStep(Step[SleepConfig, SleepOutput]):
    """Sleep for a while in small slices, so that a timeout can interrupt it."""

    def run(self, config: SleepConfig, ctx: StepContext) -> SleepOutput:
        """Wait for ``after_file`` if given, sleep ``seconds`` and say when."""
        started = time.monotonic()
        if config.started_file:
            Path(config.started_file).touch()
        found = True
        if config.after_file:
            found = sleep_until(
                lambda: Path(config.after_file or "").exists(), started + config.wait_limit_seconds
            )
        sleep_until(lambda: False, time.monotonic() + config.seconds)
        return SleepOutput(
            marker=config.marker,
            started=started,
            finished=time.monotonic(),
            found_after_file=found,
        )


class FailConfig(StepConfig):
    """Fields of a ``fail`` step."""

    message: str = Field(description="The StepError message.")
    fail_times: int = Field(-1, ge=-1, description="Failures before it succeeds; -1: always.")
    retryable: bool = Field(True, description="The StepError's retryable flag.")
    state_file: str | None = Field(None, description="Where attempts are counted.")
    then_sleep_seconds: float = Field(
        0, ge=0, description="Once done failing, sleep this long before returning."
    )

    @model_validator(mode="after")
    def _counting_needs_a_state_file(self) -> Self:
        # No deferred() here on purpose: a RuleViolation over a templated field waits by itself.
        if self.fail_times >= 0 and self.state_file is None:
            raise RuleViolation(
                f"fail_times {self.fail_times} needs a state_file to count attempts in",
                fields=("state_file", "fail_times"),
                hint="give state_file: a path, or leave fail_times at -1 (always fail)",
            )
        return self


def count_attempt(state_file: Path) -> int:
    """Add one to the attempt counter kept in ``state_file`` and return the new count."""
    attempts = int(state_file.read_text(encoding="utf-8")) + 1 if state_file.exists() else 1
    state_file.write_text(str(attempts), encoding="utf-8")
    return attempts


class FailStep(Step[FailConfig, str]):
    """Raise a StepError, always or for the first ``fail_times`` attempts."""

    def run(self, config: FailConfig, ctx: StepContext) -> str:
        """Fail while the attempt count is within ``fail_times``, then return ``"ok"``."""
        attempt = count_attempt(Path(config.state_file)) if config.state_file else 1
        if config.fail_times < 0 or attempt <= config.fail_times:
            raise StepError(
                message=config.message,
                hint="this is the test suite's fail step doing its job",
                retryable=config.retryable,
            )
        sleep_until(lambda: False, time.monotonic() + config.then_sleep_seconds)
        return "ok"


class CrashConfig(StepConfig):
    """A ``crash`` step has no fields."""


class CrashStep(Step[CrashConfig, str]):
    """Raise a plain ValueError, the way a buggy plugin would."""

    def run(self, config: CrashConfig, ctx: StepContext) -> str:
        """Raise ``ValueError("boom")``."""
        raise ValueError("boom")


class Item(BaseModel):
    """One produced file."""

    model_config = ConfigDict(frozen=True)

    file_url: str
    file_name: str


class ListOutputConfig(StepConfig):
    """Fields of a ``list_output`` step."""

    count: int = Field(ge=0, le=100, description="How many items to produce.")


class ListOutputStep(Step[ListOutputConfig, list[Item]]):
    """Produce ``count`` items named ``item-<n>.png``."""

    def run(self, config: ListOutputConfig, ctx: StepContext) -> list[Item]:
        """Return the items, numbered from 0."""
        return [
            Item(
                file_url=f"https://example.test/{ctx.step_id}/item-{n}.png",
                file_name=f"item-{n}.png",
            )
            for n in range(config.count)
        ]


class PricedConfig(StepConfig):
    """Fields of a ``priced`` step: a billable step with a published price."""

    prompt: str = Field(description="What it makes.")
    count: int = Field(1, ge=1, le=10, description="How many items.")
    price: float = Field(0.01, ge=0, description="Price of one item in USD (0: free).")


class PricedStep(Step[PricedConfig, JsonValue]):
    """A billable step: costs ``price`` per item, so approval forms and estimates see it."""

    billable = True
    approval_fields = ("prompt", "count")

    @classmethod
    def estimate(cls, config: PricedConfig, settings: Settings) -> CostEstimate | None:
        return CostEstimate(
            cost_usd=config.price * config.count,
            images=config.count,
            detail=f"{config.count} x ${config.price}",
        )

    def run(self, config: PricedConfig, ctx: StepContext) -> JsonValue:
        return {"prompt": config.prompt, "count": config.count}
