"""A matrix step's checkpoint per combination: how it is written, read back and counted.

A combination of a billable or file-making matrix step that ends is kept at once, as a kept
item of its step (:meth:`fetchflow.run.checkpoints.Checkpoints.keep`)::

    {"fetchflow_matrix": {"combination": {"product": "mug", "style": "ink"},
                          "config": "<hash of its rendered request>",
                          "run_id": "<the run that made it>",
                          "output": [...]}}

``--resume`` and ``--only``/``--from`` hand such items back to the step
(``StepContext.kept``); :func:`fetchflow.run.matrix_execution.execute_matrix` takes a
combination's output back only when its ``config`` is the hash of the combination's request
as rendered now (:meth:`fetchflow.run.reuse.GenerationCache.key`): an edited prompt, another
input or another upstream image makes it again, never reuses a stale one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fetchflow.workflow.matrix import combination_count

if TYPE_CHECKING:
    from fetchflow.workflow.plan import PlannedStep

__all__ = [
    "MATRIX_KEPT_KEY",
    "EarlierCombinations",
    "FinishedCombination",
    "combination_checkpoint",
    "combination_key",
    "describe_kept",
    "is_combination_checkpoint",
    "written_combinations",
]

#: The key of a kept item that records one finished combination's output.
MATRIX_KEPT_KEY = "fetchflow_matrix"


def combination_key(values: Mapping[str, object]) -> str:
    """A combination's axis values as one comparable string."""
    return json.dumps(values, sort_keys=True, default=str)


def combination_checkpoint(
    values: Mapping[str, object], config: str, output: object, run_id: str
) -> dict[str, object]:
    """The kept item that records a finished combination (see the module docstring)."""
    return {
        MATRIX_KEPT_KEY: {
            "combination": dict(values),
            "config": config,
            "run_id": run_id,
            "output": output,
        }
    }


def is_combination_checkpoint(item: object) -> bool:
    """Whether a kept item records a finished combination (not an image of one)."""
    return isinstance(item, dict) and isinstance(item.get(MATRIX_KEPT_KEY), dict)


@dataclass(frozen=True)
class FinishedCombination:
    """A combination an earlier run finished.

    Attributes:
        output: Its output (JSON data).
        config: The hash of its rendered request then; None for a checkpoint written before
            requests were recorded (never reused).
        run_id: The run that made it ("" when not recorded).
    """

    output: object
    config: str | None
    run_id: str


@dataclass(frozen=True)
class EarlierCombinations:
    """What earlier runs of a matrix step left in its kept items.

    Attributes:
        finished: The finished combinations by :func:`combination_key`, oldest first.
        kept: The items (paid images) each combination kept on its way, by its key.
    """

    finished: dict[str, list[FinishedCombination]] = field(default_factory=dict)
    kept: dict[str, list[object]] = field(default_factory=dict)

    @classmethod
    def read(cls, kept: object) -> EarlierCombinations:
        """Sort a step's kept items (a list, or anything else: nothing) by combination."""
        finished: dict[str, list[FinishedCombination]] = {}
        items: dict[str, list[object]] = {}
        for item in kept if isinstance(kept, list) else []:
            if not isinstance(item, dict):
                continue
            marker = item.get(MATRIX_KEPT_KEY)
            if isinstance(marker, dict) and isinstance(marker.get("combination"), dict):
                config = marker.get("config")
                finished.setdefault(combination_key(marker["combination"]), []).append(
                    FinishedCombination(
                        marker.get("output"),
                        config if isinstance(config, str) else None,
                        str(marker.get("run_id") or ""),
                    )
                )
            elif isinstance(item.get("matrix"), dict) and item["matrix"]:
                items.setdefault(combination_key(item["matrix"]), []).append(item)
        return cls(finished, items)

    def find(self, values: Mapping[str, object], config: str) -> FinishedCombination | None:
        """The newest finished run of this combination with exactly this request."""
        for done in reversed(self.finished.get(combination_key(values), [])):
            if done.config == config:
                return done
        return None


def describe_kept(items: list[object], combinations: int | None) -> str:
    """What a step kept, as a note counts it: ``5 of 6 combinations kept``, ``2 images
    kept``; a matrix step's images of combinations that did not finish are counted apart.

    Args:
        items: The step's kept items (and its partial output), each once.
        combinations: The step's number of combinations when every axis is written out;
            None when it has no matrix or a templated axis.
    """
    earlier = EarlierCombinations.read(items)
    loose = [item for item in items if not is_combination_checkpoint(item)]
    if earlier.finished:
        of = f" of {combinations}" if combinations is not None else ""
        done = len(earlier.finished)
        text = f"{done}{of} combination{'s' if done != 1 or of else ''} kept"
        unfinished = [
            item
            for item in loose
            if isinstance(item, dict)
            and isinstance(item.get("matrix"), dict)
            and combination_key(item["matrix"]) not in earlier.finished
        ]
        if unfinished:
            text += f", and {_count(unfinished)} of unfinished ones"
        return text
    return f"{_count(loose)} kept"


def _count(items: Sequence[object]) -> str:
    images = all(
        isinstance(item, dict) and str(item.get("file_type", "")).startswith("image/")
        for item in items
    )
    noun = "image" if images and items else "item"
    return f"{len(items)} {noun}{'s' if len(items) != 1 else ''}"


def written_combinations(step: PlannedStep) -> int | None:
    """A matrix step's number of combinations when every axis is written out as a list;
    None without a matrix or with a templated axis (known only when it renders)."""
    axes = step.common.matrix
    if not axes or not all(isinstance(values, list) for values in axes.values()):
        return None
    sizes = {axis: len(values) for axis, values in axes.items() if isinstance(values, list)}
    return combination_count(sizes, step.common.matrix_mode)
