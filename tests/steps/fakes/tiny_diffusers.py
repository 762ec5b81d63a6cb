"""A tiny random-weight Stable Diffusion pipeline, built in code and saved to a folder.

The local provider's tests load it as ``model: local/<folder name>``: a UNet, a VAE and a
CLIP text encoder with tiny configs, a CLIP tokenizer whose ``vocab.json`` and
``merges.txt`` are written here, a DDIM scheduler, no safety checker. Building and saving
it takes a few seconds on a CPU (~4 MB on disk) and downloads nothing; its images are noise,
but the same seed gives the same bytes, which is what the tests check.

``python tests/steps/fakes/tiny_diffusers.py FOLDER`` saves it to ``FOLDER`` (the GPU script
``bench/local_diffusers_gpu.py`` does).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

__all__ = ["TINY_MODEL", "save_tiny_pipeline"]

#: The folder name the tests use: ``model: local/tiny-sd``.
TINY_MODEL = "tiny-sd"


def _tokenizer_files(folder: Path) -> tuple[Path, Path]:
    """A byte-level BPE vocabulary of single letters (no merges) and the two special tokens."""
    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for letter in "abcdefghijklmnopqrstuvwxyz":
        vocab[letter] = len(vocab)
        vocab[letter + "</w>"] = len(vocab)
    vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
    vocab_file.write_text(json.dumps(vocab), encoding="utf-8")
    merges_file.write_text("#version: 0.2\n", encoding="utf-8")
    return vocab_file, merges_file


def save_tiny_pipeline(models: Path, name: str = TINY_MODEL) -> Path:
    """Build the tiny pipeline (weights from ``torch.manual_seed(0)``) and save it to
    ``models/name``; return that folder."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as scratch:
        vocab_file, merges_file = _tokenizer_files(Path(scratch))
        tokenizer = CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=77)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=len(tokenizer.get_vocab()),
            max_position_embeddings=77,
            projection_dim=32,
        )
    )
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=8,
        sample_size=32,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    folder = models / name
    pipeline.save_pretrained(folder)
    return folder


if __name__ == "__main__":
    print(save_tiny_pipeline(Path(sys.argv[1])))
