"""The database of ``fetchflow server``: SQLite in the Prefect home, or PostgreSQL.

SQLite is the embedded default and needs nothing. Under several serve processes and workers
it answers ``database is locked`` (HTTP 503); PostgreSQL does not. A PostgreSQL database is
given as Prefect's asyncpg URL, ``postgresql+asyncpg://user:password@host:5432/db``, with
``fetchflow server --database URL`` or the ``FETCHFLOW_DATABASE_URL`` setting; the server
gets it as ``PREFECT_SERVER_DATABASE_CONNECTION_URL`` (which also works when set directly).

Before the server starts, :func:`check_database` refuses a URL Prefect cannot use (wrong
scheme), a server nobody answers on (naming host:port) and a refused login, each as one
message. The password never leaves this module's callers in clear: messages, the state file
and the console show :meth:`ServerDatabase.display`, with the password replaced by ``***``.
"""

from __future__ import annotations

import asyncio
import re
import socket
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field

from fetchflow.errors import SettingsInvalid
from fetchflow.settings import Settings

__all__ = [
    "CONNECT_TIMEOUT_SECONDS",
    "ServerDatabase",
    "check_database",
    "redact",
    "secrets",
    "server_database",
]

#: How long the check before start waits for PostgreSQL to answer.
CONNECT_TIMEOUT_SECONDS = 5.0
#: The variable Prefect's server reads its database from.
PREFECT_DATABASE_VARIABLE = "PREFECT_SERVER_DATABASE_CONNECTION_URL"
POSTGRES_SCHEME = "postgresql+asyncpg"
SQLITE_SCHEME = "sqlite+aiosqlite"
EXAMPLE_URL = "postgresql+asyncpg://USER:PASSWORD@HOST:5432/DATABASE"
#: Schemes people write for PostgreSQL that Prefect's server cannot use.
_OTHER_POSTGRES = ("postgres", "postgresql", "postgresql+psycopg2", "postgresql+psycopg", "pg")


@dataclass(frozen=True)
class ServerDatabase:
    """A database for the server, and where it was given.

    Attributes:
        url: The connection URL, password included (never print it: use :meth:`display`).
        source: Where it came from (``--database``, ``FETCHFLOW_DATABASE_URL`` or
            ``PREFECT_SERVER_DATABASE_CONNECTION_URL``), for messages.
    """

    url: str = field(repr=False)
    source: str

    @property
    def scheme(self) -> str:
        """The URL's scheme, lower case (``postgresql+asyncpg``)."""
        return urllib.parse.urlsplit(self.url).scheme.lower()

    @property
    def is_postgres(self) -> bool:
        """Whether this is a PostgreSQL database Prefect can use."""
        return self.scheme == POSTGRES_SCHEME

    @property
    def address(self) -> str:
        """``host:port`` of a PostgreSQL server (defaults: localhost, 5432)."""
        parts = urllib.parse.urlsplit(self.url)
        try:
            port = parts.port or 5432
        except ValueError:
            port = 5432
        host = parts.hostname or "localhost"
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def display(self) -> str:
        """The URL with its password replaced by ``***`` (for messages, logs, state)."""
        return redact(self.url)

    def __str__(self) -> str:
        return self.display()


def _userinfo(url: str) -> tuple[str, str] | None:
    """``(user, password)`` as written before the URL's last ``@`` (None: no password).

    Read by hand, not with ``urlsplit``: a password with an unencoded ``#``, ``/`` or ``?``
    ends the address early there, and its rest would be taken for the path or fragment.
    """
    _, separator, rest = url.partition("://")
    if not separator or "@" not in rest:
        return None
    user, colon, password = rest.rpartition("@")[0].partition(":")
    return (user, password) if colon else None


#: A password given as a query parameter (``?password=...``), which libpq and asyncpg read.
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


def redact(url: str) -> str:
    """``url`` without its password (``user:***@host``, ``password=***``); the rest as given.

    Errs on hiding too much: everything between the user and the last ``@`` is hidden.
    """
    found = _userinfo(url)
    if found is not None:
        scheme, _, rest = url.partition("://")
        url = f"{scheme}://{found[0]}:***@{rest.rpartition('@')[2]}"
    return _QUERY_PASSWORD.sub(r"\1***", url)


def secrets(url: str) -> list[str]:
    """Every password the URL holds, as written and decoded (to scrub them from text)."""
    found: list[str] = []
    userinfo = _userinfo(url)
    if userinfo is not None and userinfo[1]:
        found.append(userinfo[1])
    found.extend(match.group(0).split("=", 1)[1] for match in _QUERY_PASSWORD.finditer(url))
    decoded = [urllib.parse.unquote(value) for value in found]
    return sorted({value for value in found + decoded if value}, key=len, reverse=True)


def server_database(
    settings: Settings, flag: str | None, environ: Mapping[str, str]
) -> ServerDatabase | None:
    """The database the server should use: ``--database``, else ``FETCHFLOW_DATABASE_URL``,
    else ``PREFECT_SERVER_DATABASE_CONNECTION_URL``; None for the embedded SQLite."""
    if flag is not None:
        return ServerDatabase(flag.strip(), "--database")
    if settings.database_url is not None:
        return ServerDatabase(
            settings.database_url.get_secret_value().strip(), "FETCHFLOW_DATABASE_URL"
        )
    given = environ.get(PREFECT_DATABASE_VARIABLE, "").strip()
    return ServerDatabase(given, PREFECT_DATABASE_VARIABLE) if given else None


