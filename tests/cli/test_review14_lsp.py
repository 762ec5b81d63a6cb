"""``fetchflow lsp`` with what an editor may send that the happy path does not: a hover past
a line's end, a large workflow. Through the real server over stdio.
"""

from __future__ import annotations

from pathlib import Path

from test_lsp import Client, client, open_file  # noqa: F401


def _chain(steps: int) -> str:
    lines = ["name: long", "steps:", "  - id: s0", "    type: template", "    template: x"]
    for number in range(1, steps):
        lines += [
            f"  - id: s{number}",
            "    type: template",
            f'    template: "<< s{number - 1}.output >>"',
        ]
    return "\n".join(lines) + "\n"


def test_a_hover_past_the_end_of_a_line_answers_nothing_instead_of_an_error(
    client: Client,  # noqa: F811
    tmp_path: Path,
) -> None:
    text = "name: short\nsteps:\n  - id: a\n    type: template\n    template: x\n"
    uri = open_file(client, tmp_path / "short.yaml", text)
    client.diagnostics(uri)

    # An editor asks for the position of the mouse, which may be right of the text.
    beyond = client.request(
        "textDocument/hover",
        {"textDocument": {"uri": uri}, "position": {"line": 1, "character": 40}},
    )
    after_id = client.request(
        "textDocument/hover",
        {"textDocument": {"uri": uri}, "position": {"line": 2, "character": 40}},
    )
    on_id = client.request(
        "textDocument/hover",
        {"textDocument": {"uri": uri}, "position": {"line": 2, "character": 10}},
    )

    assert beyond is None  # "steps:" ends with no word to hover
    assert after_id["contents"]["value"].startswith("**a** (template)")  # as at its end
    assert on_id["contents"]["value"].startswith("**a** (template)")


def test_hover_and_completion_answer_on_a_600_step_workflow(
    client: Client,  # noqa: F811
    tmp_path: Path,
) -> None:
    # Each step's references were found with one regex per other step id: past re's cache
    # of 512 patterns every one was compiled again (600 steps: 49 s per hover, past the
    # client's 30 s wait); one scan of each step's text is enough.
    text = _chain(600)
    uri = open_file(client, tmp_path / "long.yaml", text)
    assert client.diagnostics(uri) == []
    last = 2 + 3 * 599  # the 0-based line of "- id: s599"

    hover = client.request(
        "textDocument/hover",
        {"textDocument": {"uri": uri}, "position": {"line": last + 2, "character": 20}},
    )
    completion = client.request(
        "textDocument/completion",
        {"textDocument": {"uri": uri}, "position": {"line": last + 2, "character": 17}},
    )

    assert hover["contents"]["value"].startswith("**s598** (template)")
    labels = {item["label"] for item in completion["items"]}
    assert {"inputs", "run", "s0", "s598"} <= labels
    assert "s599" not in labels  # a step never reads itself


def test_a_malformed_message_is_one_line_in_the_editors_log_not_a_traceback(
    client: Client,  # noqa: F811
    tmp_path: Path,
) -> None:
    assert client.process.stdin is not None
    body = b'{"a"'
    client.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    client.process.stdin.flush()
    text = "name: after\nsteps:\n  - id: a\n    type: templte\n"
    uri = open_file(client, tmp_path / "after.yaml", text)
    assert 'unknown step type "templte"' in client.diagnostics(uri)[0]["message"]  # still serves

    assert client.request("shutdown") is None
    client.notify("exit")
    assert client.process.wait(timeout=30) == 0
    assert client.process.stderr is not None
    log = client.process.stderr.read().decode("utf-8", "replace")

    assert "Traceback" not in log
    assert log.splitlines() == [
        "fetchflow lsp: Unable to handle message: JSONDecodeError: Expecting ':' delimiter: "
        "line 1 column 5 (char 4)"
    ]
