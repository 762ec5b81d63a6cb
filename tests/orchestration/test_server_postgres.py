"""``fetchflow server`` on PostgreSQL: the checks before it starts, and a real run recorded.

A throwaway PostgreSQL cluster (``tests/orchestration/postgres.py``, Debian's binaries) and
one ``fetchflow server --database`` on it serve the whole module: the server's cold start on
a fresh database (migrations) is the slow part. Every command is the real CLI in a
subprocess. The database password is a distinctive string, so the tests can check that it
appears nowhere: not in the console, the error messages, ``server.json`` or ``server.log``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from postgres import PostgresCluster, postgres_cluster, require_postgres  # tests/orchestration

from fetchflow.errors import SettingsInvalid
from fetchflow.orchestration.database import ServerDatabase, check_database, server_database
from fetchflow.orchestration.server import (
    running_server,
    server_environment,
    server_log_file,
    server_state_file,
)
from fetchflow.settings import Settings

REPO = Path(__file__).resolve().parents[2]
USER = "fetchflow"
#: Distinctive, so a leak anywhere is found by a plain substring search.
PASSWORD = "pw-Zq7-not-for-your-eyes"
DATABASE = "fetchflow_prefect"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def cli_env(clean_env: Mapping[str, str], home: Path, **extra: str) -> dict[str, str]:
    return {
        **clean_env,
        "PYTHONPATH": str(REPO),
        "FETCHFLOW_HOME": str(home),
        "NO_COLOR": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        **extra,
    }


def fetchflow(
    env: Mapping[str, str], cwd: Path, *args: str, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fetchflow.cli", *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    bin_dir = require_postgres()
    with postgres_cluster(bin_dir) as running:
        running.create_database(DATABASE, USER, PASSWORD)
        yield running


@dataclass(frozen=True)
class RunningServer:
    home: Path
    env: dict[str, str]
    process: subprocess.Popen[str]
    startup_seconds: float

    @property
    def settings(self) -> Settings:
        return Settings(home=self.home)


@pytest.fixture(scope="module")
def pg_server(
    cluster: PostgresCluster,
    clean_env: Mapping[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningServer]:
    """``fetchflow server --database URL`` on the cluster, for the module."""
    home = tmp_path_factory.mktemp("pg-home")
    env = cli_env(clean_env, home)
    port = free_port()
    url = cluster.url(USER, PASSWORD, DATABASE)
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "fetchflow.cli", "server", "--port", str(port), "--database", url],
        env=env,
        cwd=home.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    settings = Settings(home=home)
    try:
        deadline = started + 180
        while running_server(settings) is None:
            assert process.poll() is None, f"the server exited: {process.communicate()}"
            assert time.monotonic() < deadline, "the server did not start within 180 s"
            time.sleep(0.25)
        yield RunningServer(home, env, process, time.monotonic() - started)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)


# -- choosing the database (pure) --------------------------------------------------------------

PG_URL = f"postgresql+asyncpg://{USER}:{PASSWORD}@db.example:5432/prefect"


@pytest.mark.parametrize(
    ("flag", "setting", "inherited", "expected"),
    [
        pytest.param(None, None, None, None, id="embedded-sqlite"),
        pytest.param(
            PG_URL, "postgresql+asyncpg://b:c@d/e", None, (PG_URL, "--database"), id="flag"
        ),
        pytest.param(None, PG_URL, "x", (PG_URL, "FETCHFLOW_DATABASE_URL"), id="setting"),
        pytest.param(
            None, None, PG_URL, (PG_URL, "PREFECT_SERVER_DATABASE_CONNECTION_URL"), id="prefect"
        ),
    ],
)
def test_the_database_comes_from_the_flag_then_the_setting_then_prefect_s_variable(
    flag: str | None,
    setting: str | None,
    inherited: str | None,
    expected: tuple[str, str] | None,
    tmp_path: Path,
) -> None:
    settings = Settings(home=tmp_path, database_url=setting)
    environ = {} if inherited is None else {"PREFECT_SERVER_DATABASE_CONNECTION_URL": inherited}

    found = server_database(settings, flag, environ)

    assert (None if found is None else (found.url, found.source)) == expected


def test_the_server_gets_the_url_and_nothing_else_shows_the_password(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, database_url=PG_URL)
    database = ServerDatabase(PG_URL, "FETCHFLOW_DATABASE_URL")
    inherited = {"PREFECT_SERVER_DATABASE_CONNECTION_URL": "sqlite+aiosqlite:///elsewhere.db"}

    env = server_environment(settings, host="127.0.0.1", port=4200, environ=inherited)
    with_pg = server_environment(
        settings, host="127.0.0.1", port=4200, environ=inherited, database=database
    )

    assert "PREFECT_SERVER_DATABASE_CONNECTION_URL" not in env  # None: the embedded SQLite
    assert with_pg["PREFECT_SERVER_DATABASE_CONNECTION_URL"] == PG_URL
    shown = f"postgresql+asyncpg://{USER}:***@db.example:5432/prefect"
    assert database.display() == str(database) == shown
    assert PASSWORD not in repr(database) + repr(settings) + str(settings)


# -- refused before anything starts ------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param(
            f"postgres://{USER}:{PASSWORD}@db.example:5432/prefect",
            f"fetchflow: --database: 'postgres://{USER}:***@db.example:5432/prefect' is not a "
            "URL Prefect's server can use: it needs the asyncpg driver, postgresql+asyncpg://\n"
            f"  hint: write it as postgresql+asyncpg://{USER}:***@db.example:5432/prefect",
            id="postgres-scheme",
        ),
        pytest.param(
            f"postgresql://{USER}:{PASSWORD}@db.example/prefect",
            f"fetchflow: --database: 'postgresql://{USER}:***@db.example/prefect' is not a "
            "URL Prefect's server can use: it needs the asyncpg driver, postgresql+asyncpg://\n"
            f"  hint: write it as postgresql+asyncpg://{USER}:***@db.example/prefect",
            id="postgresql-scheme",
        ),
        pytest.param(
            f"mysql://{USER}:{PASSWORD}@db.example/prefect",
            f"fetchflow: --database: 'mysql://{USER}:***@db.example/prefect' is not a "
            "PostgreSQL URL\n"
            "  hint: give postgresql+asyncpg://USER:PASSWORD@HOST:5432/DATABASE (or leave it "
            "out for the embedded SQLite database)",
            id="other-scheme",
        ),
        pytest.param(
            f"postgresql+asyncpg://{USER}:{PASSWORD}@db.example:5432",
            f"fetchflow: --database: 'postgresql+asyncpg://{USER}:***@db.example:5432' names "
            "no database\n"
            "  hint: add the database after the address: "
            "postgresql+asyncpg://USER:PASSWORD@HOST:5432/DATABASE",
            id="no-database",
        ),
    ],
)
def test_a_url_prefect_cannot_use_is_refused(
    url: str, expected: str, tmp_path: Path, clean_env: Mapping[str, str]
) -> None:
    home = tmp_path / "home"
    done = fetchflow(cli_env(clean_env, home), tmp_path, "server", "--database", url)

    assert (done.returncode, done.stderr.strip(), done.stdout) == (2, expected, "")
    assert not server_state_file(Settings(home=home)).exists()


def test_nothing_listening_is_refused_naming_host_and_port(
    tmp_path: Path, clean_env: Mapping[str, str]
) -> None:
    home = tmp_path / "home"
    port = free_port()
    url = f"postgresql+asyncpg://{USER}:{PASSWORD}@127.0.0.1:{port}/prefect"
    env = cli_env(clean_env, home, FETCHFLOW_DATABASE_URL=url)

    done = fetchflow(env, tmp_path, "server", "--port", str(free_port()))

    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"fetchflow: FETCHFLOW_DATABASE_URL: PostgreSQL at 127.0.0.1:{port} "
        f"(postgresql+asyncpg://{USER}:***@127.0.0.1:{port}/prefect): nothing listens there "
        "(connection refused)\n"
        "  hint: start PostgreSQL, or check the host and port"
    )
    assert not server_state_file(Settings(home=home)).exists()
    assert not (home / "prefect").exists(), "no server was started"


def test_a_server_that_never_answers_times_out() -> None:
    with socket.socket() as silent:  # accepts connections, never speaks
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        url = f"postgresql+asyncpg://{USER}:{PASSWORD}@127.0.0.1:{port}/prefect"
        started = time.monotonic()
        with pytest.raises(SettingsInvalid, match=r"no answer within 0\.5 s") as caught:
            check_database(ServerDatabase(url, "--database"), timeout=0.5)
    assert time.monotonic() - started < 3
    assert caught.value.message == (
        f"--database: PostgreSQL at 127.0.0.1:{port} "
        f"(postgresql+asyncpg://{USER}:***@127.0.0.1:{port}/prefect): no answer within 0.5 s"
    )
    assert caught.value.hint == "check the host, port and firewall"


@pytest.mark.parametrize(
    ("user", "password", "database", "what", "hint"),
    [
        pytest.param(
            USER,
            "wrong-password",
            DATABASE,
            f"password authentication failed for user '{USER}'",
            "check the user and password (or PGPASSWORD / ~/.pgpass when the URL has none)",
            id="wrong-password",
        ),
        pytest.param(
            "nobody_here",
            PASSWORD,
            DATABASE,
            "password authentication failed for user 'nobody_here'",
            "check the user and password (or PGPASSWORD / ~/.pgpass when the URL has none)",
            id="unknown-user",
        ),
        pytest.param(
            USER,
            PASSWORD,
            "no_such_db",
            "database 'no_such_db' does not exist",
            f"create it: createdb -O {USER} no_such_db",
            id="no-database",
        ),
    ],
)
def test_a_refused_login_is_one_message_without_the_password(
    cluster: PostgresCluster,
    user: str,
    password: str,
    database: str,
    what: str,
    hint: str,
    tmp_path: Path,
    clean_env: Mapping[str, str],
) -> None:
    home = tmp_path / "home"
    url = cluster.url(user, password, database)

    done = fetchflow(cli_env(clean_env, home), tmp_path, "server", "--database", url)

    address = f"127.0.0.1:{cluster.port}"
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"fetchflow: --database: PostgreSQL at {address} "
        f"(postgresql+asyncpg://{user}:***@{address}/{database}): {what}\n  hint: {hint}"
    )
    assert password not in done.stderr + done.stdout
    assert not server_state_file(Settings(home=home)).exists()


# -- a real server on PostgreSQL ---------------------------------------------------------------


@pytest.mark.prefect
def test_a_run_is_recorded_in_postgres(
    pg_server: RunningServer, cluster: PostgresCluster, tmp_path: Path
) -> None:
    info = running_server(pg_server.settings)
    assert info is not None
    shown = f"postgresql+asyncpg://{USER}:***@127.0.0.1:{cluster.port}/{DATABASE}"
    assert info.database == shown

    # The run finds the server through server.json (same FETCHFLOW_HOME, no PREFECT_API_URL).
    done = fetchflow(pg_server.env, REPO, "run", "flows/hello.yaml", "--json")

    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    recorded = cluster.psql(
        f"SELECT f.name, r.state_type FROM flow_run r JOIN flow f ON f.id = r.flow_id "
        f"WHERE r.id = '{run_id}'",
        database=DATABASE,
        user=USER,
        password=PASSWORD,
    )
    assert recorded == "hello|COMPLETED"
    tasks = ""
    deadline = time.monotonic() + 20  # task runs arrive as events, a moment later
    while time.monotonic() < deadline:
        tasks = cluster.psql(
            f"SELECT string_agg(name || ':' || state_type, ',' ORDER BY name) FROM task_run "
            f"WHERE flow_run_id = '{run_id}'",
            database=DATABASE,
            user=USER,
            password=PASSWORD,
        )
        if tasks.count("COMPLETED") == 3:
            break
        time.sleep(0.5)
    assert tasks == "brief:COMPLETED,caption:COMPLETED,handoff:COMPLETED"
    # Not the embedded SQLite database.
    assert not (pg_server.home / "prefect" / "prefect.db").exists()

    state = server_state_file(pg_server.settings).read_text(encoding="utf-8")
    assert json.loads(state)["database"] == shown
    for text in (state, server_log_file(pg_server.settings).read_text(errors="replace")):
        assert PASSWORD not in text
    assert PASSWORD not in done.stdout + done.stderr
    print(f"fetchflow server cold start on a fresh PostgreSQL: {pg_server.startup_seconds:.1f} s")


@pytest.mark.prefect
def test_ctrl_c_stops_the_postgres_server_and_nothing_shows_the_password(
    pg_server: RunningServer,
) -> None:
    """Runs last in the module: it stops the module's server."""
    pg_server.process.send_signal(signal.SIGINT)
    stdout, stderr = pg_server.process.communicate(timeout=60)

    assert pg_server.process.returncode == 0, stderr
    assert f"history      postgresql+asyncpg://{USER}:***@127.0.0.1:" in stderr
    assert PASSWORD not in stdout + stderr
    assert not server_state_file(pg_server.settings).exists()
    log = server_log_file(pg_server.settings).read_text(errors="replace")
    assert PASSWORD not in log
    assert os.environ.get("PREFECT_SERVER_DATABASE_CONNECTION_URL") is None
