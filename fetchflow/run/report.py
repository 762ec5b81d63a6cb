"""What a run produced: per-step status, output and error, and the run's outcome.

Plain data (no Prefect): the runner fills it, the CLI prints it, ``--json`` dumps it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["RunReport", "RunStatus", "StepResult", "StepStatus"]

StepStatus = Literal["completed", "failed", "skipped"]
RunStatus = Literal["completed", "partial", "failed", "interrupted"]


@dataclass
class StepResult:
    """How one step ended.

    Attributes:
        status: completed, failed or skipped.
        output: The step's output as JSON data (None unless completed).
        error: Why it failed or was skipped.
        seconds: How long it ran (0 when it never started).
        attempts: How many times it was tried.
        reused: Where its output came from when it did not run (resume, cache hit).
        notes: What the step warned about while it ran (shown under its terminal line).
    """

    status: StepStatus
    output: object = None
    error: str | None = None
    seconds: float = 0.0
    attempts: int = 0
    reused: str | None = None
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        """The ``--json`` shape of one step (``reused`` only when the output was reused,
        ``notes`` only when the step warned)."""
        document: dict[str, object] = {
            "status": self.status,
            "output": self.output,
            "error": self.error,
        }
        if self.reused is not None:
            document["reused"] = self.reused
        if self.notes:
            document["notes"] = list(self.notes)
        return document


@dataclass
class RunReport:
    """How a whole run ended.

    Attributes:
        workflow: The workflow's name.
        run_id: The Prefect flow run id.
        status: completed (every step), partial (some failed under continue), failed,
            interrupted (a stop was requested: Ctrl-C or SIGTERM; resumable).
        steps: Each step's result, in file order.
        message: The run's final message (the failing step's error when it failed).
        url: The run's page in the Prefect UI, when a server is running.
        stop_signal: The signal that interrupted the run (``signal.SIGINT``: 2), if any.
    """

    workflow: str
    run_id: str
    status: RunStatus = "completed"
    steps: dict[str, StepResult] = field(default_factory=dict)
    message: str = ""
    url: str | None = None
    stop_signal: int | None = None

    def to_json(self) -> dict[str, object]:
        """The document ``fetchflow run --json`` prints."""
        return {
            "workflow": self.workflow,
            "run_id": self.run_id,
            "status": self.status,
            "message": self.message,
            "steps": {step_id: result.to_json() for step_id, result in self.steps.items()},
        }

    @property
    def exit_code(self) -> int:
        """0 when the run completed (continue failures included), 1 when it failed, 128 +
        the signal's number when it was interrupted (130 for Ctrl-C, 143 for SIGTERM)."""
        if self.status == "interrupted":
            return 128 + (self.stop_signal or 2)
        return 1 if self.status == "failed" else 0
