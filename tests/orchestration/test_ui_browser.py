"""The Prefect UI in a real browser: a run's page and its image gallery, as a user sees them.

``fetchflow server`` runs as a subprocess (a temp ``FETCHFLOW_HOME``), ``fetchflow run
flows/product_shot.yaml`` sends a run to it, and headless Chromium (Debian's
``/usr/bin/chromium``, driven by Playwright's Python package; Playwright never downloads a
browser here) opens the run's page and the gallery artifact of the ``hero`` step. The gallery's
thumbnails are inline ``data:`` images: each must have decoded (``naturalWidth > 0``), one per
image the step made.

The test navigates as a user does and checks what the user sees, not a route: the run page's
*Artifacts* tab lists a card per artifact, showing its key; clicking the gallery's card opens a
page where the thumbnails render, and clicking the run summary's card opens the summary table
(one row per step, with its status). Prefect 3.8 and 3.9 link the cards differently
(``/artifacts/key/<key>`` against ``/artifacts/artifact/<id>``); the test does not care.

The screenshots land in the test's temp folder; with ``FETCHFLOW_UPDATE_SCREENSHOTS=1`` they
also replace ``docs/run-page.png``, ``docs/gallery.png`` and ``docs/matrix-grid.png`` (the
README's pictures).
``scripts/ci-system-deps`` installs Chromium.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from fetchflow.orchestration.server import run_url

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
CHROMIUM = Path(os.environ.get("FETCHFLOW_CHROMIUM", "/usr/bin/chromium"))
#: Chromium on a machine with a closed network: no sandbox as root, no GPU, and none of the
#: background connections that would be refused (or wait for DNS) at every start.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WORKFLOW = REPO / "flows" / "product_shot.yaml"
GALLERY_KEY = "product-shot-hero-output"
SUMMARY_KEY = "product-shot-run-summary"
#: Generous on a cold 2-core machine: the server's first start creates its database (~20 s).
SERVER_TIMEOUT = 120.0
#: How long the UI may take to show something (the default 5 s is tight on a busy machine).
UI_TIMEOUT_MS = 30_000
MAX_SCREENSHOT_BYTES = 300_000

pytestmark = [
    pytest.mark.prefect,
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.is_file(), reason=f"no Chromium at {CHROMIUM} (scripts/ci-system-deps)"
    ),
]

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def api(url: str, body: object | None = None) -> Any:
    """GET (or POST ``body`` as JSON) a Prefect API URL; the decoded answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with _DIRECT.open(request, timeout=10) as response:
        return json.loads(response.read())


