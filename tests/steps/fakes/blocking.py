"""Moderation blocks the fakes apply by prompt: a marker word, a stage, how many times.

``fake.block_prompts("forbidden")`` makes every request whose prompt holds ``forbidden``
(any case) blocked at the input stage; ``stage="output"`` blocks it as a withheld image;
``times=2`` blocks only the first two such requests (so a retry can pass). Each fake
answers a block in its provider's real shape (OpenAI: 400 ``moderation_blocked`` with
``moderation_details``; Gemini: 200 with ``promptFeedback.blockReason`` for input,
``finishReason: IMAGE_SAFETY`` for output).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

__all__ = ["PromptBlock", "PromptBlocks"]


@dataclass
class PromptBlock:
    """One rule: block prompts holding ``marker``.

    Attributes:
        marker: The word that gets a prompt blocked (case-insensitive).
        stage: ``input`` or ``output``.
        categories: What the block names.
        times: Block only the first this many matching requests (None: all of them).
        after: Let this many matching requests pass first.
        blocked: How many requests this rule blocked so far.
        seen: How many matching requests it saw.
    """

    marker: str
    stage: str = "input"
    categories: tuple[str, ...] = ("violence",)
    times: int | None = None
    after: int = 0
    blocked: int = 0
    seen: int = 0


class PromptBlocks:
    """Mixin for a fake: :meth:`block_prompts` and the check its ``answer`` makes."""

    _prompt_blocks: list[PromptBlock]
    _prompt_blocks_lock = threading.Lock()

    def block_prompts(
        self,
        marker: str,
        *,
        stage: str = "input",
        categories: tuple[str, ...] = ("violence",),
        times: int | None = None,
        after: int = 0,
    ) -> PromptBlock:
        """Block requests whose prompt holds ``marker`` (see the module)."""
        rule = PromptBlock(marker, stage, categories, times, after)
        with self._prompt_blocks_lock:
            if not hasattr(self, "_prompt_blocks"):
                self._prompt_blocks = []
            self._prompt_blocks.append(rule)
        return rule

    def blocking(self, prompt: str) -> PromptBlock | None:
        """The rule that blocks ``prompt`` now (counting it), or None."""
        with self._prompt_blocks_lock:
            for rule in getattr(self, "_prompt_blocks", []):
                if rule.marker.lower() not in prompt.lower():
                    continue
                rule.seen += 1
                if rule.seen <= rule.after:
                    continue
                if rule.times is not None and rule.blocked >= rule.times:
                    continue
                rule.blocked += 1
                return rule
        return None