def _check_url(database: ServerDatabase) -> None:
    """Refuse what Prefect's server cannot connect with, before anything starts."""
    scheme = database.scheme
    shown = database.display()
    if scheme == SQLITE_SCHEME:
        return
    if scheme in _OTHER_POSTGRES:
        rest = shown.split("://", 1)[1] if "://" in shown else ""
        raise SettingsInvalid(
            f"{database.source}: {shown!r} is not a URL Prefect's server can use: it needs "
            f"the asyncpg driver, {POSTGRES_SCHEME}://",
            f"write it as {POSTGRES_SCHEME}://{rest or 'USER:PASSWORD@HOST:5432/DATABASE'}",
        )
    if scheme != POSTGRES_SCHEME:
        raise SettingsInvalid(
            f"{database.source}: {shown!r} is not a PostgreSQL URL",
            f"give {EXAMPLE_URL} (or leave it out for the embedded SQLite database)",
        )
    parts = urllib.parse.urlsplit(database.url)
    userinfo = _userinfo(database.url)
    if userinfo is not None and urllib.parse.unquote(userinfo[1]) != (parts.password or ""):
        # '#', '/' or '?' cut the address short: a part of the password is read as the
        # host, port or path (and would be shown as such).
        raise SettingsInvalid(
            f"{database.source}: {shown!r}: the password holds a character that must be "
            "percent-encoded in a URL (# / ? as %23 %2F %3F)",
            "encode it: python3 -c 'import getpass, urllib.parse; "
            'print(urllib.parse.quote(getpass.getpass(), safe=""))\'; or leave the '
            "password out of the URL and set PGPASSWORD",
        )
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise SettingsInvalid(
            f"{database.source}: {shown!r} has a port that is not a number",
            f"give {EXAMPLE_URL}",
        ) from None
    if not parts.path.strip("/"):
        raise SettingsInvalid(
            f"{database.source}: {shown!r} names no database",
            f"add the database after the address: {EXAMPLE_URL}",
        )


async def _connect(url: str, timeout: float) -> None:
    import asyncpg  # type: ignore[import-untyped]  # Prefect's own PostgreSQL driver

    # asyncpg reads the libpq form; PGPASSWORD and ~/.pgpass still apply when the URL has
    # no password, as they do for Prefect's server.
    dsn = "postgresql" + url[len(POSTGRES_SCHEME) :]
    connection = await asyncpg.connect(dsn, timeout=timeout)
    await connection.close(timeout=timeout)


def check_database(database: ServerDatabase, timeout: float = CONNECT_TIMEOUT_SECONDS) -> None:
    """Check that the server can use ``database``: a URL it understands and, for PostgreSQL,
    a server that answers and accepts the login, within ``timeout`` seconds.

    Raises:
        SettingsInvalid: Wrong scheme, nothing answers at host:port, unknown host, login
            refused, no such database. The message names the source and host:port, never
            the password.
    """
    _check_url(database)
    if not database.is_postgres:
        return
    import asyncpg.exceptions  # type: ignore[import-untyped]

    where = f"{database.source}: PostgreSQL at {database.address}"
    parts = urllib.parse.urlsplit(database.url)
    user = urllib.parse.unquote(parts.username or "")
    name = urllib.parse.unquote(parts.path.strip("/"))
    try:
        asyncio.run(asyncio.wait_for(_connect(database.url, timeout), timeout + 1))
    except TimeoutError:
        what, hint = f"no answer within {timeout:g} s", "check the host, port and firewall"
    except socket.gaierror:
        what, hint = f"unknown host {parts.hostname!r}", "check the host name"
    except ConnectionRefusedError:
        what, hint = (
            "nothing listens there (connection refused)",
            "start PostgreSQL, or check the host and port",
        )
    except OSError as error:
        reason = error.strerror or _clean(error, database.url)
        what, hint = f"cannot connect: {reason}", "check the host and port"
    except asyncpg.exceptions.InvalidPasswordError:
        what, hint = (
            f"password authentication failed for user {user!r}",
            "check the user and password (or PGPASSWORD / ~/.pgpass when the URL has none)",
        )
    except asyncpg.exceptions.InvalidCatalogNameError:
        what, hint = (
            f"database {name!r} does not exist",
            f"create it: createdb -O {user or 'USER'} {name}",
        )
    except asyncpg.exceptions.InvalidAuthorizationSpecificationError as error:
        what, hint = (
            f"login refused for user {user!r}: {_clean(error, database.url)}",
            "check the user, and pg_hba.conf on the server",
        )
    except (asyncpg.exceptions.PostgresError, asyncpg.exceptions.InterfaceError) as error:
        what, hint = _clean(error, database.url), "check the URL and the server's log"
    except ValueError as error:  # asyncpg's own URL parsing
        what, hint = f"the URL cannot be read: {_clean(error, database.url)}", f"give {EXAMPLE_URL}"
    else:
        return
    raise SettingsInvalid(f"{where} ({database.display()}): {what}", hint)


def _clean(error: BaseException, url: str) -> str:
    """An error's text, first line only, with the URL's password (if any) removed."""
    text = (str(error) or type(error).__name__).strip().splitlines()[0]
    for secret in secrets(url):
        text = text.replace(secret, "***")
    return text
