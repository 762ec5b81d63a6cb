"""The upscalers ``image_upscale``'s ``model:`` may name, as one table (:data:`UPSCALERS`):
Pillow's Lanczos (free, offline; what ``auto`` runs) and providers' upscalers (billed), each
with its provider, factors, method and published price; :func:`lookup_upscaler` resolves a
name, with the nearest one when it is unknown.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from fetchflow.errors import closest
from fetchflow.step import RuleViolation
from steps.imaging.pixels.upscale import FACTORS

__all__ = ["AUTO", "DEFAULT_UPSCALER", "UPSCALERS", "Upscaler", "lookup_upscaler"]

AUTO = "auto"


@dataclass(frozen=True)
class Upscaler:
    """One upscaling model.

    Attributes:
        name: What ``model:`` names it.
        provider: Who runs it (``pillow``: here, offline and free).
        method: How, for the provenance (``lanczos``).
        factors: The factors it takes.
        usd_per_megapixel: The published price per started megapixel of the output (0:
            free; None: no published price).
    """

    name: str
    provider: str
    method: str
    factors: tuple[int, ...] = FACTORS
    usd_per_megapixel: float | None = 0.0

    @property
    def billable(self) -> bool:
        """Whether it runs on a provider (a key, a bill)."""
        return self.provider != "pillow"


#: Every upscaler ``model:`` may name (``auto`` aside). fal's model pages (read late
#: November 2026): clarity-upscaler $0.03 per megapixel, ``upscale_factor`` 1-4; aura-sr
#: (AuraSR, a GigaGAN upscaler) 4x only, billed by GPU time (no per-image price).
UPSCALERS: Mapping[str, Upscaler] = {
    "pillow": Upscaler("pillow", provider="pillow", method="lanczos"),
    "fal-ai/clarity-upscaler": Upscaler(
        "fal-ai/clarity-upscaler", provider="fal", method="clarity", usd_per_megapixel=0.03
    ),
    "fal-ai/aura-sr": Upscaler(
        "fal-ai/aura-sr", provider="fal", method="aura-sr", factors=(4,), usd_per_megapixel=None
    ),
}
#: What ``model: auto`` runs.
DEFAULT_UPSCALER = "pillow"


def lookup_upscaler(name: str) -> Upscaler:
    """The upscaler ``model: name`` runs (``auto``: :data:`DEFAULT_UPSCALER`).

    Raises:
        RuleViolation: Not a known upscaler (the closest name and the list in the message).
    """
    if name == AUTO:
        return UPSCALERS[DEFAULT_UPSCALER]
    upscaler = UPSCALERS.get(name)
    if upscaler is not None:
        return upscaler
    known = ", ".join([AUTO, *UPSCALERS])
    suggestion = closest(name, [AUTO, *UPSCALERS])
    if suggestion:
        raise RuleViolation(
            f'unknown upscale model "{name}"; did you mean "{suggestion}"? (known: {known})',
            fields=("model",),
            hint=f"use model: {suggestion}",
        )
    raise RuleViolation(
        f'unknown upscale model "{name}" (known: {known})',
        fields=("model",),
        hint=f"use model: auto (Pillow's Lanczos, free), or one of: {', '.join(UPSCALERS)}",
    )
