"""What :func:`~steps.imaging.production.produce` does with a call the safety system blocked.

:class:`BlockedCalls` applies the step's ``on_moderation``
(:mod:`steps.imaging.moderation`) to one blocked call:

=====================  ==================================================================
policy                 what happens
=====================  ==================================================================
``fail`` (default)     the step fails; the message names the image(s) and the stage
``skip``               no image for this call; a warning names it (terminal, ``--json``
                       notes, gallery); the step goes on and outputs fewer images
``{retry: N}``         up to N more calls: a new seed where the model takes one, the
                       rephrase hint appended after an input-stage block or on a model
                       without seeds; all blocked: fails as ``fail``
``{fallback_model}``   the call's images asked of the fallback model (its per-request
                       limit respected); blocked there too: fails as ``fail``
=====================  ==================================================================

Every blocked attempt is kept as a :class:`~steps.imaging.moderation.Block` (in the
record of the image finally made, and in :attr:`BlockedCalls.blocks` for the step's usage
line); an output-stage block may have been billed (the image was made, then withheld).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from steps.imaging.moderation import (
    REPHRASE_HINT,
    Block,
    FallbackOnModeration,
    ModerationNote,
    OnModeration,
    RetryOnModeration,
    describe_block,
    rephrased,
    retry_seed,
)
from steps.imaging.providers.errors import ModerationBlocked

if TYPE_CHECKING:
    from steps.imaging.production import ImageJob
    from steps.imaging.providers.base import ImageProvider, ImageRequest, ProviderResult
    from steps.imaging.providers.retrying import StepLogger

__all__ = ["BlockedCalls", "Fallback", "Unblocked"]

#: Makes one call: ``(provider, request, is_fallback) -> result``, through the retry loop.
Caller = Callable[["ImageProvider", "ImageRequest", bool], "ProviderResult"]


@dataclass
class Fallback:
    """The fallback model's job (sizes resolved for it) and its provider, opened on first use.

    Attributes:
        job: The step's job planned for the fallback model.
        open: Opens the fallback model's provider (its key read then).
    """

    job: ImageJob
    open: Callable[[], ImageProvider]
    _provider: ImageProvider | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def provider(self) -> ImageProvider:
        """The fallback provider, opened once."""
        with self._lock:
            if self._provider is None:
                self._provider = self.open()
            return self._provider

    def close(self) -> None:
        """Close the provider if it was opened."""
        if self._provider is not None:
            self._provider.close()


@dataclass(frozen=True)
class Unblocked:
    """A blocked call made good: what answered, the request that got it, how.

    Attributes:
        result: The provider's answer.
        request: The request that got it (new seed, rephrased prompt, other model).
        job: The job its images are verified against (the fallback's for a fallback).
        note: The moderation outcome of each of its images.
    """

    result: ProviderResult
    request: ImageRequest
    job: ImageJob
    note: ModerationNote


class BlockedCalls:
    """The ``on_moderation`` policy of one step, applied to each blocked call."""

    def __init__(
        self,
        policy: OnModeration,
        job: ImageJob,
        *,
        fallback: Fallback | None,
        logger: StepLogger,
    ) -> None:
        self.policy = policy
        self.job = job
        self.fallback = fallback
        self._logger = logger
        self._lock = threading.Lock()
        #: Every blocked attempt of the step, skipped images' included (for usage).
        self.blocks: list[Block] = []

    def handle(
        self,
        block: ModerationBlocked,
        request: ImageRequest,
        *,
        first: int,
        describe: str,
        call: Caller,
        provider: ImageProvider,
    ) -> Unblocked | None:
        """Apply the policy to ``request``, which ``block`` refused.

        Returns:
            The call made good (retried, fallback), or None: skipped.

        Raises:
            ModerationBlocked: ``fail``, or the policy ran out; the message names the
                image(s), the stage, and every try.
        """
        blocks = [self._note(request, block)]
        policy = self.policy
        if policy == "skip":
            billed = "; it was made, then withheld, and may have been billed" * blocks[0].billed
            self._logger.warning(
                "%s: %s by %s; skipped (on_moderation: skip)%s",
                describe,
                describe_block(block.stage, block.categories),
                request.model,
                billed,
            )
            return None
        if isinstance(policy, RetryOnModeration):
            return self._retry(policy.retry, blocks, request, first, describe, call, provider)
        if isinstance(policy, FallbackOnModeration) and self.fallback is not None:
            return self._fall_back(blocks, request, describe, call)
        raise self._failed(block, describe, tries=1)

    def _note(self, request: ImageRequest, block: ModerationBlocked) -> Block:
        note = Block(
            model=request.model,
            stage=block.stage,
            categories=list(block.categories),
            seed=request.seed,
            billed=block.stage == "output",
        )
        with self._lock:
            self.blocks.append(note)
        return note

    def _retry(
        self,
        tries: int,
        blocks: list[Block],
        request: ImageRequest,
        first: int,
        describe: str,
        call: Caller,
        provider: ImageProvider,
    ) -> Unblocked:
        seeded = self.job.spec.seed
        rephrase: str | None = None
        for number in range(1, tries + 1):
            if not seeded or blocks[-1].stage == "input":
                rephrase = REPHRASE_HINT  # a new seed cannot change a verdict on the prompt
            again = replace(
                request,
                seed=retry_seed(request.seed, number, first) if seeded else request.seed,
                prompt=rephrased(request.prompt) if rephrase else request.prompt,
            )
            self._logger.warning(
                "%s: %s by %s; retry %d of %d (on_moderation: retry)%s",
                describe,
                describe_block(blocks[-1].stage, blocks[-1].categories),
                request.model,
                number,
                tries,
                f" with seed {again.seed}" if seeded else "",
            )
            try:
                result = call(provider, again, False)
            except ModerationBlocked as block:
                blocks.append(self._note(again, block))
                if number == tries:
                    raise self._failed(block, describe, tries=tries + 1) from None
                continue
            note = ModerationNote(
                outcome="retried", attempts=len(blocks) + 1, blocks=blocks, rephrase=rephrase
            )
            return Unblocked(result, again, self.job, note)
        raise AssertionError("unreachable: tries >= 1")  # pragma: no cover

    def _fall_back(
        self, blocks: list[Block], request: ImageRequest, describe: str, call: Caller
    ) -> Unblocked:
        assert self.fallback is not None
        job = self.fallback.job
        spec, size = job.spec, job.size
        self._logger.warning(
            "%s: %s by %s; asking %s instead (on_moderation: fallback_model)",
            describe,
            describe_block(blocks[-1].stage, blocks[-1].categories),
            request.model,
            spec.name,
        )
        asked = replace(
            request,
            model=spec.name,
            width=size.width,
            height=size.height,
            aspect_ratio=size.aspect_ratio,
            resolution=size.resolution,
            seed=request.seed if spec.seed else None,
        )
        provider = self.fallback.provider()
        results: list[ProviderResult] = []
        for offset in range(0, request.count, spec.per_request):
            part = replace(asked, count=min(spec.per_request, request.count - offset))
            try:
                results.append(call(provider, part, True))
            except ModerationBlocked as block:
                blocks.append(self._note(part, block))
                raise self._failed(block, describe, tries=len(blocks)) from None
        usages = [result.usage for result in results if result.usage is not None]
        usage: dict[str, int] | None = None
        for counts in usages:
            usage = usage or {}
            for name, value in counts.items():
                usage[name] = usage.get(name, 0) + value
        merged = replace(
            results[0],
            images=[image for result in results for image in result.images],
            usage=usage,
        )
        note = ModerationNote(
            outcome="fallback", attempts=len(blocks) + len(results), blocks=blocks
        )
        return Unblocked(merged, asked, job, note)

    def _failed(self, block: ModerationBlocked, describe: str, *, tries: int) -> ModerationBlocked:
        """``block`` naming the image(s), the tries, and what else ``on_moderation`` can do."""
        where = f"{describe}: {describe_block(block.stage, block.categories)}"
        where += f" on all {tries} tries; the last: " if tries > 1 else ": "
        hint = block.hint
        if self.policy == "fail":
            hint += "; or set on_moderation: skip, {retry: N} or {fallback_model: NAME}"
        return replace(block, message=where + block.message, hint=hint)