def poll(what: str, probe: Callable[[], Any], timeout: float, every: float = 0.25) -> Any:
    """``probe()`` until it returns something truthy; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


@dataclass(frozen=True)
class UiServer:
    """A running ``fetchflow server``."""

    home: Path
    env: dict[str, str]
    api_url: str
    ui_url: str


@pytest.fixture
def ui_server(tmp_path: Path, clean_env: Mapping[str, str]) -> Iterator[UiServer]:
    """``fetchflow server`` on a free port with a temp home; stopped with SIGTERM after."""
    home = tmp_path / "home"
    env = dict(clean_env)
    # The repository first: the venv's editable install may map ``fetchflow`` elsewhere.
    env["PYTHONPATH"] = str(REPO)
    env["FETCHFLOW_HOME"] = str(home)
    env["NO_COLOR"] = "1"
    state = home / "server.json"
    log = tmp_path / "fetchflow-server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "fetchflow.cli", "server", "--port", str(free_port())],
            env=env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def started() -> bool:
            if process.poll() is not None:
                pytest.fail(f"fetchflow server exited ({process.returncode}):\n{log.read_text()}")
            return state.is_file()

        poll("fetchflow server to write server.json", started, SERVER_TIMEOUT)
        info = json.loads(state.read_text(encoding="utf-8"))
        yield UiServer(home, env, info["api_url"], info["ui_url"])
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, log.read_text()
        assert not state.exists(), "the stopped server left server.json behind"
    finally:
        if process.poll() is None:  # a failure above: never leave servers behind
            process.kill()
            process.wait()
        if state.is_file():  # the Prefect server runs in its own session
            pid = json.loads(state.read_text(encoding="utf-8")).get("pid")
            if isinstance(pid, int):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)


def open_card(page: Page, key: str) -> None:
    """Click the artifact card that shows ``key`` (on a run's Artifacts tab) and wait for its
    content to render."""
    from playwright.sync_api import expect

    card = page.get_by_role("link").filter(has_text=key)
    expect(card).to_have_count(1, timeout=UI_TIMEOUT_MS)
    card.click()
    content = page.locator('[data-testid="markdown-display"]').first
    expect(content).to_be_visible(timeout=UI_TIMEOUT_MS)


def graph_is_drawn(canvas: Locator) -> bool:
    """Whether the run graph's canvas shows the (green, completed) task run bars yet."""
    from PIL import Image

    image = Image.open(io.BytesIO(canvas.screenshot(animations="disabled"))).convert("RGB")
    colors = image.getcolors(image.width * image.height) or []
    green = sum(n for n, (r, g, b) in colors if g > r + 60 and g > b + 30)
    return green > 500


def save_screenshot(page: Page, name: str, folder: Path) -> Path:
    """A viewport PNG in ``folder``; copied to ``docs/`` with FETCHFLOW_UPDATE_SCREENSHOTS=1."""
    path = folder / name
    page.screenshot(path=str(path), animations="disabled")
    assert path.stat().st_size < MAX_SCREENSHOT_BYTES, f"{name}: {path.stat().st_size} bytes"
    if os.environ.get("FETCHFLOW_UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(path, DOCS / name)
    return path


def test_the_run_page_and_its_gallery_render_in_chromium(
    ui_server: UiServer, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    done = subprocess.run(
        [sys.executable, "-m", "fetchflow.cli", "run", str(WORKFLOW), "--json"],
        env=ui_server.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["status"] == "completed"
    run_id = document["run_id"]
    images = document["steps"]["hero"]["output"]
    assert len(images) == 2  # the workflow's count
    page_url = run_url(ui_server.ui_url, run_id)
    if "url" in document:
        assert document["url"] == page_url
    run_name = api(f"{ui_server.api_url}/flow_runs/{run_id}")["name"]

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(UI_TIMEOUT_MS)
            wait = UI_TIMEOUT_MS

            # The run page: its name, state, task runs and graph.
            page.goto(page_url, wait_until="domcontentloaded")
            expect(page.get_by_text(run_name, exact=True).first).to_be_visible(timeout=wait)
            page.get_by_role("tab", name="Task Runs").click()
            completed = page.get_by_text(f"{len(document['steps'])} Completed")
            expect(completed).to_be_visible(timeout=wait)
            for step in document["steps"]:
                task_run = page.get_by_role("link", name=step, exact=True).first
                expect(task_run).to_be_visible(timeout=wait)
            canvas = page.locator("canvas").first
            poll("the run graph to be drawn", lambda: graph_is_drawn(canvas), 30)
            save_screenshot(page, "run-page.png", tmp_path)

            # Its Artifacts tab lists a card per artifact; the gallery's card opens the gallery.
            page.get_by_role("tab", name="Artifacts").click()
            open_card(page, GALLERY_KEY)

            # The gallery: one decoded thumbnail per image, named after its file.
            thumbnails = page.locator('[data-testid="markdown-display"] img')
            expect(thumbnails).to_have_count(len(images), timeout=wait)
            # Read them in the same moment they are all decoded: the UI may redraw the
            # markdown while it polls, so a second look could catch it mid-redraw.
            shown_now = page.wait_for_function(
                """n => {
                    const imgs = [...document.querySelectorAll(
                        '[data-testid="markdown-display"] img')];
                    if (imgs.length !== n || !imgs.every(img => img.complete)) return null;
                    return imgs.map(img => ({alt: img.alt, width: img.naturalWidth,
                        height: img.naturalHeight, src: img.src.slice(0, 16)}));
                }""",
                arg=len(images),
            )
            loaded = shown_now.json_value()
            assert [shown["alt"] for shown in loaded] == [i["file_name"] for i in images]
            assert all(shown["src"].startswith("data:image/") for shown in loaded), loaded
            assert all(shown["width"] > 0 and shown["height"] > 0 for shown in loaded), loaded
            save_screenshot(page, "gallery.png", tmp_path)

            # Back on the run page, the summary's card opens the run summary: a row per step.
            page.go_back(wait_until="domcontentloaded")
            page.get_by_role("tab", name="Artifacts").click()
            open_card(page, SUMMARY_KEY)
            summary = page.locator('[data-testid="markdown-display"]').first
            expect(summary).to_contain_text("product_shot: completed", timeout=wait)
            for step in document["steps"]:
                name = page.locator("code", has_text=re.compile(f"^{re.escape(step)}$"))
                row = summary.locator("tr").filter(has=name)
                expect(row).to_have_count(1, timeout=wait)
                expect(row).to_contain_text("completed")
            steps, made = len(document["steps"]), len(images)
            expect(summary).to_contain_text(f"{steps} step(s) · {made} image(s)")
        finally:
            browser.close()


def test_a_matrix_steps_gallery_is_a_labelled_grid_in_chromium(
    ui_server: UiServer, tmp_path: Path
) -> None:
    """flows/matrix.yaml's shots step (3 products x 2 styles): the Output artifact shows a
    table whose header row holds the styles and whose rows start with the products, a decoded
    thumbnail per combination in its cell, then the contact sheet."""
    from playwright.sync_api import expect, sync_playwright

    done = subprocess.run(
        [sys.executable, "-m", "fetchflow.cli", "run", str(REPO / "flows" / "matrix.yaml"),
         "--json"],
        env=ui_server.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=180,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    *shots, sheet = document["steps"]["shots"]["output"]
    assert len(shots) == 6 and sheet["file_name"] == "shots-contact-sheet.png"

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(UI_TIMEOUT_MS)
            page.goto(run_url(ui_server.ui_url, document["run_id"]), wait_until="domcontentloaded")
            page.get_by_role("tab", name="Artifacts").click()
            open_card(page, "matrix-shots-output")
            display = page.locator('[data-testid="markdown-display"]').first
            # Read the whole grid in one moment, once every thumbnail has decoded: the UI
            # redraws the markdown while it polls, so separate looks could catch it mid-redraw.
            grid = page.wait_for_function(
                """() => {
                    const table = [...document.querySelectorAll(
                        '[data-testid="markdown-display"] table')].find(
                        t => t.querySelector('img'));
                    if (!table) return null;
                    const header = [...table.querySelectorAll('thead th')]
                        .map(th => th.innerText.trim());
                    const rows = [...table.querySelectorAll('tbody tr')];
                    const labels = rows.map(row => row.querySelector('td').innerText.trim());
                    const imgs = rows.flatMap(row => [...row.querySelectorAll('td')].slice(1)
                        .map(td => td.querySelector('img')));
                    if (imgs.length !== 6 || !imgs.every(img => img && img.complete
                        && img.naturalWidth > 0)) return null;
                    return {header, labels, alts: imgs.map(img => img.alt)};
                }"""
            ).json_value()
            assert grid["header"] == ["product \\ style", "watercolor", "studio photo"]
            assert grid["labels"] == ["mug", "tote bag", "poster"]
            # Each combination's thumbnail sits in its row and column, decoded.
            assert grid["alts"] == [shot["file_name"] for shot in shots]
            expect(display).to_contain_text("Contact sheet")
            sheet_image = display.locator(f'img[alt="{sheet["file_name"]}"]')
            expect(sheet_image).to_have_count(1)
            save_screenshot(page, "matrix-grid.png", tmp_path)
        finally:
            browser.close()
