"""``fetchflow lsp`` spoken to as an editor does: ``python -m fetchflow.cli lsp`` in a
subprocess, JSON-RPC with Content-Length framing on its stdin and stdout.

Diagnostics are ``validate``'s problems with the same words at the same place (in the
client's UTF-16 units), completion offers reference paths inside ``<< >>`` and a step type's
fields, hover shows a step's output fields, and shutdown/exit end the process cleanly.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "refs"
PICKER, BROKEN = DATA / "picker.yaml", DATA / "broken.yaml"
TIMEOUT = 30.0


class Client:
    """A minimal LSP client: requests wait for their answer, notifications are queued."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self.next_id = 0
        self.inbox: queue.Queue[dict[str, Any]] = queue.Queue()
        assert process.stdout is not None
        threading.Thread(target=self._read, args=(process.stdout,), daemon=True).start()

    def _read(self, stream: IO[bytes]) -> None:
        while True:
            headers: dict[str, str] = {}
            while True:
                line = stream.readline()
                if not line:
                    return
                if line in (b"\r\n", b"\n"):
                    break
                name, _, value = line.decode("ascii").partition(":")
                headers[name.strip().lower()] = value.strip()
            body = stream.read(int(headers["content-length"]))
            self.inbox.put(json.loads(body))

    def send(self, message: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode("utf-8")
        assert self.process.stdin is not None
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.process.stdin.flush()

    def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        self.send({"method": method, "params": params or {}})

    def request(self, method: str, params: dict[str, Any] | None = None) -> Any:
        self.next_id += 1
        self.send({"id": self.next_id, "method": method, "params": params or {}})
        answer = self.wait(lambda m: m.get("id") == self.next_id and "method" not in m)
        assert "error" not in answer, answer
        return answer.get("result")

    def wait(self, wanted: Any) -> dict[str, Any]:
        """The next message ``wanted`` accepts (others are dropped)."""
        while True:
            message = self.inbox.get(timeout=TIMEOUT)
            if wanted(message):
                return message

    def diagnostics(self, uri: str) -> list[dict[str, Any]]:
        found = self.wait(
            lambda m: (
                m.get("method") == "textDocument/publishDiagnostics" and m["params"]["uri"] == uri
            )
        )
        diagnostics: list[dict[str, Any]] = found["params"]["diagnostics"]
        return diagnostics


@pytest.fixture
def client(clean_env: dict[str, str]) -> Iterator[Client]:
    env = {**clean_env, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "fetchflow.cli", "lsp"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=REPO,
    )
    speaker = Client(process)
    result = speaker.request(
        "initialize", {"processId": os.getpid(), "rootUri": REPO.as_uri(), "capabilities": {}}
    )
    speaker.capabilities = result["capabilities"]  # type: ignore[attr-defined]
    speaker.notify("initialized")
    try:
        yield speaker
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def open_file(client: Client, path: Path, text: str | None = None) -> str:
    uri = path.as_uri()
    document = {
        "uri": uri,
        "languageId": "yaml",
        "version": 1,
        "text": path.read_text(encoding="utf-8") if text is None else text,
    }
    client.notify("textDocument/didOpen", {"textDocument": document})
    return uri


def position(text: str, needle: str, after: str = "") -> dict[str, int]:
    """The position just after ``after`` + ``needle``'s ``after`` part (0-based, UTF-16)."""
    offset = text.index(needle) + len(after or needle)
    line = text.count("\n", 0, offset)
    column = offset - (text.rfind("\n", 0, offset) + 1)
    units = len(text[offset - column : offset].encode("utf-16-le")) // 2
    return {"line": line, "character": units}


def validate(path: Path) -> tuple[str, str]:
    """``fetchflow validate``'s first problem: (``file:line:col``, the rest of its text)."""
    done = subprocess.run(
        [sys.executable, "-m", "fetchflow.cli", "validate", str(path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    first, hint, *_ = done.stderr.split("\n")
    where, _, what = first.partition(": ")
    return where, f"{what}\n{hint}"


def test_a_broken_workflow_gets_validates_problem_at_its_place(client: Client) -> None:
    where, message = validate(BROKEN)
    line, column = (int(part) for part in where.rsplit(":", 2)[1:])

    uri = open_file(client, BROKEN)
    diagnostics = client.diagnostics(uri)

    assert message.startswith('step "note" (template) field "template": "brief.outptu"')
    assert diagnostics == [
        {
            "range": {
                "start": {"line": line - 1, "character": column - 1},
                "end": {"line": line - 1, "character": column - 1 + len("brief.outptu")},
            },
            "message": message,
            "severity": 1,
            "source": "fetchflow",
        }
    ]


def test_a_change_that_fixes_the_file_clears_its_diagnostics_and_save_checks_again(
    client: Client,
) -> None:
    text = BROKEN.read_text(encoding="utf-8")
    uri = open_file(client, BROKEN, text)
    assert len(client.diagnostics(uri)) == 1

    fixed = text.replace("brief.outptu", "brief.output")
    client.notify(
        "textDocument/didChange",
        {"textDocument": {"uri": uri, "version": 2}, "contentChanges": [{"text": fixed}]},
    )
    assert client.diagnostics(uri) == []

    client.notify(
        "textDocument/didChange",
        {"textDocument": {"uri": uri, "version": 3}, "contentChanges": [{"text": text}]},
    )
    assert len(client.diagnostics(uri)) == 1
    client.notify("textDocument/didSave", {"textDocument": {"uri": uri}})
    assert client.diagnostics(uri)[0]["message"].startswith('step "note" (template)')


def test_columns_are_in_the_clients_utf16_units(client: Client) -> None:
    text = BROKEN.read_text(encoding="utf-8").replace('"<< brief', '"🎨 << brief')

    uri = open_file(client, BROKEN, text)
    (diagnostic,) = client.diagnostics(uri)

    # The emoji is one character for validate's column, two UTF-16 units for the editor.
    start = position(text, "brief.outptu", after="")
    start["character"] -= len("brief.outptu")
    assert diagnostic["range"]["start"] == start


def completion(client: Client, uri: str, at: dict[str, int]) -> list[dict[str, Any]]:
    result = client.request(
        "textDocument/completion", {"textDocument": {"uri": uri}, "position": at}
    )
    items: list[dict[str, Any]] = result["items"]
    return items


def test_completion_offers_the_fields_of_an_item_of_a_steps_output(client: Client) -> None:
    text = PICKER.read_text(encoding="utf-8").replace(
        "<< hero.output.0.file_url >>", "<< hero.output.0. >>"
    )
    uri = open_file(client, PICKER, text)
    client.diagnostics(uri)

    items = completion(client, uri, position(text, "<< hero.output.0.", "<< hero.output.0."))
    by_label = {item["label"]: item for item in items}

    assert list(by_label)[:5] == ["id", "file_url", "file_name", "file_size", "file_type"]
    assert {"width", "height", "sha256", "storage_uri"} <= set(by_label)
    assert by_label["file_size"]["detail"] == "integer"
    assert by_label["file_size"]["documentation"]["value"] == "Size in bytes."
    assert by_label["file_url"]["kind"] == 6  # Variable


def test_completion_offers_the_steps_a_template_may_read_and_their_items(client: Client) -> None:
    text = PICKER.read_text(encoding="utf-8")
    uri = open_file(client, PICKER, text)
    client.diagnostics(uri)

    roots = completion(client, uri, position(text, "<< hero.output.0.file_url", "<< "))
    indexes = completion(
        client, uri, position(text, "<< hero.output.0.file_url", "<< hero.output.")
    )
    brief = completion(client, uri, position(text, "<< brief.output >>", "<< "))

    assert [(i["label"], i.get("detail")) for i in roots] == [
        ("inputs", "the workflow's inputs"),
        ("run", "id, name, started_at"),
        ("brief", "template"),
        ("hero", "image_generation"),
        ("side", "template"),
    ]
    assert [item["label"] for item in indexes] == ["0", "1"]  # count: 2
    # hero reads brief; it can never read itself or note, which reads it.
    assert [item["label"] for item in brief] == ["inputs", "run", "brief", "side"]


def test_completion_offers_a_step_types_fields_with_their_descriptions(client: Client) -> None:
    text = PICKER.read_text(encoding="utf-8").replace("    seed: 3\n", "    seed: 3\n    \n")
    uri = open_file(client, PICKER, text)
    client.diagnostics(uri)

    items = completion(client, uri, position(text, "    seed: 3\n    ", "    seed: 3\n    "))
    by_label = {item["label"]: item for item in items}

    assert "quality" in by_label and "output_format" in by_label and "retries" in by_label
    assert not {"prompt", "model", "count", "seed", "id", "type"} & set(by_label)
    assert by_label["output_format"]["insertText"] == "output_format: "
    assert by_label["output_format"]["documentation"]["value"] == "File format."
    assert by_label["quality"]["detail"] == "string"


def test_hover_on_a_step_id_and_on_a_reference_shows_the_output_fields(client: Client) -> None:
    text = PICKER.read_text(encoding="utf-8")
    uri = open_file(client, PICKER, text)
    client.diagnostics(uri)

    on_id = client.request(
        "textDocument/hover",
        {"textDocument": {"uri": uri}, "position": position(text, "id: hero", "id: he")},
    )
    on_ref = client.request(
        "textDocument/hover",
        {
            "textDocument": {"uri": uri},
            "position": position(text, "hero.output.0.file_size", "hero.output.0.file_s"),
        },
    )
    on_input = client.request(
        "textDocument/hover",
        {
            "textDocument": {"uri": uri},
            "position": position(text, "inputs.product", "inputs.prod"),
        },
    )

    shown = on_id["contents"]["value"]
    assert shown.startswith("**hero** (image_generation)\n\n`hero.output` — list[object], 2 items")
    assert "- `hero.output.N.file_url` string — A URL to fetch the file" in shown
    assert "- `hero.output.N.width` integer | null — Width in pixels, for images." in shown
    assert on_ref["contents"]["value"].startswith(
        "`hero.output.N.file_size` — integer: Size in bytes.\n\n---\n\n**hero**"
    )
    assert on_input["contents"]["value"] == (
        '`inputs.product` — string: What the shot shows.\n\ndefault: `"blue vase"`'
    )


def test_shutdown_and_exit_end_the_server_cleanly(client: Client) -> None:
    assert client.capabilities["hoverProvider"] is True  # type: ignore[attr-defined]
    assert "." in client.capabilities["completionProvider"]["triggerCharacters"]  # type: ignore[attr-defined]

    assert client.request("shutdown") is None
    client.notify("exit")

    assert client.process.wait(timeout=TIMEOUT) == 0
    assert client.process.stderr is not None
    assert "Traceback" not in client.process.stderr.read().decode("utf-8", "replace")


def test_help_and_validate_load_neither_pygls_nor_prefect() -> None:
    probe = (
        "import sys\n"
        "from fetchflow.cli import main\n"
        f"main(['validate', {str(PICKER)!r}])\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'pygls', 'lsprotocol', 'prefect'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )

    assert done.stdout.splitlines()[-1] == "[]", done.stderr
