"""Suite-wide fixtures: the test step plugin (a real entry point), one Prefect server, and the
one definition of which of the machine's settings no test may see.

The test step types in ``tests/plugin/fetchflow_teststeps.py`` are registered the way any
plugin is: a ``*.dist-info`` folder with an ``entry_points.txt`` on ``sys.path``. Nothing
here imports Prefect at module level, so tests that do not run flows never pay for it.

A test's subprocess starts from ``clean_env`` (the machine's environment without them); a
test that reads settings in-process calls ``scrub_environ(monkeypatch)``. A command-line run
that does not test Prefect's cold start adds ``PREFECT_API_URL=prefect_api`` (the session's
server) instead of starting an embedded server of its own (10-30 s each).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from fetchflow.registry import StepRegistry

TESTS_DIR = Path(__file__).resolve().parent
PLUGIN_DIR = TESTS_DIR / "plugin"
RUNS_DIR = TESTS_DIR / "data" / "runs"

PLUGIN_DIST = "fetchflow-teststeps"
PLUGIN_VERSION = "0.0.0"
#: The ``[fetchflow.steps]`` section of the test distribution.
TEST_STEP_ENTRY_POINTS = {
    "echo": "fetchflow_teststeps:EchoStep",
    "sleep": "fetchflow_teststeps:SleepStep",
    "fail": "fetchflow_teststeps:FailStep",
    "crash": "fetchflow_teststeps:CrashStep",
    "list_output": "fetchflow_teststeps:ListOutputStep",
    "priced": "fetchflow_teststeps:PricedStep",
}

#: Prefixes of the machine's settings that would change what a test does: a developer's
#: fetchflow store, Prefect server, AWS profile or endpoint, provider key or base URL (the
#: SDKs read ``OPENAI_*``, ``GEMINI_*`` and ``GOOGLE_*``), coverage's subprocess hooks.
MACHINE_PREFIXES = (
    "PREFECT_",
    "FETCHFLOW_",
    "AWS_",
    "OPENAI_",
    "GEMINI_",
    "GOOGLE_",
    "FAL_",
    "COV_CORE_",
)


def is_machine_setting(name: str) -> bool:
    """Whether the environment variable ``name`` is one no test may inherit."""
    return name.startswith(MACHINE_PREFIXES)


#: The environment as the session started, without the machine's settings. Taken once, at
#: import, so what a test monkeypatches never leaks into another test's subprocess.
CLEAN_ENV = MappingProxyType(
    {name: value for name, value in os.environ.items() if not is_machine_setting(name)}
)

#: Prefect settings for every test session: quiet console, no analytics, a patient start.
QUIET_PREFECT = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_LOGGING_LEVEL": "CRITICAL",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "CRITICAL",
    "PREFECT_LOGGING_HANDLERS_CONSOLE_FLOW_RUNS_LEVEL": "CRITICAL",
    "PREFECT_LOGGING_HANDLERS_CONSOLE_TASK_RUNS_LEVEL": "CRITICAL",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_CLI_PROMPT": "false",
}


@dataclass(frozen=True)
class PluginSite:
    """Where the test plugin lives.

    Attributes:
        site_dir: The folder holding ``fetchflow_teststeps-0.0.0.dist-info``.
        module_dir: The folder holding ``fetchflow_teststeps.py``.
    """

    site_dir: Path
    module_dir: Path

    @property
    def paths(self) -> tuple[str, ...]:
        """The folders to put on ``sys.path`` (or ``PYTHONPATH``)."""
        return (str(self.site_dir), str(self.module_dir))

    @property
    def pythonpath(self) -> str:
        """A ``PYTHONPATH`` value that registers the test steps in a subprocess."""
        return os.pathsep.join(self.paths)


def write_dist_info(site_dir: Path, entry_points: dict[str, str]) -> Path:
    """Write a minimal installed-distribution folder declaring ``entry_points``."""
    folder = site_dir / f"{PLUGIN_DIST.replace('-', '_')}-{PLUGIN_VERSION}.dist-info"
    folder.mkdir(parents=True)
    (folder / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {PLUGIN_DIST}\nVersion: {PLUGIN_VERSION}\n",
        encoding="utf-8",
    )
    lines = ["[fetchflow.steps]", *(f"{name} = {target}" for name, target in entry_points.items())]
    (folder / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def clean_env() -> Mapping[str, str]:
    """The environment for a test's subprocess: the machine's without its settings
    (:data:`MACHINE_PREFIXES`). Read-only: ``env = {**clean_env, "FETCHFLOW_HOME": ...}``."""
    return CLEAN_ENV


def _scrub(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if is_machine_setting(name) and not name.startswith("PREFECT_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def scrub_environ() -> Callable[[pytest.MonkeyPatch], None]:
    """A function removing the machine's settings (:data:`MACHINE_PREFIXES`) from
    ``os.environ`` through the monkeypatch it is given, so they come back with it. The
    ``PREFECT_*`` ones stay: in-process they are the session server's (``prefect_api``)."""
    return _scrub


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> PluginSite:
    """The test plugin installed as a distribution in a temp folder (not yet on sys.path)."""
    site_dir = tmp_path_factory.mktemp("plugin-site")
    write_dist_info(site_dir, TEST_STEP_ENTRY_POINTS)
    return PluginSite(site_dir=site_dir, module_dir=PLUGIN_DIR)


@pytest.fixture(scope="session")
def plugin_pythonpath(plugin_site: PluginSite) -> str:
    """``PYTHONPATH`` for subprocesses that must see the test steps."""
    return plugin_site.pythonpath


@pytest.fixture
def plugin_registry(plugin_site: PluginSite, monkeypatch: pytest.MonkeyPatch) -> StepRegistry:
    """The registry read from real entry points, with the test plugin on ``sys.path``.

    The path change is undone after the test, so other tests see the installed steps only.
    """
    from fetchflow.registry import StepRegistry

    for path in reversed(plugin_site.paths):
        monkeypatch.syspath_prepend(path)
    return StepRegistry.from_entry_points()


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Prefect server for the session (a temp home and database); yields its API URL.

    Request it only from tests marked ``prefect``: it takes ~15 s to start.
    """
    home = tmp_path_factory.mktemp("prefect-home")
    patch = pytest.MonkeyPatch()
    for name in list(os.environ):
        if name.startswith("PREFECT_"):  # the machine's; the session's are set below
            patch.delenv(name)
    patch.setenv("PREFECT_HOME", str(home))
    for name, value in QUIET_PREFECT.items():
        patch.setenv(name, value)
    # Settings are read when Prefect is first imported: the environment must be ready.
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    try:
        with prefect_test_harness(server_startup_timeout=None):
            yield str(PREFECT_API_URL.value())
    finally:
        patch.undo()
