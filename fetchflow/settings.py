"""fetchflow settings, read from the environment and from ``.env``.

Every field is ``FETCHFLOW_<NAME>`` in the environment; ``.env.example`` lists each one with a
comment (a test keeps the two in sync). These are the engine's own; a step library keeps its
settings in its own model, read the same way by :func:`read_settings`. Variables of the
libraries we use (``AWS_*``, ``PREFECT_*``, ``OPENAI_*``, ...) are read by those libraries
themselves, untouched.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fetchflow.errors import RuleViolation, SettingsInvalid, with_hint

__all__ = [
    "PRESIGN_MAX_SECONDS",
    "Settings",
    "SettingsModel",
    "check_home",
    "load_settings",
    "read_settings",
]

#: S3 refuses presigned URLs that live longer than seven days (SigV4 limit).
PRESIGN_MAX_SECONDS = 7 * 24 * 3600

_MIB = 1024 * 1024

#: ``FETCHFLOW_TASK_RUNNER``'s forms: threads, dask, dask://host:port.
_TASK_RUNNER = re.compile(r"threads|dask|dask://[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}")

SettingsT = TypeVar("SettingsT", bound="SettingsModel")


def _default_store(data: dict[str, Any]) -> str:
    return str(Path(data["home"]) / "assets")


def _default_spool_dir(data: dict[str, Any]) -> Path:
    return Path(data["home"]) / "spool"


class SettingsModel(BaseSettings):
    """Base of a settings model read from ``FETCHFLOW_<NAME>`` variables and ``.env``.

    The engine's :class:`Settings` is one; a step library keeps its own (never in the
    engine's), read with :func:`read_settings`. Values are immutable; other variables in
    ``.env`` are ignored.
    """

    model_config = SettingsConfigDict(
        env_prefix="FETCHFLOW_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )


class Settings(SettingsModel):
    """fetchflow's own configuration."""

    home: Path = Field(
        default=Path(".fetchflow"),
        description="Working folder for local state: the embedded Prefect database, "
        "the local asset store and the upload spool. Relative paths are under the "
        "current directory.",
    )
    max_parallel_steps: int = Field(
        default=8,
        ge=1,
        le=256,
        description="How many steps of one run may execute at the same time.",
    )
    task_runner: str = Field(
        default="threads",
        description="Where a run's steps execute: threads (in the run's process), dask (a "
        "local cluster of worker processes, needs fetchflow[dask]) or dask://host:port (an "
        "existing Dask scheduler; its workers need fetchflow and the step plugins).",
    )

    @field_validator("task_runner")
    @classmethod
    def _task_runner_form(cls, value: str) -> str:
        if not _TASK_RUNNER.fullmatch(value):
            raise RuleViolation(
                f'must be threads, dask or dask://host:port; got "{value}"',
                fields=("task_runner",),
                hint="e.g. FETCHFLOW_TASK_RUNNER=dask (a local cluster of worker processes) "
                "or dask://127.0.0.1:8786 (a running Dask scheduler)",
            )
        return value

    heartbeat_seconds: float = Field(
        default=10.0,
        ge=1,
        le=600,
        description="How often a running run refreshes its record in the store. A run whose "
        "record is older than 6 times this is dead: running it again takes it over.",
    )

    store: str = Field(
        default_factory=_default_store,
        description="Where assets go: s3://bucket/prefix for S3 (or any S3-compatible "
        "server boto3 reaches: AWS_ENDPOINT_URL, AWS_PROFILE, AWS_REGION and the AWS keys "
        "are read by boto3 itself), or a directory path for the embedded local store. "
        "Default: <home>/assets.",
    )
    public_base_url: str | None = Field(
        default=None,
        description="When the bucket is served publicly (CDN, public R2 bucket), asset "
        "file_url is this base URL + the object key instead of a presigned URL.",
    )
    presign_expiry_seconds: int = Field(
        default=24 * 3600,
        ge=1,
        le=PRESIGN_MAX_SECONDS,
        description="Lifetime of presigned file_url links, in seconds; at most 604800 "
        "(7 days), S3's own maximum.",
    )
    upload_concurrency: int = Field(
        default=4,
        ge=1,
        le=64,
        description="How many uploads (and multipart parts of one upload) run at the same time.",
    )
    matrix_concurrency: int = Field(
        default=4,
        ge=1,
        le=64,
        description="How many combinations of one matrix step run at the same time (provider "
        "calls are still limited by FETCHFLOW_PROVIDER_CONCURRENCY).",
    )
    upload_attempts: int = Field(
        default=5,
        ge=1,
        le=20,
        description="How many times one S3 request is tried (first try included, "
        "exponential backoff) before the bytes go to the spool.",
    )
    multipart_threshold_bytes: int = Field(
        default=64 * _MIB,
        ge=5 * _MIB,
        description="Files at least this large are uploaded in parts (S3 parts are at "
        "least 5 MiB).",
    )
    spool_dir: Path = Field(
        default_factory=_default_spool_dir,
        description="Where the bytes of an upload that failed after every retry are kept "
        "until they are pushed again. Default: <home>/spool.",
    )

    database_url: SecretStr | None = Field(
        default=None,
        description="The database of `fetchflow server`: a PostgreSQL URL in Prefect's "
        "asyncpg form, postgresql+asyncpg://user:password@host:5432/db. Default: the "
        "embedded SQLite database in <home>/prefect.",
    )

    @property
    def prefect_home(self) -> Path:
        """The Prefect home fetchflow uses when the user has not chosen one."""
        return self.home / "prefect"


def load_settings() -> Settings:
    """Read the settings from the environment and ``.env`` in the current directory.

    Raises:
        SettingsInvalid: A ``FETCHFLOW_*`` value is invalid (every bad one is named).
    """
    return read_settings(Settings)


def read_settings(model: type[SettingsT]) -> SettingsT:
    """Read a ``FETCHFLOW_*`` settings model (the engine's, a step library's own).

    Raises:
        SettingsInvalid: A value is invalid; every bad one is named as its variable.
    """
    try:
        return model()
    except ValidationError as error:
        from fetchflow.field_issues import translate_errors

        lines = []
        for issue in translate_errors(error, list(model.model_fields)):
            if issue.message.startswith("the default factory uses validated data"):
                continue  # a consequence of another bad value, reported on its own
            name = f"FETCHFLOW_{issue.field.upper()}"
            lines.append(with_hint(f"setting {name}: {issue.message}", issue.hint))
        raise SettingsInvalid("\n".join(lines)) from None


def check_home(settings: Settings) -> Path:
    """Make sure ``FETCHFLOW_HOME`` is a folder fetchflow can write (created if missing).

    Called by the commands that keep state there (``run``, ``server``, ``serve``, ``push``,
    ``approve``) before anything else touches it.

    Raises:
        SettingsInvalid: It is a file, cannot be created, or cannot be written.
    """
    home = settings.home
    try:
        home.mkdir(parents=True, exist_ok=True)
        problem = None if os.access(home, os.W_OK | os.X_OK) else "not writable"
    except OSError as error:
        problem = error.strerror or str(error)
    if problem is not None:
        raise SettingsInvalid(
            f"setting FETCHFLOW_HOME: {home} cannot be used as fetchflow's folder: {problem}",
            "set FETCHFLOW_HOME to a folder you can write (default: .fetchflow in the current "
            "directory)",
        )
    return home
