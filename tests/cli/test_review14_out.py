"""``run --out DIR`` where DIR cannot be made: refused before the run, not after paying."""

from __future__ import annotations

from test_bad_input_catalogue import Sandbox, fake_gemini, fake_openai, probe_dir, sandbox  # noqa: F401

FLOW = "name: out\nsteps:\n  - id: a\n    type: template\n    template: hello\n"


def test_out_below_a_file_is_refused_before_the_run(sandbox: Sandbox) -> None:  # noqa: F811
    flow = sandbox.tmp / "cwd" / "out.yaml"
    flow.write_text(FLOW, encoding="utf-8")
    (sandbox.tmp / "cwd" / "notes.txt").write_text("mine", encoding="utf-8")

    outcome = sandbox.fetchflow("run", str(flow), "--out", "notes.txt/images")

    assert outcome.code == 2, outcome.stderr
    assert outcome.stdout == ""
    assert outcome.stderr.splitlines() == [
        "--out: notes.txt is a file, not a folder (in notes.txt/images)",
        "  hint: give a folder to write the run's files into (made if missing)",
    ]
    sandbox.assert_nothing_happened(outcome)
    assert (sandbox.tmp / "cwd" / "notes.txt").read_text(encoding="utf-8") == "mine"
