"""The ``fetchflow`` command run as users run it: a subprocess, exit codes, stdout/stderr."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

ROOT = Path(__file__).parents[2]
FLOWS = Path("tests") / "data" / "flows"
BROKEN = FLOWS / "broken"
#: ``fetchflow(*args, cwd=..., pythonpath=...)``: the command in a subprocess.
Fetchflow = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def fetchflow(clean_env: Mapping[str, str]) -> Fetchflow:
    """``python -m fetchflow.cli ARGS...`` in the repository, without the machine's settings."""

    def run(
        *args: str, cwd: Path = ROOT, pythonpath: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = dict(clean_env)
        if pythonpath is not None:
            env["PYTHONPATH"] = str(pythonpath)
        return subprocess.run(
            [sys.executable, "-m", "fetchflow.cli", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    return run


def test_valid_file_exits_0_with_ok_on_stdout(fetchflow: Fetchflow) -> None:
    result = fetchflow("validate", "flows/hello.yaml")

    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "flows/hello.yaml: ok (3 steps)\n",
        "",
    )


def test_several_valid_files_are_each_reported(fetchflow: Fetchflow) -> None:
    files = [str(FLOWS / name) for name in ("chain.yaml", "include.yaml", "merge.yaml")]

    result = fetchflow("validate", *files)

    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        f"{files[0]}: ok (4 steps)",
        f"{files[1]}: ok (2 steps)",
        f"{files[2]}: ok (2 steps)",
    ]


def test_broken_file_exits_2_with_the_problem_on_stderr(fetchflow: Fetchflow) -> None:
    path = BROKEN / "cycle.yaml"

    result = fetchflow("validate", str(path))

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f'{path}:3:5: step "a" (template): steps depend on each other in a cycle: b -> a -> b',
        "  hint: remove one of these references or needs so the steps can run in order",
        f"{path}: 1 problem",
    ]


def test_every_broken_file_is_reported_without_a_traceback(fetchflow: Fetchflow) -> None:
    files = sorted(str(path) for path in BROKEN.glob("*.yaml"))

    result = fetchflow("validate", *files)

    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    summaries = [
        match.groups() for match in re.finditer(r"^(\S+): (\d+) problems?$", result.stderr, re.M)
    ]
    assert [file for file, _ in summaries] == files
    assert (str(BROKEN / "many_problems.yaml"), "8") in summaries


def test_valid_and_broken_files_together_exit_2(fetchflow: Fetchflow) -> None:
    result = fetchflow("validate", "flows/hello.yaml", str(BROKEN / "unknown_field.yaml"))

    assert result.returncode == 2
    assert result.stdout == "flows/hello.yaml: ok (3 steps)\n"
    assert result.stderr.splitlines()[0] == (
        f'{BROKEN / "unknown_field.yaml"}:5:5: step "brief" (template) field "templat": '
        'unknown field "templat"; did you mean "template"?'
    )


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        pytest.param("missing.yaml", "No such file or directory", id="missing-file"),
        pytest.param("tests", "Is a directory", id="directory"),
    ],
)
def test_unreadable_file_exits_2_without_a_traceback(
    name: str, reason: str, fetchflow: Fetchflow
) -> None:
    result = fetchflow("validate", name)

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{name}: cannot read the workflow file: {reason}",
        "  hint: check the path (fetchflow validate flows/<name>.yaml)",
        f"{name}: 1 problem",
    ]


def test_validate_without_files_is_a_usage_error(fetchflow: Fetchflow) -> None:
    result = fetchflow("validate")

    assert result.returncode == 2
    assert "the following arguments are required: FILE" in result.stderr
    assert "Traceback" not in result.stderr


def test_broken_plugin_exits_2_with_its_name_and_no_traceback(
    tmp_path: Path, fetchflow: Fetchflow
) -> None:
    info = tmp_path / "ffplugin_broken-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ffplugin_broken\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[fetchflow.steps]\nbroken = ffplugin_no_such_module:Step\n"
    )

    result = fetchflow("validate", "flows/hello.yaml", pythonpath=tmp_path)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(
        'fetchflow: step type "broken" from ffplugin_broken cannot be loaded '
        "(ffplugin_no_such_module:Step): ModuleNotFoundError"
    )


def test_validate_steps_schema_and_help_never_import_prefect(tmp_path: Path) -> None:
    script = f"""
import contextlib, io, json, sys
from fetchflow.cli import main
seen = {{}}
for argv in (["validate", "flows/hello.yaml", {str(BROKEN / "cycle.yaml")!r}],
             ["steps"], ["steps", "--json"], ["schema"], ["--help"], ["validate", "--help"]):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            main(argv)
        except SystemExit:
            pass
    seen[" ".join(argv)] = sorted(m for m in sys.modules if m.split(".")[0] == "prefect")
print(json.dumps(seen))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert len(seen) == 6
    assert {argv: modules for argv, modules in seen.items() if modules} == {}


def test_steps_lists_template_with_its_fields(fetchflow: Fetchflow) -> None:
    result = fetchflow("steps")

    assert result.returncode == 0
    lines = result.stdout.splitlines()
    start = lines.index(
        "template: Render a Jinja template (inline or a file under templates/) into text."
    )
    assert [" ".join(line.split()) for line in lines[start + 1 : start + 3]] == [
        "template Inline Jinja text, rendered as the output. (default null)",
        "file A template file under templates/, rendered as the output. (default null)",
    ]
    assert lines[-1].startswith("Every step also takes: id, type, name, needs, on_failure")


def test_steps_json_describes_every_field(fetchflow: Fetchflow) -> None:
    result = fetchflow("steps", "--json")

    assert result.returncode == 0
    described = json.loads(result.stdout)
    assert described["template"]["billable"] is False
    assert described["template"]["fields"]["file"] == {
        "required": False,
        "description": "A template file under templates/, rendered as the output.",
        "default": None,
    }


def test_schema_prints_a_valid_json_schema(fetchflow: Fetchflow) -> None:
    result = fetchflow("schema")

    assert result.returncode == 0
    schema = json.loads(result.stdout)
    Draft202012Validator.check_schema(schema)
    assert schema["title"] == "fetchflow workflow"
    assert "step_template" in schema["$defs"]
