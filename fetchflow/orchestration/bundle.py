"""A workflow as one self-contained bundle with its content hash, and the version pin.

A deployment made by ``fetchflow deploy`` carries its workflow: the YAML file, the template
files it reads (``template:`` includes and imports, ``file:`` fields, recursively) and the
project files it names literally (``mask: flows/assets/mask.png``), laid out as they are
under the project folder (the folder holding ``templates/``). A worker unpacks the bundle
and runs it; it needs nothing but fetchflow (and the step plugins) installed.

The bundle's content hash is the workflow's **version**: any change to the YAML, to a
template it reads or to a file it names is a new version. ``fetchflow deploy`` and
``fetchflow serve`` register it as the deployment's ``version`` and as the flow's
``version``; Prefect records the deployment's version on every flow run it creates
(``deployment_version``), and :func:`version_refusal` makes a flow run refuse to start when
the workflow that would run it is another version than the one the run was created for.

Pure: nothing here imports Prefect at module level.
"""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from fetchflow.errors import Problem, WorkflowInvalid
from fetchflow.step import project_root
from fetchflow.templating import is_template
from fetchflow.workflow.plan import Plan

if TYPE_CHECKING:
    from prefect.client.schemas.objects import State
    from prefect.context import FlowRunContext

__all__ = [
    "MAX_BUNDLE_CHARS",
    "WorkflowBundle",
    "bundle_workflow",
    "version_refusal",
    "workflow_version",
]

#: Largest encoded bundle: it travels in the deployment (the API's database) and in the
#: pull step's event, which the server drops past ~1.5 MB.
MAX_BUNDLE_CHARS = 1_000_000
#: Where the template files go in a bundle (under the project folder).
TEMPLATES = "templates"
_FORMAT = 1


@dataclass(frozen=True)
class WorkflowBundle:
    """A workflow and every file it reads, by path under the project folder.

    Attributes:
        name: The workflow's name.
        workflow: The workflow file's path in the bundle (POSIX, relative).
        files: Every file's bytes by relative POSIX path (the workflow file included).
    """

    name: str
    workflow: str
    files: dict[str, bytes]

    @property
    def version(self) -> str:
        """The content hash (12 hex digits) of every path and every byte."""
        digest = hashlib.sha256(f"fetchflow-bundle-{_FORMAT}\0{self.workflow}\0".encode())
        for path in sorted(self.files):
            digest.update(path.encode() + b"\0" + hashlib.sha256(self.files[path]).digest())
        return digest.hexdigest()[:12]

    def encode(self) -> str:
        """The bundle as one ASCII string (base64 of compressed JSON).

        Base64 holds no ``{{``: Prefect's templating of pull-step arguments cannot touch it.
        """
        document = {
            "format": _FORMAT,
            "name": self.name,
            "workflow": self.workflow,
            "files": {path: base64.b64encode(data).decode() for path, data in self.files.items()},
        }
        packed = zlib.compress(json.dumps(document, sort_keys=True).encode(), 9)
        return base64.b64encode(packed).decode("ascii")

    @classmethod
    def decode(cls, text: str) -> WorkflowBundle:
        """The bundle :meth:`encode` wrote.

        Raises:
            ValueError: The text is not such a bundle.
        """
        try:
            document = json.loads(zlib.decompress(base64.b64decode(text, validate=True)))
            files = {path: base64.b64decode(data) for path, data in document["files"].items()}
            bundle = cls(str(document["name"]), str(document["workflow"]), files)
        except (ValueError, KeyError, TypeError, AttributeError, zlib.error) as error:
            raise ValueError(f"not a fetchflow workflow bundle: {error}") from None
        for path in files:
            pure = PurePosixPath(path)
            if pure.is_absolute() or ".." in pure.parts or not pure.parts:
                raise ValueError(f"not a fetchflow workflow bundle: unsafe path {path!r}")
        if bundle.workflow not in files:
            raise ValueError("not a fetchflow workflow bundle: the workflow file is missing")
        return bundle


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)


def _hidden(name: str) -> bool:
    """Whether a relative path names a hidden file or folder (``.env``, ``.git/...``)."""
    return any(part.startswith(".") for part in PurePosixPath(name).parts)


def _outside(path: Path, folder: Path) -> bool:
    """Whether ``path`` (through its links) lies outside ``folder``."""
    return not path.resolve().is_relative_to(folder.resolve())


def _refusal(name: str, filename: str, search_path: tuple[Path, ...]) -> str | None:
    """Why the template file ``name`` (found at ``filename``) must not travel, or None.

    A deployment's bundle is readable by everyone who can read the Prefect server: it never
    carries a hidden file (``.env``) or a file behind a link leading out of its folder.
    """
    if _hidden(name):
        return f'template "{name}" is a hidden file'
    path = Path(filename)
    folders = [folder for folder in search_path if path.is_relative_to(folder)]
    if folders and _outside(path, folders[0]):
        return f'template "{name}" is a link to {path.resolve()}, outside {folders[0]}'
    return None


