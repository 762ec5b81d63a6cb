"""What a deployment's bundle carries: never a hidden file, never a file outside the project.

Review 13: the bundle is readable by everyone who can read the Prefect server (the pull
step's arguments). It carried ``templates/.env`` and a file behind a link in templates/
pointing out of the project when an include name was only known at run time (then every
file of templates/ travels), the project's ``.env`` when a step's text happened to be
``.env``, and a statically included template that is a link to a file outside the project.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from fetchflow.orchestration.bundle import bundle_workflow
from fetchflow.registry import StepRegistry
from fetchflow.workflow.checking import check_file

REPO = Path(__file__).resolve().parents[2]
SECRET = b"OPENAI_API_KEY=sk-live-do-not-ship"
OUTSIDE = b"a file of another project"


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """A project with secrets and a link out of it next to its templates."""
    root = tmp_path / "project"
    (root / "templates").mkdir(parents=True)
    (root / "templates" / "a.j2").write_text("hi << inputs.who >>\n", encoding="utf-8")
    (root / "templates" / ".env").write_bytes(SECRET)
    (root / "templates" / ".private").mkdir()
    (root / "templates" / ".private" / "key.j2").write_bytes(SECRET)
    (root / ".env").write_bytes(SECRET)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "notes.txt").write_bytes(OUTSIDE)
    (root / "templates" / "notes.j2").symlink_to(tmp_path / "elsewhere" / "notes.txt")
    (root / "dynamic.yaml").write_text(
        "name: dynamic\n"
        "inputs:\n"
        "  who: {type: string, default: you}\n"
        "  which: {type: string, default: a.j2}\n"
        "steps:\n"
        "  - id: greet\n"
        "    type: template\n"
        '    template: "<% include inputs.which %>"\n'
        "  - id: mention\n"
        "    type: template\n"
        '    template: ".env"\n',
        encoding="utf-8",
    )
    (root / "linked.yaml").write_text(
        "name: linked\n"
        "steps:\n"
        "  - id: greet\n"
        "    type: template\n"
        "    template: \"<% include 'notes.j2' %>\"\n",
        encoding="utf-8",
    )
    cwd = Path.cwd()
    os.chdir(tmp_path)  # no templates/ of the developer's current folder
    try:
        yield root
    finally:
        os.chdir(cwd)


def test_a_dynamic_include_carries_templates_but_no_secret_and_nothing_outside(
    project: Path,
) -> None:
    plan = check_file(project / "dynamic.yaml", StepRegistry.from_entry_points())

    bundle = bundle_workflow(plan)

    assert sorted(bundle.files) == ["dynamic.yaml", "templates/a.j2"]
    assert all(SECRET not in data and OUTSIDE not in data for data in bundle.files.values())


def test_deploy_refuses_a_template_that_is_a_link_out_of_the_project(
    project: Path, tmp_path: Path, clean_env: Mapping[str, str]
) -> None:
    env = {**clean_env, "PYTHONPATH": str(REPO), "FETCHFLOW_HOME": str(tmp_path / "home")}
    workflow = project / "linked.yaml"
    target = (tmp_path / "elsewhere" / "notes.txt").resolve()

    done = subprocess.run(
        [sys.executable, "-m", "fetchflow.cli", "deploy", str(workflow), "--pool", "p"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )

    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f'{workflow}: template "notes.j2" is a link to {target}, outside '
        f"{project / 'templates'}: a deployment carries only the project's own files, "
        "and everyone who can read the Prefect server can read them",
        "  hint: copy the file into templates/ under a name that does not start with '.' "
        "(never a secret: give secrets through the worker's environment)",
    ]
    assert not (tmp_path / "home" / "prefect").exists()
