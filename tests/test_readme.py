"""The README's promises about setting up and testing stay true of the repository."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def _commands(section: str) -> list[str]:
    """The lines of the section's ```bash blocks."""
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def test_ci_runs_exactly_the_readmes_test_command() -> None:
    readme = _commands(_section("Run the tests"))
    ci = [
        line
        for line in (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith(("#", "set ", "cd "))
    ]

    assert len(readme) == 1, readme
    assert ci == readme


def test_the_readme_states_the_prefect_range_the_package_declares() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = [d for d in project["dependencies"] if re.match(r"prefect\b", d)]

    assert len(declared) == 1, declared
    assert f"`{declared[0]}`" in _section("Run the tests")


def _between(marker: str) -> str:
    start = README.index(f"<!-- {marker} -->\n") + len(f"<!-- {marker} -->\n")
    return README[start : README.index(f"<!-- /{marker} -->")]


def test_the_readmes_model_tables_are_the_catalogs() -> None:
    from steps.imaging.models.table import model_table, upscaler_table

    models = _between("model-table")
    assert models == model_table()
    # Every option that only some models take is a column, each with a model that takes it.
    for option in ("steps", "guidance", "negative_prompt", "strength", "partial_images"):
        assert f"`{option}`" in models.splitlines()[0]
    assert "| `fal-ai/flux/dev` | fal |" in models
    assert "| `local/<folder>` |" in models
    assert _between("upscaler-table") == upscaler_table()
    assert "| `fal-ai/clarity-upscaler` | fal | 2, 4 |" in upscaler_table()
