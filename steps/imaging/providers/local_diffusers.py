"""The local provider: open-weight diffusers pipelines on this machine (``fetchflow[local]``).

``model: local/<name>`` names a diffusers model folder (one with ``model_index.json``, as
``save_pretrained`` writes it): ``$FETCHFLOW_LOCAL_MODEL_DIR/<name>`` first, else the Hugging
Face cache entry ``<name>`` (``local/stabilityai/sd-turbo`` is the cached
``stabilityai/sd-turbo``). Nothing is downloaded at run time: pipelines load with
``local_files_only=True`` and ``HF_HUB_OFFLINE=1``, and :func:`preflight_local` says before
the run when the folder or the libraries are missing.

Text-to-image (``generate``), image-to-image (``edit`` without a mask, ``strength``) and
inpainting (``edit`` with a mask) run the diffusers ``AutoPipelineFor*`` classes, with
``steps``, ``guidance``, ``negative_prompt`` and ``seed`` (a ``torch.Generator`` seeded on
the pipeline's device: the same seed gives the same bytes on one machine). The device is
``FETCHFLOW_LOCAL_DEVICE`` (``auto``: cuda, then mps, then cpu).

One pipeline is loaded per folder and device per process (:func:`shared_pipeline`) and kept
for every later step; the image-to-image and inpainting pipelines share its weights
(``from_pipe``). Calls to one pipeline run one at a time (a pipeline's scheduler is state).
Images are free: no key, no price.
"""

from __future__ import annotations

import importlib
import io
import os
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from fetchflow.errors import ProviderError, StepError
from steps.imaging.models.catalog import LOCAL_PREFIX, local_spec
from steps.imaging.providers.base import (
    EditRequest,
    ImageRequest,
    ProviderImage,
    ProviderResult,
)

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "INSTALL_HINT",
    "LOCAL_PREFIX",
    "DeviceName",
    "LocalDiffusersProvider",
    "LocalModelMissing",
    "PipelineKind",
    "find_model_folder",
    "pipelines_loaded",
    "preflight_local",
    "require_libraries",
    "shared_pipeline",
]

#: What to install when torch or diffusers is missing.
INSTALL_HINT = "pip install 'fetchflow[local]'"

DeviceName = Literal["auto", "cuda", "mps", "cpu"]
PipelineKind = Literal["text2img", "img2img", "inpaint"]

_AUTO_CLASSES: Mapping[str, str] = {
    "text2img": "AutoPipelineForText2Image",
    "img2img": "AutoPipelineForImage2Image",
    "inpaint": "AutoPipelineForInpainting",
}


class LocalModelMissing(StepError):
    """The folder ``model: local/<name>`` names is not on this machine."""


def _name_parts(model: str) -> list[str] | None:
    if local_spec(model) is None:
        return None
    return model.removeprefix(LOCAL_PREFIX).split("/")


def _hf_cache(environ: Mapping[str, str]) -> Path:
    """The Hugging Face hub cache as huggingface_hub finds it (without importing it)."""
    if environ.get("HF_HUB_CACHE"):
        return Path(environ["HF_HUB_CACHE"]).expanduser()
    home = environ.get("HF_HOME") or str(
        Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface"
    )
    return Path(home).expanduser() / "hub"


