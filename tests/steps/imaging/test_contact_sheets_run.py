"""Contact sheets through the real CLI: a run on the session's Prefect server (preview model,
offline), its output read from ``--json`` and its Output artifact from the Prefect API."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[3]
FLOW = REPO / "tests" / "data" / "sheets" / "contact_sheets.yaml"
LINKED_THUMB = re.compile(r"\[!\[[^\]]*\]\((data:image/[^)]+)\)\]\(([^)]+)\)")


def read_artifacts(flow_run_id: str) -> dict[str, Any]:
    """The artifacts of one flow run (its own and its task runs'), by key."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        # Not client.read_artifacts (see tests/orchestration/test_artifacts.py).
        response = client.request(
            "POST",
            "/artifacts/filter",
            json={
                "artifacts": {"flow_run_id": {"any_": [flow_run_id]}},
                "sort": "KEY_ASC",
                "limit": 50,
                "offset": 0,
            },
        )
    return {item["key"]: item for item in response.json()}


@pytest.fixture(scope="module")
def sheet_run(
    prefect_api: str, clean_env: Mapping[str, str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, Any], dict[str, Any], Path]:
    tmp = tmp_path_factory.mktemp("sheets")
    env = {
        **clean_env,
        "PREFECT_API_URL": prefect_api,
        "FETCHFLOW_HOME": str(tmp / "home"),
        "PYTHONPATH": str(REPO),
        "NO_COLOR": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "fetchflow.cli", "run", str(FLOW), "--json"],
        env=env,
        cwd=tmp,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    document = json.loads(done.stdout)
    return document, read_artifacts(document["run_id"]), tmp


@pytest.mark.prefect
def test_count_variations_get_a_sheet_record_and_a_numbered_grid(
    sheet_run: tuple[dict[str, Any], dict[str, Any], Path],
) -> None:
    document, artifacts, _ = sheet_run
    output = document["steps"]["variations"]["output"]
    assert len(output) == 4  # count 3, then the sheet (the static length says so too)
    *images, sheet = output
    assert [image["index"] for image in images] == [0, 1, 2]
    assert sheet["file_name"] == "variations-contact-sheet.png"
    assert sheet["provenance"]["kind"] == "contact_sheet"
    assert sheet["provenance"]["images"] == "3"
    assert sheet["provenance"]["images_sha256"] == " ".join(i["sha256"] for i in images)
    assert (sheet["cost_usd"], sheet["provider"], sheet["model"], sheet["index"]) == (
        0.0,
        "fetchflow",
        None,
        3,
    )
    path = Path(sheet["storage_uri"].removeprefix("file://"))
    with Image.open(io.BytesIO(path.read_bytes())) as picture:
        assert picture.format == "PNG"
        assert picture.size == (sheet["width"], sheet["height"])
        xmp = str(picture.info.get("XML:com.adobe.xmp", ""))
    # A composite of the preview's drawings (no trained model), put together by fetchflow.
    assert "digitalsourcetype/compositeSynthetic" in xmp
    assert "<xmp:CreatorTool>fetchflow " in xmp

    gallery = artifacts["sheets-variations-output"]["data"]
    assert "made 3 images." in gallery
    assert "| \\# | 1 | 2 | 3 |\n|---|:---:|:---:|:---:|\n|  | [![" in gallery  # numbered
    linked = [url for _, url in LINKED_THUMB.findall(gallery)]
    assert len(linked) == 4  # 3 in the grid, then the sheet
    assert "Contact sheet: [![variations-contact-sheet.png]" in gallery
    assert "contact sheet of the images above" in gallery
    summary = artifacts["sheets-run-summary"]["data"]
    assert "3 step(s) · 9 image(s)" in summary  # 6 + 3: the sheets are no images made


@pytest.mark.prefect
def test_a_matrix_gets_a_grid_with_axis_labels_and_one_sheet(
    sheet_run: tuple[dict[str, Any], dict[str, Any], Path],
) -> None:
    document, artifacts, _ = sheet_run
    output = document["steps"]["grid"]["output"]
    *images, sheet = output
    assert [image["matrix"] for image in images] == [
        {"product": p, "style": s} for p in ("mug", "tote", "cap") for s in ("ink", "oil")
    ]
    assert sheet["provenance"]["kind"] == "contact_sheet"
    assert sheet["provenance"]["layout"] == "product \\ style"
    assert sheet["matrix"] == {} and sheet["index"] == 6
    gallery = artifacts["sheets-grid-output"]["data"]
    assert "made 6 images." in gallery
    _, rest = gallery.split("| product \\\\ style | ink | oil |\n|---|:---:|:---:|\n", 1)
    rows = rest.split("\n\n", 1)[0].splitlines()
    assert [row.split(" | ")[0] for row in rows] == ["| **mug**", "| **tote**", "| **cap**"]
    in_grid = [url for row in rows for _, url in LINKED_THUMB.findall(row)]
    assert in_grid == [image["file_url"] for image in images]  # 6 thumbnails, row by row
    assert [name for row in rows for name in re.findall(r"!\[([^\]]+)\]", row)] == [
        f"grid-{p}-{s}-1.png" for p in ("mug", "tote", "cap") for s in ("ink", "oil")
    ]
    assert "Contact sheet: [![grid-contact-sheet.png]" in gallery
    assert len(LINKED_THUMB.findall(gallery)) == 7
