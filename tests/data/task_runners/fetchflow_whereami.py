"""A step type for the task-runner tests: it says which process ran it.

Registered through its own entry point (``whereami = fetchflow_whereami:WhereAmIStep``,
written by the test into a temp ``*.dist-info`` folder), so a Dask worker has to import a
plugin module to run it, exactly as it would a third-party step library.

```yaml
- id: a
  type: whereami
  note: anything          # copied to the output
  seconds: 0.2            # sleep first (steps overlap on several workers)
```
"""

from __future__ import annotations

import os
import time

from pydantic import BaseModel, ConfigDict, Field

from fetchflow import Step, StepConfig, StepContext

__all__ = ["WhereAmIStep", "Where"]


class WhereConfig(StepConfig):
    """Fields of a ``whereami`` step."""

    note: str = Field("", description="Copied to the output.")
    seconds: float = Field(0, ge=0, le=60, description="Sleep this long first.")


class Where(BaseModel):
    """The process that ran the step."""

    model_config = ConfigDict(frozen=True)

    pid: int
    note: str


class WhereAmIStep(Step[WhereConfig, Where]):
    """Sleep ``seconds``, then return this process's id and the note."""

    def run(self, config: WhereConfig, ctx: StepContext) -> Where:
        """Say where the step ran."""
        time.sleep(config.seconds)
        return Where(pid=os.getpid(), note=config.note)
