"""Asset storage: every file a step produces goes through one :class:`AssetStore`.

``open_store(settings)`` picks it from ``FETCHFLOW_STORE``: ``s3://bucket/prefix`` (boto3,
configured by boto3's own ``AWS_*`` variables) or a folder (the embedded default,
``<home>/assets``). Each stored file comes back as an :class:`AssetRecord`. Uploads that fail
for good keep their bytes in the spool folder; :func:`push_spooled` sends them later.

boto3 is imported only when an S3 store first talks to S3.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fetchflow.storage.base import AssetStore, PutRequest
    from fetchflow.storage.factory import open_store
    from fetchflow.storage.local import LocalStore
    from fetchflow.storage.records import AssetRecord
    from fetchflow.storage.s3 import S3Store
    from fetchflow.storage.spool import push_spooled

__all__ = [
    "AssetRecord",
    "AssetStore",
    "LocalStore",
    "PutRequest",
    "S3Store",
    "open_store",
    "push_spooled",
]

# Imported on first use: a step module that only needs AssetRecord (to declare its output)
# must not pull in the settings and the stores when `fetchflow validate` loads it.
_WHERE = {
    "AssetRecord": "fetchflow.storage.records",
    "AssetStore": "fetchflow.storage.base",
    "PutRequest": "fetchflow.storage.base",
    "LocalStore": "fetchflow.storage.local",
    "S3Store": "fetchflow.storage.s3",
    "open_store": "fetchflow.storage.factory",
    "push_spooled": "fetchflow.storage.spool",
}


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'fetchflow.storage' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
