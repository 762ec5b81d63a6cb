"""A step type for the task-runner tests: it says which process ran it.

Registered through its own entry point (``whereami = fetchflow_whereami:WhereAmIStep``,
written by the test into a temp ``*.dist-info`` folder), so a Dask worker has to import a
plugin module to run it, exactly as it would a third-party step library.

```yaml
- id: a
  type: whereami
  note: anything          # copied to the output
  seconds: 0.2            # sleep first (steps overlap on several workers)
  keep: 2                 # record 2 made-up paid items (ctx.keep) first
  fail: out of luck       # then raise a StepError carrying those items as partial output
```
"""

from __future__ import annotations

import os
import time

from pydantic import BaseModel, ConfigDict, Field

from fetchflow import Step, StepConfig, StepContext, StepError

__all__ = ["Where", "WhereAmIStep"]


class WhereConfig(StepConfig):
    """Fields of a ``whereami`` step."""

    note: str = Field("", description="Copied to the output.")
    seconds: float = Field(0, ge=0, le=60, description="Sleep this long first.")
    keep: int = Field(0, ge=0, le=10, description="Record this many paid items first.")
    fail: str = Field("", description="Then fail with this message (partial output: the items).")


class Where(BaseModel):
    """The process that ran the step, and the Prefect API its task run reported to."""

    model_config = ConfigDict(frozen=True)

    pid: int
    note: str
    api: str


class WhereAmIStep(Step[WhereConfig, Where]):
    """Sleep ``seconds``, then return this process's id and the note (or fail)."""

    def run(self, config: WhereConfig, ctx: StepContext) -> Where:
        """Say where the step ran; keep items and fail when asked to."""
        time.sleep(config.seconds)
        items = [{"file_name": f"kept-{n}.png", "pid": os.getpid()} for n in range(config.keep)]
        for item in items:
            ctx.keep(item)
        if config.fail:
            raise StepError(
                message=config.fail,
                hint="the task-runner tests' step doing its job",
                partial_output=items,
            )
        return Where(pid=os.getpid(), note=config.note, api=_task_run_api())


def _task_run_api() -> str:
    """The address of the Prefect API this step's task run is recorded on."""
    from prefect.context import TaskRunContext

    context = TaskRunContext.get()
    return str(context.client.api_url) if context is not None else ""
