"""One SDK client per provider, key and base URL per process, shared by every step.

Making an SDK client costs 30-170 ms (each builds its own HTTP pool and SSL context), and
importing the SDK half a second more: paid once per step, it sat on every image step's
critical path. :func:`shared_client` keeps one client per ``(provider, key, base URL)`` for
the life of the process: the steps of a run (and of later runs in a worker) reuse it and
its open connections. The SDK clients are safe to call from several threads at once (one
``httpx`` pool each). A changed key or base URL gets a client of its own; the table is
keyed by a salted digest of the key, never the key itself, and nothing here logs. Every
client is closed when the process exits (:func:`close_clients`, registered with
:mod:`atexit`).

:func:`import_sdk` imports a provider's SDK ahead of time: the image steps' ``preflight``
calls it, so the import is done before the run starts rather than inside its first step.
:func:`clients_made` counts the clients made, for tests and benchmarks.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import hmac
import importlib
import os
import threading
from collections import Counter
from collections.abc import Callable
from typing import Protocol, TypeVar

__all__ = ["SDK_MODULES", "clients_made", "close_clients", "import_sdk", "shared_client"]


class _Closable(Protocol):
    def close(self) -> None: ...


ClientT = TypeVar("ClientT", bound=_Closable)

#: The SDK modules each provider's client needs (imported by :func:`import_sdk`).
SDK_MODULES: dict[str, tuple[str, ...]] = {
    "openai": ("openai",),
    "google": ("google.genai", "google.genai.types", "google.genai.errors"),
    "fal": ("fal_client",),
}

#: Keys are never held as such: a digest salted per process stands for each.
_SALT = os.urandom(16)
_lock = threading.Lock()
_clients: dict[tuple[str, str, str], _Closable] = {}
_made: Counter[str] = Counter()
_exit_hook: list[bool] = []


def _digest(api_key: str) -> str:
    return hmac.new(_SALT, api_key.encode(), hashlib.sha256).hexdigest()


def shared_client(
    provider: str, api_key: str, base_url: str, make: Callable[[], ClientT]
) -> ClientT:
    """The process's client for ``provider`` with ``api_key`` at ``base_url``.

    Made by ``make()`` the first time (under a lock: two steps starting together make one),
    the same object after.

    Args:
        provider: The provider's name (``openai``, ``google``).
        api_key: The key the client sends.
        base_url: The endpoint it calls, as the provider resolves it (the SDK's default
            included), so that a changed base URL gets a client of its own.
        make: Makes the client.
    """
    key = (provider, _digest(api_key), base_url)
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = make()
            _clients[key] = client
            _made[provider] += 1
            if not _exit_hook:
                _exit_hook.append(True)
                atexit.register(close_clients)
        return client  # type: ignore[return-value]


def clients_made(provider: str | None = None) -> int:
    """How many SDK clients this process has made (for ``provider``, or in all)."""
    with _lock:
        return _made[provider] if provider is not None else sum(_made.values())


def close_clients() -> None:
    """Close every shared client (at exit); a later step makes a new one."""
    with _lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        with contextlib.suppress(Exception):  # closing at exit: nothing left to tell
            client.close()


def import_sdk(provider: str) -> None:
    """Import ``provider``'s SDK now (nothing for a provider without one, like ``preview``).

    An SDK that cannot be imported is left for the step to report when it runs.
    """
    for module in SDK_MODULES.get(provider, ()):
        try:
            importlib.import_module(module)
        except ImportError:
            return