def _cached_snapshot(cache: Path, repo_id: str) -> Path | None:
    """The cached snapshot of ``repo_id`` with a ``model_index.json`` (``refs/main`` first)."""
    entry = cache / ("models--" + repo_id.replace("/", "--"))
    snapshots = entry / "snapshots"
    ref = entry / "refs" / "main"
    if ref.is_file():
        pinned = snapshots / ref.read_text(encoding="utf-8").strip()
        if (pinned / "model_index.json").is_file():
            return pinned
    if not snapshots.is_dir():
        return None
    found = [p for p in snapshots.iterdir() if (p / "model_index.json").is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def find_model_folder(
    model: str, model_dir: Path | None, environ: Mapping[str, str] | None = None
) -> Path:
    """The diffusers folder ``model`` (``local/<name>``) names on this machine.

    ``<model_dir>/<name>`` when it holds a ``model_index.json``, else the Hugging Face
    cache's snapshot of ``<name>``.

    Raises:
        LocalModelMissing: Neither holds the model; the message says where it looked.
    """
    environ = os.environ if environ is None else environ
    parts = _name_parts(model)
    if parts is None:
        raise LocalModelMissing(
            message=f"model {model}: not a model folder name",
            hint="write model: local/<folder> (letters, digits, . _ -; / between parts)",
            retryable=False,
        )
    name = "/".join(parts)
    looked: list[str] = []
    if model_dir is not None:
        folder = model_dir.expanduser() / name
        if (folder / "model_index.json").is_file():
            return folder
        looked.append(f"no {folder}/model_index.json (under FETCHFLOW_LOCAL_MODEL_DIR)")
    else:
        looked.append("FETCHFLOW_LOCAL_MODEL_DIR is not set")
    cache = _hf_cache(environ)
    if len(parts) == 2:
        snapshot = _cached_snapshot(cache, name)
        if snapshot is not None:
            return snapshot
        looked.append(f"the Hugging Face cache {cache} has no snapshot of {name}")
    place = f"{model_dir.expanduser() / name}" if model_dir is not None else f"<folder>/{name}"
    fetch = f"or `hf download {name}` once on this machine, " if len(parts) == 2 else ""
    raise LocalModelMissing(
        message=f"model {model}: no diffusers model folder found: " + "; ".join(looked),
        hint=f"save the pipeline (save_pretrained) to {place} and set "
        f"FETCHFLOW_LOCAL_MODEL_DIR, {fetch}"
        "then run again (nothing is downloaded during a run)",
        retryable=False,
    )


def require_libraries(model: str) -> None:
    """torch and diffusers can be imported (``fetchflow[local]`` is installed).

    Raises:
        StepError: One of them is missing (the hint names the extra to install).
    """
    for module in ("torch", "diffusers", "transformers"):
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise StepError(
                message=f"model {model} runs on this machine with torch, diffusers and "
                f"transformers, and {module} is not installed ({error})",
                hint=f"{INSTALL_HINT} on the machine that runs this step (a GPU worker), "
                "or use another model",
                retryable=False,
            ) from error


def preflight_local(model: str, model_dir: Path | None, device: DeviceName = "auto") -> None:
    """Before a run: the model folder is here, the libraries import and ``device`` exists.

    Raises:
        LocalModelMissing: The folder is not found.
        StepError: torch or diffusers is not installed, or this machine's torch has no
            ``device`` (``FETCHFLOW_LOCAL_DEVICE=cuda`` on a machine without CUDA).
    """
    find_model_folder(model, model_dir)
    require_libraries(model)
    resolve_device(device)


def _torch() -> Any:
    # Set before diffusers and huggingface_hub are imported: they read it once.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    return importlib.import_module("torch")


def _diffusers() -> Any:
    _torch()
    diffusers = importlib.import_module("diffusers")
    diffusers.utils.logging.set_verbosity_error()  # no load chatter in the run's log
    diffusers.utils.logging.disable_progress_bar()
    return diffusers


def resolve_device(wanted: DeviceName) -> str:
    """The torch device to run on: ``wanted``, or for ``auto`` cuda, then mps, then cpu.

    Raises:
        StepError: ``wanted`` is cuda or mps and this machine's torch has no such device.
    """
    torch = _torch()
    has = {
        "cuda": bool(torch.cuda.is_available()),
        "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
        "cpu": True,
    }
    if wanted == "auto":
        return next(device for device in ("cuda", "mps", "cpu") if has[device])
    if not has[wanted]:
        raise StepError(
            message=f"FETCHFLOW_LOCAL_DEVICE={wanted}, but this machine's torch "
            f"{torch.__version__} has no {wanted} device",
            hint="set FETCHFLOW_LOCAL_DEVICE=auto (or cpu), or install the torch build for "
            "this machine's GPU",
            retryable=False,
        )
    return wanted


@dataclass
class _Loaded:
    """One folder's pipelines on one device, sharing weights, and the lock for calls."""

    pipelines: dict[str, Any]
    lock: threading.Lock


_lock = threading.Lock()
_loaded: dict[tuple[str, str], _Loaded] = {}
_loads: Counter[str] = Counter()


def shared_pipeline(folder: Path, device: str, kind: PipelineKind) -> tuple[Any, threading.Lock]:
    """The process's ``kind`` pipeline for ``folder`` on ``device``, and its call lock.

    The first call loads the folder (under a lock: two steps starting together load it
    once); other kinds are made from it with ``from_pipe`` (same weights, nothing loaded).
    """
    key = (str(folder.resolve()), device)
    with _lock:
        loaded = _loaded.get(key)
        if loaded is not None and kind in loaded.pipelines:
            return loaded.pipelines[kind], loaded.lock
        diffusers = _diffusers()
        auto = getattr(diffusers, _AUTO_CLASSES[kind])
        if loaded is None:
            torch = _torch()
            dtype = torch.float16 if device == "cuda" else torch.float32
            pipe = auto.from_pretrained(folder, dtype=dtype, local_files_only=True)
            pipe = pipe.to(device)
            loaded = _Loaded({}, threading.Lock())
            _loaded[key] = loaded
            _loads[key[0]] += 1
        else:
            pipe = auto.from_pipe(next(iter(loaded.pipelines.values())))
        pipe.set_progress_bar_config(disable=True)
        loaded.pipelines[kind] = pipe
        return pipe, loaded.lock


def pipelines_loaded(folder: Path | None = None) -> int:
    """How many times this process loaded a model folder (``folder``'s, or all)."""
    with _lock:
        return _loads[str(folder.resolve())] if folder is not None else sum(_loads.values())


def _tuning(request: ImageRequest) -> dict[str, Any]:
    """The pipeline arguments of the request's open-weight options (unset ones left out)."""
    tuning = getattr(request, "tuning", None)
    found: dict[str, Any] = {}
    for field, argument in (
        ("steps", "num_inference_steps"),
        ("guidance", "guidance_scale"),
        ("negative_prompt", "negative_prompt"),
        ("strength", "strength"),
    ):
        value = getattr(tuning, field, None)
        if value is not None:
            found[argument] = value
    return found


def _png(image: Image.Image) -> ProviderImage:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return ProviderImage(data=buffer.getvalue(), mime_type="image/png")


def _open_rgb(data: bytes, size: tuple[int, int] | None) -> Image.Image:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as opened:
        image = opened.convert("RGB")
    return image.resize(size, Image.Resampling.LANCZOS) if size and image.size != size else image


def _repaint_mask(data: bytes, size: tuple[int, int]) -> Image.Image:
    """Our mask (alpha 0 = edit here) as diffusers wants it (white = repaint)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as opened:
        alpha = opened.convert("RGBA").getchannel("A")
    mask = alpha.point(lambda value: 255 if value == 0 else 0)
    return mask.resize(size, Image.Resampling.NEAREST) if mask.size != size else mask


class LocalDiffusersProvider:
    """Runs ``local/<name>`` models with diffusers on this machine.

    Args:
        model_dir: Where model folders are (``FETCHFLOW_LOCAL_MODEL_DIR``), or None.
        device: ``auto``, ``cuda``, ``mps`` or ``cpu`` (``FETCHFLOW_LOCAL_DEVICE``).
    """

    name = "local"
    #: :meth:`edit` inpaints a mask's transparent area.
    supports_mask = True

    def __init__(self, model_dir: Path | None = None, device: DeviceName = "auto") -> None:
        self.model_dir = model_dir
        self.device = device

    @classmethod
    def from_settings(cls) -> LocalDiffusersProvider:
        """The provider with the image settings' folder and device."""
        from steps.imaging.settings import image_settings

        settings = image_settings()
        return cls(settings.local_model_dir, settings.local_device)

    def generate(self, request: ImageRequest) -> ProviderResult:
        """Make ``request.count`` images from the prompt (text-to-image)."""
        arguments = _tuning(request)
        arguments.pop("strength", None)  # text-to-image has no reference to keep
        if request.width is not None and request.height is not None:
            arguments.update(width=request.width, height=request.height)
        return self._run(request, "text2img", arguments)

    def edit(self, request: EditRequest) -> ProviderResult:
        """Image-to-image from the first reference (``strength``), or inpaint its mask.

        Raises:
            ValueError: ``request.images`` is empty.
        """
        if not request.images:
            raise ValueError("an edit needs at least one reference image")
        size = (
            (request.width, request.height)
            if request.width is not None and request.height is not None
            else None
        )
        image = _open_rgb(request.images[0].data, size)
        arguments = _tuning(request) | {"image": image}
        kind: PipelineKind = "img2img"
        if request.mask is not None:
            kind = "inpaint"
            arguments["mask_image"] = _repaint_mask(request.mask.data, image.size)
            arguments.update(width=image.width, height=image.height)
        return self._run(request, kind, arguments)

    def _run(
        self, request: ImageRequest, kind: PipelineKind, arguments: dict[str, Any]
    ) -> ProviderResult:
        folder = find_model_folder(request.model, self.model_dir)
        require_libraries(request.model)
        device = resolve_device(self.device)
        pipe, lock = shared_pipeline(folder, device, kind)
        torch = _torch()
        generator = (
            torch.Generator(device).manual_seed(request.seed) if request.seed is not None else None
        )
        try:
            with lock:
                output = pipe(
                    prompt=request.prompt,
                    num_images_per_prompt=request.count,
                    generator=generator,
                    output_type="pil",
                    **arguments,
                )
        except (RuntimeError, ValueError) as error:  # CUDA out of memory, a bad size
            raise ProviderError(
                message=f"model {request.model} failed on {device}: {str(error)[:300]}",
                hint="use a smaller size or count, fewer steps, or another device "
                "(FETCHFLOW_LOCAL_DEVICE)",
                provider=self.name,
                endpoint=str(folder),
                retryable=False,
            ) from error
        return ProviderResult(
            images=[_png(image) for image in output.images], usage=None, model=request.model
        )

    def close(self) -> None:
        """Nothing to release: the pipeline stays loaded for the next step in this process."""
