"""What ``fetchflow run`` says in the terminal without ``-v``: each step's warnings under its
line (the offline preview fallback among them). Through the real command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_bad_input_catalogue import Sandbox, fake_gemini, fake_openai, probe_dir, sandbox  # noqa: F401

DATA = Path(__file__).resolve().parents[1] / "data" / "terminal"
KEYS = (
    "OPENAI_API_KEY",
    "GEMINI_API_KEY",
    "FETCHFLOW_HOSTED_OPENAI_API_KEY",
    "FETCHFLOW_HOSTED_GEMINI_API_KEY",
)


@pytest.mark.prefect
def test_the_preview_fallback_is_said_under_its_step_without_verbose(
    sandbox: Sandbox,  # noqa: F811
    prefect_api: str,
) -> None:
    env = {k: v for k, v in sandbox.env.items() if k not in KEYS}
    done = subprocess.run(
        [sys.executable, "-m", "fetchflow.cli", "run", str(DATA / "auto.yaml")],
        env={**env, "PREFECT_API_URL": prefect_api},
        cwd=sandbox.tmp / "cwd",
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=240,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    hero = next(i for i, line in enumerate(lines) if line.startswith("  ✓ hero "))
    assert lines[hero + 1] == (
        "      ! no image provider configured: using the offline preview provider (images are "
        "marked PREVIEW)"
    )
    assert sum("offline preview provider" in line for line in lines) == 1  # said once
    assert sandbox.openai.requests == [] and sandbox.gemini.requests == []

    # Then what each step made: its text, or a line per file with a path to open.
    outputs = lines[lines.index("outputs:") + 1 :]
    assert outputs[1] == "  caption  A lantern, 1 image(s)."
    name, size, unit, dimensions, path = outputs[0].split()[1:]
    assert (outputs[0].split()[0], dimensions, unit) == ("hero", "1024×1024", "KB")
    assert Path(path).is_file() and Path(path).is_relative_to(sandbox.store.resolve())
    assert name.endswith(".png") and float(size) > 0
