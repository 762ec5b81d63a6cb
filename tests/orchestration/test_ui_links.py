"""The UI's gallery and table links open the images of the local store, in Chromium.

``fetchflow server`` (a temp ``FETCHFLOW_HOME``, the default local store) serves the store's
files next to the Prefect UI; ``fetchflow run flows/product_shot.yaml`` sends a run to it.
Headless Chromium opens the run's gallery artifact as a user does (run page, Artifacts tab,
the gallery's card), reads the links of the thumbnails and of the table's file names, and
follows each: every one must be an ``http://`` link to the file server that loads an image
(``naturalWidth > 0``) of the size the record says. See test_ui_browser.py for the browser.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fetchflow.orchestration.server import run_url
from tests.orchestration.test_ui_browser import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    GALLERY_KEY,
    REPO,
    UI_TIMEOUT_MS,
    WORKFLOW,
    UiServer,
    open_card,
    ui_server,
)

__all__ = ["ui_server"]  # the fixture, used by name

pytestmark = [
    pytest.mark.prefect,
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.is_file(), reason=f"no Chromium at {CHROMIUM} (scripts/ci-system-deps)"
    ),
]


def test_gallery_and_table_links_open_the_local_store_s_images(
    ui_server: UiServer, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    state = json.loads((ui_server.home / "server.json").read_text(encoding="utf-8"))
    files_url = state["files_url"]
    assert files_url.startswith("http://127.0.0.1:")
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
    images = document["steps"]["hero"]["output"]
    # The records keep the store's own URLs; only the UI shows the file server's.
    assert all(image["file_url"].startswith("file://") for image in images)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(UI_TIMEOUT_MS)
            page.goto(run_url(ui_server.ui_url, document["run_id"]), wait_until="domcontentloaded")
            page.get_by_role("tab", name="Artifacts").click()
            open_card(page, GALLERY_KEY)
            # Both lists read in one moment: the UI redraws the markdown while it polls, so
            # separate looks could catch it mid-redraw. Several images: the thumbnails sit in
            # a grid's cells; the file table's links are the text links.
            links = page.wait_for_function(
                """n => {
                    const display = document.querySelector('[data-testid="markdown-display"]');
                    if (!display) return null;
                    const anchors = [...display.querySelectorAll('a')];
                    const gallery = anchors.filter(a => a.querySelector('img'));
                    const table = [...display.querySelectorAll('td a')]
                        .filter(a => !a.querySelector('img'));
                    if (gallery.length !== n || table.length !== n) return null;
                    return {gallery: gallery.map(a => a.getAttribute('href')),
                            table: table.map(a => a.getAttribute('href'))};
                }""",
                arg=len(images),
                timeout=UI_TIMEOUT_MS,
            ).json_value()
            gallery, table = links["gallery"], links["table"]
            assert gallery == table
            assert all(str(href).startswith(f"{files_url}/") for href in gallery), gallery

            for href, image in zip(gallery, images, strict=True):
                response = page.goto(str(href))
                assert response is not None and response.status == 200
                assert response.headers["content-type"] == image["file_type"]
                size = page.wait_for_function(
                    """() => {
                        const img = document.images[0];
                        return img && img.complete && img.naturalWidth > 0
                            ? [img.naturalWidth, img.naturalHeight] : null;
                    }"""
                ).json_value()
                assert size == [image["width"], image["height"]]
            # Nothing else of the store is reachable: the run's own record, for one.
            refused = page.goto(f"{files_url}/runs/{document['run_id']}/run.json")
            assert refused is not None and refused.status == 404
        finally:
            browser.close()
