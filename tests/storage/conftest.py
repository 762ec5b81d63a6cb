"""Fixtures for the storage tests: a clean AWS environment, moto, and a real rclone S3 server."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from fetchflow.settings import Settings
from fetchflow.storage import S3Store, open_store

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ACCESS_KEY = "fetchflowtestkey"
SECRET_KEY = "fetchflowtestsecret0123456789"
BUCKET = "fetchflow-assets"
FIXED_NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def fixed_clock() -> datetime:
    """The clock every test store uses, so records compare equal."""
    return FIXED_NOW


@pytest.fixture
def clock() -> Callable[[], datetime]:
    """A clock stuck at :data:`FIXED_NOW`."""
    return fixed_clock


@pytest.fixture(autouse=True)
def aws_env(
    scrub_environ: Callable[[pytest.MonkeyPatch], None],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """boto3 sees test credentials only: no profile, no endpoint, no ~/.aws of the machine."""
    scrub_environ(monkeypatch)
    use_test_aws(monkeypatch, tmp_path)


def use_test_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The test credentials for boto3, and no ``~/.aws`` files of the machine."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RcloneS3:
    """A real ``rclone serve s3`` on 127.0.0.1, checking SigV4 signatures.

    Buckets are top-level folders of ``data_dir``; :meth:`stop` and :meth:`start` simulate
    the server going down and coming back on the same port with the same data.
    """

    data_dir: Path
    config_file: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server and wait until the port answers."""
        rclone = Path(sys.executable).with_name("rclone")
        self.process = subprocess.Popen(
            [
                str(rclone),
                "serve",
                "s3",
                "--addr",
                f"127.0.0.1:{self.port}",
                "--auth-key",
                f"{ACCESS_KEY},{SECRET_KEY}",
                str(self.data_dir),
            ],
            env={**os.environ, "RCLONE_CONFIG": str(self.config_file)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rclone serve s3 exited with {self.process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            except OSError:
                time.sleep(0.02)
            else:
                return
        self.stop()
        raise RuntimeError("rclone serve s3 did not answer within 10 s")

    def stop(self) -> None:
        """SIGTERM the server and wait for it."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@contextlib.contextmanager
def running_rclone(tmp_path: Path) -> Iterator[RcloneS3]:
    """A running rclone S3 server with an empty bucket ``fetchflow-assets``, stopped after."""
    data_dir = tmp_path / "rclone-data"
    (data_dir / BUCKET).mkdir(parents=True)
    config_file = tmp_path / "rclone.conf"
    config_file.write_text("")
    server = RcloneS3(data_dir=data_dir, config_file=config_file)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def rclone_s3(tmp_path: Path) -> Iterator[RcloneS3]:
    """A running rclone S3 server with an empty bucket ``fetchflow-assets``."""
    with running_rclone(tmp_path) as server:
        yield server


@pytest.fixture
def moto_s3() -> Iterator[S3Client]:
    """moto's in-process S3 with the bucket ``fetchflow-assets``; yields a plain client."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def moto_store(moto_s3: S3Client, tmp_path: Path, clock: Callable[[], datetime]) -> S3Store:
    """An :class:`S3Store` on moto, prefix ``runs``, that makes its own boto3 client."""
    return S3Store(
        BUCKET,
        "runs",
        spool_dir=tmp_path / "spool",
        attempts=1,
        multipart_threshold_bytes=5 * 1024 * 1024,
        clock=clock,
    )


@pytest.fixture
def rclone_settings(
    rclone_s3: RcloneS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """Settings for the rclone server, reached through boto3's own ``AWS_ENDPOINT_URL``."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", rclone_s3.endpoint)
    return Settings(
        _env_file=None,
        home=tmp_path / "home",
        store=f"s3://{BUCKET}/runs",
        upload_attempts=2,
        presign_expiry_seconds=600,
    )


@pytest.fixture
def rclone_store(rclone_settings: Settings) -> S3Store:
    """The store ``open_store`` makes for the rclone server."""
    store = open_store(rclone_settings)
    assert isinstance(store, S3Store)
    return store
