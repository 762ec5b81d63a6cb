"""A throwaway PostgreSQL cluster for tests, from Debian's ``postgresql`` binaries.

:func:`postgres_cluster` runs ``initdb`` in a fresh temporary folder, starts the server with
``pg_ctl`` on 127.0.0.1 and a free port (password authentication, scram-sha-256, for every
connection: the same as a real server), and stops it and removes the folder at the end.
PostgreSQL refuses to run as root: when the tests run as root, the server runs as the
``postgres`` user the Debian package creates (``runuser -u postgres --``), or ``nobody``
where there is none. Clients (``psql``, asyncpg, Prefect) connect over TCP as any user.

Where the binaries are missing, :func:`require_postgres` skips with the reason, except in CI
(``CI`` set), where a missing PostgreSQL is a failure: the CI image has it.

Run by hand: ``python tests/orchestration/postgres.py`` starts a cluster, prints its
superuser URL and waits for Enter.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["PostgresCluster", "find_bin_dir", "postgres_cluster", "require_postgres"]

#: Debian installs each major version's binaries here (``pg_ctl`` on PATH links into one).
DEBIAN_BIN_GLOB = "/usr/lib/postgresql/*/bin"
SUPERUSER = "fetchflow_test_admin"


def find_bin_dir() -> Path | None:
    """The folder holding ``initdb``, ``pg_ctl`` and ``psql``: the one ``pg_ctl`` on PATH
    points into, else the newest ``/usr/lib/postgresql/<version>/bin``; None when absent."""
    on_path = shutil.which("pg_ctl")
    candidates = [Path(on_path).resolve().parent] if on_path else []
    candidates += sorted(
        Path("/").glob(DEBIAN_BIN_GLOB.lstrip("/")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for folder in candidates:
        if all((folder / name).is_file() for name in ("initdb", "pg_ctl", "psql")):
            return folder
    return None


def require_postgres() -> Path:
    """The binaries' folder; skips the test (fails it in CI) when there is none."""
    found = find_bin_dir()
    if found is None:
        reason = (
            "PostgreSQL binaries not found (initdb, pg_ctl, psql on PATH or in "
            f"{DEBIAN_BIN_GLOB}): install Debian's postgresql package"
        )
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run the PostgreSQL tests", pytrace=False)
        pytest.skip(reason)
    return found


def _run_as() -> str | None:
    """The user the server runs as when we are root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root, and no postgres or nobody user to run PostgreSQL as")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class PostgresCluster:
    """A running cluster.

    Attributes:
        bin_dir: Where its binaries are.
        root: The temporary folder (data directory, log, socket).
        port: Its TCP port on 127.0.0.1.
        password: The superuser's password.
        run_as: The user the server runs as (None: the current one).
    """

    bin_dir: Path
    root: Path
    port: int
    password: str
    run_as: str | None
    host: str = "127.0.0.1"

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        """The server's log."""
        return self.root / "postgres.log"

    def url(self, user: str, password: str, database: str) -> str:
        """Prefect's asyncpg connection URL for a user and database of this cluster."""
        return f"postgresql+asyncpg://{user}:{password}@{self.host}:{self.port}/{database}"

    def psql(
        self,
        sql: str,
        *,
        database: str = "postgres",
        user: str = SUPERUSER,
        password: str | None = None,
    ) -> str:
        """Run ``sql`` with ``psql`` over TCP; returns its unaligned, tuples-only output."""
        env = {
            **os.environ,
            "PGPASSWORD": self.password if password is None else password,
            "PGCONNECT_TIMEOUT": "5",
        }
        done = subprocess.run(
            [
                str(self.bin_dir / "psql"),
                *("-h", self.host, "-p", str(self.port), "-U", user, "-d", database),
                *("-v", "ON_ERROR_STOP=1", "-At", "-c", sql),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql {sql!r} failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def create_database(self, name: str, owner: str, password: str) -> str:
        """A login role and a database it owns; returns the asyncpg URL for them."""
        self.psql(f"CREATE ROLE {owner} LOGIN PASSWORD '{password}'")
        self.psql(f"CREATE DATABASE {name} OWNER {owner}")
        return self.url(owner, password, name)


def _as_user(run_as: str | None, command: list[str]) -> list[str]:
    return ["runuser", "-u", run_as, "--", *command] if run_as else command


def _start(bin_dir: Path, root: Path) -> PostgresCluster:
    run_as = _run_as()
    cluster = PostgresCluster(
        bin_dir=bin_dir,
        root=root,
        port=_free_port(),
        password=secrets.token_urlsafe(12),
        run_as=run_as,
    )
    password_file = root / "pwfile"
    password_file.write_text(cluster.password + "\n", encoding="utf-8")
    if run_as:
        user = pwd.getpwnam(run_as)
        os.chown(root, user.pw_uid, user.pw_gid)
        os.chown(password_file, user.pw_uid, user.pw_gid)

    def run(command: list[str]) -> None:
        done = subprocess.run(
            _as_user(run_as, command),
            cwd=root,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            log = cluster.log_file.read_text(errors="replace") if cluster.log_file.exists() else ""
            raise RuntimeError(
                f"{' '.join(command[:2])} failed ({done.returncode}): {done.stderr.strip()}\n{log}"
            )

    run(
        [
            str(bin_dir / "initdb"),
            *("-D", str(cluster.data_dir), "-U", SUPERUSER, "--pwfile", str(password_file)),
            *("--auth", "scram-sha-256", "-E", "UTF8", "--locale", "C", "--no-sync"),
        ]
    )
    password_file.unlink()
    settings = {
        "listen_addresses": "'127.0.0.1'",
        "port": str(cluster.port),
        "unix_socket_directories": f"'{root}'",
        # A test database: durability buys nothing, and fsync is slow on small disks.
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "100",
    }
    with (cluster.data_dir / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.writelines(f"{name} = {value}\n" for name, value in settings.items())
    run(
        [
            str(bin_dir / "pg_ctl"),
            *("-D", str(cluster.data_dir), "-l", str(cluster.log_file), "-w", "-t", "60"),
            "start",
        ]
    )
    return cluster


def _stop(cluster: PostgresCluster) -> None:
    subprocess.run(
        _as_user(
            cluster.run_as,
            [
                str(cluster.bin_dir / "pg_ctl"),
                *("-D", str(cluster.data_dir), "-m", "fast", "-w", "-t", "30", "stop"),
            ],
        ),
        cwd=cluster.root,
        capture_output=True,
        timeout=60,
        check=False,
    )


@contextlib.contextmanager
def postgres_cluster(bin_dir: Path | None = None) -> Iterator[PostgresCluster]:
    """Start a throwaway cluster; stop it and remove its files on exit.

    The folder is made with :func:`tempfile.mkdtemp` (``/tmp``), not pytest's ``tmp_path``:
    when we are root, the server's user must be able to reach it, and pytest's base folder
    is private to root.
    """
    found = bin_dir or find_bin_dir()
    if found is None:
        raise RuntimeError("PostgreSQL binaries not found")
    root = Path(tempfile.mkdtemp(prefix="fetchflow-pg-"))
    try:
        cluster = _start(found, root)
        try:
            yield cluster
        finally:
            _stop(cluster)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    with postgres_cluster() as running:
        print(running.url(SUPERUSER, running.password, "postgres"), flush=True)
        input("Enter stops it ")
