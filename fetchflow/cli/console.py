"""The terminal side of a run: live progress lines and the closing summary.

Written to stderr so that ``--json`` output on stdout stays one clean document.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from typing import TextIO

from fetchflow.run.report import RunReport, StepResult
from fetchflow.workflow.plan import Plan, PlannedStep

__all__ = ["ConsoleProgress", "format_summary"]

_MARKS = {"completed": "✓", "failed": "✗", "skipped": "–"}
_COLORS = {"completed": "32", "failed": "31", "skipped": "33", "started": "36"}


class ConsoleProgress:
    """Prints a line when a run starts, when each step starts and when it ends."""

    def __init__(self, plan: Plan, stream: TextIO | None = None) -> None:
        self.plan = plan
        self.stream = stream or sys.stderr
        self.color = bool(getattr(self.stream, "isatty", lambda: False)())
        self.width = max((len(step_id) for step_id in plan.steps), default=4)
        self._lock = threading.Lock()

    def _paint(self, text: str, status: str) -> str:
        return f"\x1b[{_COLORS[status]}m{text}\x1b[0m" if self.color else text

    def _line(self, text: str) -> None:
        # A reader gone (`| head`, a closed terminal) ends the display, never a step or
        # the run: a write error here failed the step and left the run unfinished.
        with self._lock, contextlib.suppress(OSError, ValueError):
            print(text, file=self.stream, flush=True)

    def run_started(self, report: RunReport) -> None:
        """Announce the run with its id (and UI link when there is one)."""
        where = f" · {report.url}" if report.url else ""
        self._line(f"▶ {report.workflow} · run {report.run_id}{where}")

    def step_started(self, step: PlannedStep, attempt: int) -> None:
        """A step (or a retry of it) started."""
        note = "started" if attempt == 1 else f"retrying (attempt {attempt})"
        self._line(self._paint(f"  ▸ {step.id:<{self.width}}  {note}", "started"))

    def step_finished(self, step: PlannedStep, result: StepResult) -> None:
        """A step completed, failed or was skipped."""
        mark = _MARKS[result.status]
        if result.status == "completed" and result.reused:
            detail = result.reused
        elif result.status == "completed":
            detail = f"completed in {result.seconds:.2f}s"
        else:
            detail = (result.error or result.status).replace("\n", "\n      ")
        self._line(self._paint(f"  {mark} {step.id:<{self.width}}  {detail}", result.status))
        for note in dict.fromkeys(result.notes):  # each warning once, in order
            self._line(f"      ! {note}".replace("\n", "\n        "))


def format_summary(report: RunReport) -> str:
    """The closing block: every step's status and time, and the run's outcome."""
    width = max((len(step_id) for step_id in report.steps), default=4)
    lines = ["", f"{report.workflow}: {report.status}  (run {report.run_id})"]
    for step_id, result in report.steps.items():
        ran = result.status != "skipped" and not result.reused
        timing = f"{result.seconds:6.2f}s" if ran else "      -"
        tries = f"  {result.attempts} attempts" if result.attempts > 1 else ""
        # Why a step did not run here: reused (resume, cache, --only) or not selected.
        why = result.reused or (
            result.error
            if result.status == "skipped" and (result.error or "").startswith("not selected")
            else None
        )
        lines.append(
            f"  {_MARKS[result.status]} {step_id:<{width}}  {result.status:<9} {timing}{tries}"
            + (f"  {why}" if why else "")
        )
    if report.status != "completed":
        lines.append(report.message)
    if report.url:
        lines.append(f"view the run: {report.url}")
    return "\n".join(lines)