def _template_files(plan: Plan, refused: list[str]) -> dict[str, bytes] | None:
    """The template files the plan reads, by name; None when a name is only known at run
    time (an include of a variable, a ``file:`` that is a template). A file that must not
    travel (:func:`_refusal`) is left out and said in ``refused``."""
    import jinja2
    import jinja2.meta

    templates = plan.templates
    pending: list[str] = []
    names: list[str] = []
    for step in plan.steps.values():
        for text in _strings(step.raw_config):
            if is_template(text):
                pending.append(text)
        for field in step.step_cls.template_file_fields:
            value = step.raw_config.get(field)
            if isinstance(value, str):
                if is_template(value):
                    return None
                names.append(value)
    found: dict[str, bytes] = {}
    skipped: set[str] = set()
    while pending or names:
        if names:
            name = names.pop()
            if name in found or name in skipped:
                continue
            try:
                source, filename = templates.file_source(name)
            except jinja2.TemplateNotFound:
                continue  # the check reported it; a run would too
            why = _refusal(name, filename, templates.search_path)
            if why is not None:
                refused.append(why)
                skipped.add(name)  # not carried; its includes are not followed
                continue
            found[name] = Path(filename).read_bytes()
            pending.append(source)
            continue
        try:
            ast = templates.parse(pending.pop())
        except jinja2.TemplateSyntaxError:
            continue
        for included in jinja2.meta.find_referenced_templates(ast):
            if included is None:
                return None
            names.append(included)
    return found


def _every_template(plan: Plan) -> dict[str, bytes]:
    """Every file of every folder on the template search path (the first one wins), but
    hidden files and links leading out of the folder (secrets, files of other projects)."""
    found: dict[str, bytes] = {}
    for folder in plan.templates.search_path:
        for path in sorted(folder.rglob("*")):
            name = path.relative_to(folder).as_posix()
            if _hidden(name) or _outside(path, folder):
                continue
            if path.is_file() and name not in found:
                found[name] = path.read_bytes()
    return found


def _project_files(plan: Plan, root: Path) -> dict[str, bytes]:
    """Files under the project folder that the steps name literally (``mask: a/b.png``)."""
    found: dict[str, bytes] = {}
    for step in plan.steps.values():
        for text in _strings(step.raw_config):
            text = text.strip()
            if not text or is_template(text) or "://" in text or text.startswith("data:"):
                continue
            pure = PurePosixPath(text)
            if pure.is_absolute() or ".." in pure.parts or len(text) > 1000:
                continue
            try:
                path = (root / text).resolve()
                if (
                    path.is_relative_to(root)
                    and path.is_file()
                    and not _hidden(path.relative_to(root).as_posix())
                ):
                    found[path.relative_to(root).as_posix()] = path.read_bytes()
            except OSError:
                continue
    return found


def _collect(plan: Plan, refused: list[str] | None = None) -> WorkflowBundle:
    root = project_root(plan.templates.search_path)
    source = plan.file.resolve()
    workflow = source.relative_to(root).as_posix() if source.is_relative_to(root) else source.name
    said: list[str] = []
    templates = _template_files(plan, said)
    files = _project_files(plan, root)
    for name, data in (templates if templates is not None else _every_template(plan)).items():
        files[f"{TEMPLATES}/{name}"] = data
    files[workflow] = source.read_bytes()
    if refused is not None:
        refused.extend(said)
    return WorkflowBundle(plan.name, workflow, files)


def bundle_workflow(plan: Plan) -> WorkflowBundle:
    """The checked workflow with every file it reads, laid out under its project folder.

    Raises:
        WorkflowInvalid: The bundle is too large to travel in a deployment, or a template
            it reads is a hidden file or a link leading out of its folder (never carried).
    """
    refused: list[str] = []
    bundle = _collect(plan, refused)
    if refused:
        raise WorkflowInvalid(
            [
                Problem(
                    message=f"{why}: a deployment carries only the project's own files, and "
                    "everyone who can read the Prefect server can read them",
                    hint="copy the file into templates/ under a name that does not start "
                    "with '.' (never a secret: give secrets through the worker's environment)",
                    file=str(plan.file),
                )
                for why in refused
            ]
        )
    files = bundle.files
    size = len(bundle.encode())
    if size > MAX_BUNDLE_CHARS:
        biggest = sorted(files, key=lambda path: len(files[path]), reverse=True)[:3]
        raise WorkflowInvalid(
            [
                Problem(
                    message=f"the workflow and the files it reads make {size} characters once "
                    f"packed, more than a deployment carries ({MAX_BUNDLE_CHARS}); the "
                    f"largest: {', '.join(biggest)}",
                    hint="give large files as URLs (or outputs of earlier steps) instead of "
                    "project files",
                    file=str(plan.file),
                )
            ]
        )
    return bundle


def workflow_version(plan: Plan) -> str:
    """The content hash of the workflow and every file it reads (:class:`WorkflowBundle`)."""
    return _collect(plan).version


def version_refusal(context: FlowRunContext) -> State | None:
    """A ``Failed`` state when the flow run was created for another version of the workflow
    than the one about to run it; None when they agree (or the run has no deployment).

    Prefect stamps each flow run with its deployment's version when the run is created; the
    flow carries the version of the workflow it was built from. They differ when the
    deployment was updated with a changed file after the run was created, or when two
    ``fetchflow serve`` processes serve different files under one name: the run is then
    refused rather than run with a workflow nobody asked for.
    """
    flow_run = context.flow_run
    if flow_run is None or flow_run.deployment_id is None:
        return None
    wanted = flow_run.deployment_version
    running = getattr(context.flow, "version", None)
    if not wanted or not running or wanted == running:
        return None
    from prefect.states import Failed

    name = getattr(context.flow, "name", "?")
    return Failed(
        message=f"deployment {name}/{name}: this run was created for workflow version "
        f"{wanted}, but the workflow that picked it up is version {running} (the file was "
        "deployed again with changes, or another `fetchflow serve` serves a different file "
        "under this name); nothing ran\n"
        f"  hint: start the run again to run version {running}; to run {wanted}, deploy or "
        "serve that file again (one file per deployment name)"
    )
