"""Generate large synthetic workflows for the benchmarks."""

from __future__ import annotations

from pathlib import Path


def chain_workflow(steps: int, fan_in: int = 3) -> str:
    """A workflow of ``steps`` template steps, each reading up to ``fan_in`` earlier ones."""
    lines = [
        "name: bench",
        "description: generated for the validate benchmark",
        "inputs:",
        "  product: {type: string, default: mug}",
        "  count: {type: integer, default: 2}",
        "steps:",
    ]
    for index in range(steps):
        refs = " ".join(
            f"<< s{earlier}.output >>" for earlier in range(max(0, index - fan_in), index)
        )
        lines += [
            f"  - id: s{index}",
            "    type: template",
            f"    name: Step {index}",
            "    on_failure: continue" if index % 7 == 0 else "    retries: 1",
            "    template: |",
            f"      Shot {index} of << inputs.product >> (x<< inputs.count >>). {refs}",
        ]
    return "\n".join(lines) + "\n"


def write(path: Path, steps: int) -> Path:
    """Write a generated workflow to ``path``."""
    path.write_text(chain_workflow(steps), encoding="utf-8")
    return path
