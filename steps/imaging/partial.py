"""A step that made some of its images before a call failed: what was kept, and the error.

An image step whose ``count`` is above the model's per-request limit makes several provider
calls, and keeps (uploads) every image as soon as it is verified. When a later call fails,
the images already made were paid for and are in the store; :class:`PartialImages` carries
their records (``kept``, the same JSON the step outputs) so the engine can output them under
``on_failure: continue`` and put them in the run summary under ``terminate``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fetchflow.errors import StepError

__all__ = ["KeptImage", "PartialImages"]


@dataclass(frozen=True)
class KeptImage:
    """One image stored by the step, as production hands it back.

    Attributes:
        where: Its storage URI, for messages.
        record: Its output record as JSON data (an ``ImageAsset`` dumped in JSON mode).
    """

    where: str
    record: dict[str, object]


@dataclass
class PartialImages(StepError):
    """A provider call failed after earlier calls of the same step made images.

    The message names the failure, how many images were made and where they are; the
    error it wraps is chained (``__cause__``) and its ``hint`` and ``retryable`` are kept.

    Attributes:
        kept: The records of the images made and stored before the failure, in order, as
            JSON data: exactly what the step would have output for them.
        asked: How many images the step asked for in all.
    """

    kept: list[dict[str, object]] = field(default_factory=list, repr=False)
    asked: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        # The engine keeps any step's partial output; for images, that is what was kept.
        self.partial_output = list(self.kept)
