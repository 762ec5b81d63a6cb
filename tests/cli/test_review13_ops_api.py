"""``recover`` and ``deploy`` against an address that answers HTTP but is no Prefect API
(review 13).

``check_prefect_api`` lets any HTTP error answer to ``/health`` pass (Prefect Cloud answers
401/404 there without a key); the first real request then raised ``PrefectHTTPStatusError``,
shown as "internal error: ... this is a bug" with exit 1. Now: one message naming the
address, the status and the request, exit 2.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest
from test_bad_input_catalogue import (  # noqa: F401
    REPO,
    Sandbox,
    fake_gemini,
    fake_openai,
    probe_dir,
    sandbox,
)


class _NotFound(http.server.BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def not_an_api() -> Iterator[str]:
    """An HTTP server answering 404 to everything (another web app on that port)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api"
    finally:
        server.shutdown()
        server.server_close()


HINT = (
    "  hint: point PREFECT_API_URL at a Prefect server's API (http://127.0.0.1:4200/api); "
    "for Prefect Cloud, set PREFECT_API_KEY too"
)


@pytest.mark.parametrize(
    ("args", "request_line"),
    [
        (["recover"], "POST /api/flow_runs/filter"),
        (
            ["deploy", str(REPO / "flows" / "hello.yaml"), "--pool", "images"],
            "POST /api/work_pools/filter",
        ),
    ],
    ids=["recover", "deploy"],
)
def test_an_address_that_is_no_prefect_api_is_one_message(
    args: list[str],
    request_line: str,
    not_an_api: str,
    sandbox: Sandbox,  # noqa: F811
) -> None:
    sandbox.env["PREFECT_API_URL"] = not_an_api

    outcome = sandbox.fetchflow(*args)

    assert outcome.code == 2, outcome.stderr
    assert outcome.stderr.splitlines() == [
        f"fetchflow: PREFECT_API_URL={not_an_api!r} answered 404 Not Found to {request_line}: "
        "it is not a Prefect server's API, or it wants a key",
        HINT,
    ]
    assert outcome.stdout == ""
