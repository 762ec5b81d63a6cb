"""Reference images an image step reads: upstream asset records, http(s) URLs, project files.

A step field such as ``images`` holds, once rendered, one reference or a list of them:

- an asset record (``<< hero.output.0 >>``, or a whole ``<< hero.output >>`` list): a mapping
  with a ``storage_uri``, read back through the run's asset store (no HTTP, no expiry);
- an ``http://`` or ``https://`` URL, fetched by
  :func:`steps.imaging.net.fetching.fetch_reference` (address, size and type limits);
- a relative path to a file under the project folder (the folder holding ``templates/``);
  absolute paths and ``..`` escapes are refused.

:func:`resolve_references` turns any of these into :class:`Reference` values whose
``sha256`` a step puts in its provenance; :func:`check_images_value` is the static check
of the field's shape, for config validators, and :class:`ReferencedImages` the config base
of the steps that take an ``images`` field.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from urllib.parse import urlsplit

from pydantic import ValidationInfo, field_validator

from fetchflow.errors import StepError
from fetchflow.step import (
    OutputLength,
    RuleViolation,
    StepConfig,
    StepContext,
    deferred,
    static_project_root,
)
from fetchflow.step import project_root as project_folder

__all__ = [
    "ImagesValue",
    "Reference",
    "ReferenceValue",
    "ReferencedImages",
    "check_images_value",
    "check_project_files",
    "count_references",
    "flatten_references",
    "one_image_per_reference",
    "project_file",
    "project_root_of",
    "resolve_references",
    "settings_digest",
]

#: One reference as a field holds it: a URL or path, or an asset record.
ReferenceValue = str | dict[str, object]
#: What an ``images``-like field holds: one reference or a list of them, where an item may
#: itself be a list (a whole ``<< step.output >>`` among other references).
ImagesValue = ReferenceValue | list[ReferenceValue | list[ReferenceValue]]


@dataclass(frozen=True)
class Reference:
    """One reference image's bytes and where they came from.

    Attributes:
        data: The file's bytes.
        sha256: Hex SHA-256 of ``data`` (for provenance).
        source: Where it came from, for messages and provenance: the record's
            ``storage_uri``, the redacted URL, or ``file:<relative path>``.
        file_name: A file name for it (the record's, the URL's last segment, the file's).
    """

    data: bytes
    sha256: str
    source: str
    file_name: str


def _refused(message: str, hint: str) -> StepError:
    return StepError(message=message, hint=hint, retryable=False)


def check_images_value(value: object, field: str = "images") -> None:
    """Check the shape of a reference field as written (static check).

    Args:
        value: The field's value: a string, a record-shaped mapping, or a non-empty list
            of those (lists inside it expanded one level).
        field: The field's name, for messages.

    Raises:
        RuleViolation: An empty list or string, a mapping without a ``storage_uri``, or
            another kind of value.
    """
    items = _flattened(value)
    if not items:
        raise RuleViolation(
            f"{field} is an empty list",
            fields=(field,),
            hint=f"give at least one image: {field}: << hero.output >>",
        )
    for item in items:
        if isinstance(item, str):
            if not item.strip():
                raise RuleViolation(
                    f"{field} holds an empty string",
                    fields=(field,),
                    hint="give an asset record, an http(s) URL or a file under the project",
                )
            continue
        if isinstance(item, Mapping):
            if not isinstance(item.get("storage_uri"), str):
                raise RuleViolation(
                    f"{field} holds a mapping without storage_uri (keys: "
                    f"{', '.join(sorted(map(str, item))) or 'none'})",
                    fields=(field,),
                    hint="reference an image step's output, e.g. << hero.output.0 >>",
                )
            continue
        raise RuleViolation(
            f"{field} must be an image reference or a list of them, got "
            f"{type(item).__name__} {str(item)[:60]}",
            fields=(field,),
            hint="give an asset record (<< hero.output >>), an http(s) URL or a file path",
        )


def _flattened(value: object) -> list[object]:
    """``value`` as a list of references, lists inside the list expanded (one level)."""
    if not isinstance(value, list):
        return [value]
    items: list[object] = []
    for item in value:
        items.extend(item if isinstance(item, list) else [item])
    return items


def flatten_references(value: object) -> list[object]:
    """The references a field holds, a list inside the list expanded (one level)."""
    return _flattened(value)


def count_references(value: object) -> int:
    """How many references a field holds (a list inside the list counted item by item)."""
    return len(_flattened(value))


def settings_digest(config: StepConfig, **resolved: object) -> str:
    """SHA-256 of a step's settings (every field but ``images``, with ``resolved`` values
    such as the model ``auto`` stood for), canonical JSON: which settings made an image."""
    settings = config.model_dump(mode="json", exclude={"images"})
    settings.update(resolved)
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def one_image_per_reference(
    fields: Mapping[str, object], templated: frozenset[str]
) -> OutputLength | None:
    """``Step.output_length`` of a step that makes one image per ``images`` reference: known
    when ``images`` is written out (not a template)."""
    images = fields.get("images")
    if "images" in templated or images is None:
        return None
    return OutputLength(count_references(images), ("images",))


class ReferencedImages(StepConfig):
    """Config base of a step whose ``images`` field names reference images.

    Subclasses declare ``images: ImagesValue`` with their own description; its shape and
    the project files it names are checked here, statically.
    """

    images: ImagesValue

    @field_validator("images", mode="before")
    @classmethod
    def _images_are_references(cls, value: object, info: ValidationInfo) -> object:
        # Before the union is tried: one message naming what was found, not one per member.
        if not deferred(info, "images"):
            check_images_value(value)
            check_project_files(value, "images", static_project_root(info))
        return value


def project_root_of(ctx: StepContext) -> Path:
    """The project folder of a run: the folder above its ``templates/``, else the cwd."""
    return project_folder(ctx.templates.search_path)


def resolve_references(value: object, *, ctx: StepContext, project_root: Path) -> list[Reference]:
    """The bytes of every reference ``value`` holds, in order.

    Args:
        value: The rendered field: a record mapping, a URL or path string, or a list of
            those; a list inside the list (a whole ``<< step.output >>``) is expanded.
        ctx: The step's context: its store reads records; the image settings limit reads.
        project_root: The folder relative file paths are read under.

    Raises:
        StepError: A reference cannot be read: refused URL or path, missing file, a file
            over ``max_reference_bytes``, a record the store does not hold (StorageError).
    """
    _check_rendered(value)
    items: Sequence[object] = _flattened(value)
    return [_resolve_one(item, ctx=ctx, project_root=project_root) for item in items]


def _check_rendered(value: object) -> None:
    try:
        check_images_value(value)
    except RuleViolation as error:
        raise _refused(error.message, error.hint) from None


def _resolve_one(item: object, *, ctx: StepContext, project_root: Path) -> Reference:
    from steps.imaging.settings import image_settings

    settings = image_settings()
    if isinstance(item, Mapping):
        uri = str(item["storage_uri"])
        data = ctx.store.read(uri)
        name = item.get("file_name")
        file_name = name if isinstance(name, str) and name else uri.rsplit("/", 1)[-1]
        return Reference(data, hashlib.sha256(data).hexdigest(), uri, file_name)
    text = str(item).strip()
    scheme = urlsplit(text).scheme.lower()
    if scheme in ("http", "https"):
        from steps.imaging.net.fetching import fetch_reference

        fetched = fetch_reference(text, settings=settings, timeout=ctx.timeout_seconds or 30.0)
        file_name = urlsplit(fetched.url).path.rsplit("/", 1)[-1] or "reference"
        return Reference(fetched.data, fetched.sha256, fetched.url, file_name)
    if "://" in text or scheme == "data":
        raise _refused(
            f'reference "{text[:80]}" has scheme {scheme}: only http(s) URLs, asset records '
            "and files under the project are read",
            "use an http(s) URL, an image step's output, or a relative file path",
        )
    return _read_project_file(text, project_root=project_root, cap=settings.max_reference_bytes)


def _is_path(item: object) -> bool:
    """Whether a rendered reference names a project file (not a record, URL or template)."""
    from fetchflow.templating import is_template

    if not isinstance(item, str) or is_template(item):
        return False
    text = item.strip()
    return "://" not in text and urlsplit(text).scheme.lower() not in ("http", "https", "data")


def project_file(text: str, *, project_root: Path, field: str = "images") -> Path:
    """The file a relative reference names, which must exist under ``project_root``.

    Raises:
        RuleViolation: An absolute path, a path leaving the project folder, or no such file.
    """
    root = project_root.resolve()
    if PurePosixPath(text).is_absolute() or PureWindowsPath(text).is_absolute():
        raise RuleViolation(
            f'reference "{text}" is an absolute path; files are read only under the project '
            f"folder {root}",
            fields=(field,),
            hint="give the path relative to the project folder, e.g. assets/logo.png",
        )
    path = (root / text).resolve()
    if not path.is_relative_to(root):
        raise RuleViolation(
            f'reference "{text}" leaves the project folder {root}',
            fields=(field,),
            hint="give a path inside the project folder, without ..",
        )
    if not path.is_file():
        raise RuleViolation(
            f'reference "{text}" is not a file under the project folder {root}',
            fields=(field,),
            hint=f"check the path: it is relative to {_ROOT_RULE}",
        )
    return path


#: How the project folder is found (:func:`fetchflow.step.project_root`).
_ROOT_RULE = "the folder holding templates/ (else the current folder)"


def check_project_files(value: object, field: str, project_root: Path | None) -> None:
    """Every file path ``value`` holds exists under ``project_root`` (static check).

    Nothing is checked when the project folder is not known (``None``). Records, URLs and
    templates are left to the run.

    Raises:
        RuleViolation: As :func:`project_file`.
    """
    if project_root is None:
        return
    for item in _flattened(value):
        if _is_path(item):
            project_file(str(item).strip(), project_root=project_root, field=field)


def _read_project_file(text: str, *, project_root: Path, cap: int) -> Reference:
    try:
        path = project_file(text, project_root=project_root)
    except RuleViolation as error:
        raise _refused(error.message, error.hint) from None
    root = project_root.resolve()
    size = path.stat().st_size
    if size > cap:
        raise _refused(
            f'reference "{text}" is {size:,} bytes, over the {cap:,}-byte limit',
            "use a smaller image, or raise FETCHFLOW_MAX_REFERENCE_BYTES",
        )
    data = path.read_bytes()
    relative = path.relative_to(root).as_posix()
    return Reference(data, hashlib.sha256(data).hexdigest(), f"file:{relative}", path.name)
