"""Tiny random LingBot-VA checkpoints in the official folder layout (spec §7.1), for CPU tests and demos.

    lingbot-va-make-tiny-checkpoint OUT_DIR [--embodiment demo_sim] [--seed 0]

writes ``transformer/`` (WanTransformer3DModel config + safetensors), ``vae/`` (AutoencoderKLWan with the
Wan2.2 structure: z_dim 48, 2x2 pixel patchify, residual blocks, 16x spatial / 4x temporal compression, only
narrower and shallower), ``text_encoder/`` (UMT5EncoderModel with d_model = the transformer's text_dim) and
``tokenizer/`` (a T5TokenizerFast over a small Unigram vocabulary built here from a few instruction
sentences, so nothing is downloaded). The weights are random: the model moves, but means nothing. Everything is
a deterministic function of the seed (for a given torch/diffusers/transformers version).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

# Every structural feature of the real model (3-axis RoPE split, multi-head attention, both heads and
# condition embedders, CFG) at a size where a RoboTwin-geometry chunk (25 + 50 steps, 240 video tokens,
# CFG batch 2) takes a fraction of a second on one CPU core. One block: per-forward cost on a CPU is mostly
# per-layer dispatch, and multi-layer KV-cache behaviour is covered by the reference-episode fixture.
TINY_TRANSFORMER = dict(
    patch_size=[1, 2, 2], num_attention_heads=2, attention_head_dim=24, in_channels=48, out_channels=48,
    action_dim=30, text_dim=32, freq_dim=32, ffn_dim=64, num_layers=1, cross_attn_norm=True, eps=1e-6,
    rope_max_seq_len=1024, pos_embed_seq_len=None, attn_mode="torch",
)
# Wan2.2 VAE structure (is_residual, patch_size 2, 12 patchified channels, 4 levels -> 8x after the 2x
# patchify = 16x, temporal downsampling in levels 2 and 3 = 4x) with 20x fewer channels and 1 block/level.
TINY_VAE = dict(
    base_dim=8, decoder_base_dim=8, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=1, attn_scales=[],
    temperal_downsample=[False, True, True], dropout=0.0, is_residual=True, in_channels=12, out_channels=12,
    patch_size=2, scale_factor_temporal=4, scale_factor_spatial=16,
)
TINY_UMT5 = dict(d_model=TINY_TRANSFORMER["text_dim"], d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2,
                 num_heads=4, relative_attention_num_buckets=32, relative_attention_max_distance=128,
                 dropout_rate=0.0, feed_forward_proj="gated-gelu", tie_word_embeddings=False)

# The tokenizer's vocabulary comes from these (robot-instruction style): common words get their own pieces.
TOKENIZER_CORPUS = [
    "pick up the red block and place it on the blue plate",
    "put the bottle into the dustbin",
    "open the drawer and take out the cup",
    "stack the three bowls on top of each other",
    "press the stapler with the left arm",
    "hand over the block from the left gripper to the right gripper",
    "move the can next to the pot",
    "fold the towel in half and place it on the table",
    "grab the roller with both arms and lift it",
    "place the empty cup on the coaster",
    "click the bell, then rotate the QR code",
    "shake the bottle horizontally",
    "insert the tube into the rack",
    "wipe the plate six times",
]
TOKENIZER_ALPHABET = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"-_()/&")
TOKENIZER_VOCAB_SIZE = 320

MARKER_FILE = "tiny_checkpoint.json"
# Latent statistics of a random VAE barely depend on the frame size; a small calibration clip keeps the
# checkpoint build fast.
CALIBRATION_SIZE = (128, 160)


def build_tokenizer(out_dir: Path):
    """A small Unigram vocabulary saved as a T5TokenizerFast (<pad>=0, </s>=1, <unk>=2, like UMT5's).

    Pieces are the corpus words (SentencePiece style, "\u2581" marks a word start) scored by their log
    frequency, plus every single character with and without the marker at a low score, so any ASCII text
    segments without <unk>. Counting instead of running the (multi-threaded, run-to-run varying) Unigram EM
    trainer keeps the tokenizer byte-identical for every build.
    """
    import math
    import re
    from collections import Counter

    from transformers import T5TokenizerFast

    words = Counter(w for line in TOKENIZER_CORPUS for w in re.findall(r"[A-Za-z]+|[^\sA-Za-z]", line))
    total = sum(words.values())
    pieces: dict[str, float] = {}
    for word, count in sorted(words.items(), key=lambda wc: (-wc[1], wc[0])):
        pieces["\u2581" + word] = round(math.log(count / total), 4)
        pieces.setdefault(word, round(math.log(count / total) - 1.0, 4))
    floor = round(math.log(1.0 / total) - 4.0, 4)
    for ch in ["\u2581"] + TOKENIZER_ALPHABET:
        pieces.setdefault(ch, floor)
        pieces.setdefault("\u2581" + ch, floor - 1.0)
    ordered = sorted(pieces.items(), key=lambda ps: (-ps[1], ps[0]))[: TOKENIZER_VOCAB_SIZE - 3]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + ordered
    tokenizer = T5TokenizerFast(vocab=vocab, extra_ids=0)
    tokenizer.model_max_length = 512
    tokenizer.save_pretrained(str(out_dir))
    return tokenizer


def _synthetic_frames(generator: torch.Generator, num_frames: int, height: int, width: int) -> torch.Tensor:
    """Smooth random colour fields in [-1, 1], [1, 3, T, h, w]: image-like input for VAE calibration."""
    coarse = torch.rand((num_frames, 3, height // 32, width // 32), generator=generator) * 2 - 1
    fine = torch.rand((num_frames, 3, height // 8, width // 8), generator=generator) * 2 - 1
    up = torch.nn.functional.interpolate
    img = 0.7 * up(coarse, size=(height, width), mode="bilinear", align_corners=False) \
        + 0.3 * up(fine, size=(height, width), mode="bilinear", align_corners=False)
    return img.clamp(-1, 1).permute(1, 0, 2, 3).unsqueeze(0)


@torch.no_grad()
def build_vae(seed: int, calibration_size: tuple[int, int] = CALIBRATION_SIZE):
    """Random tiny AutoencoderKLWan whose latents_mean/std are measured on synthetic frames (unit-scale z)."""
    from diffusers import AutoencoderKLWan

    from lingbot_va_ros.model.vae import StreamingVAEEncoder, LatentStats, use_fast_cpu_conv3d

    z_dim = TINY_VAE["z_dim"]
    torch.manual_seed(seed)
    vae = AutoencoderKLWan(**TINY_VAE, latents_mean=[0.0] * z_dim, latents_std=[1.0] * z_dim).eval()
    use_fast_cpu_conv3d(vae)
    gen = torch.Generator().manual_seed(seed + 1)
    encoder = StreamingVAEEncoder(vae, LatentStats([0.0] * z_dim, [1.0] * z_dim), name="calibration")
    h, w = calibration_size
    clip = _synthetic_frames(gen, 5, h, w)
    mu = torch.cat([encoder.encode(clip[:, :, :1]), encoder.encode(clip[:, :, 1:])], dim=2)
    per_channel = mu.transpose(0, 1).reshape(z_dim, -1).double()
    mean = [round(float(v), 6) for v in per_channel.mean(dim=1)]
    std = [round(max(float(v), 1e-3), 6) for v in per_channel.std(dim=1)]
    vae.register_to_config(latents_mean=mean, latents_std=std)
    return vae


def build_text_encoder(seed: int, vocab_size: int):
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    config = UMT5Config(vocab_size=vocab_size, **TINY_UMT5)
    return UMT5EncoderModel(config).eval()


def build_transformer(seed: int):
    from lingbot_va_ros.model.transformer import WanTransformer3DModel

    torch.manual_seed(seed)
    return WanTransformer3DModel(**TINY_TRANSFORMER).eval()


def make_tiny_checkpoint(out_dir: str | Path, embodiment: str = "demo_sim", seed: int = 0,
                         overwrite: bool = False) -> Path:
    """Write a complete tiny checkpoint folder and return its path."""
    from lingbot_va_ros.model.embodiment import load_embodiment

    out = Path(out_dir).expanduser()
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} exists and is not empty (pass overwrite=True / --overwrite)")
        for sub in ("transformer", "vae", "text_encoder", "tokenizer"):
            shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    emb = load_embodiment(embodiment)        # validates the name/YAML early; recorded in the marker file

    with torch.random.fork_rng(devices=[]):        # leave the caller's global RNG state untouched
        tokenizer = build_tokenizer(out / "tokenizer")
        build_text_encoder(seed + 100, len(tokenizer)).save_pretrained(str(out / "text_encoder"))
        build_vae(seed + 200).save_pretrained(str(out / "vae"))
        build_transformer(seed).save_pretrained(str(out / "transformer"))
    (out / MARKER_FILE).write_text(json.dumps({
        "generator": "lingbot_va_ros.model.tiny_checkpoint", "seed": seed, "embodiment": emb.name,
        "note": "random weights for tests and CPU demos; not a trained model",
    }, indent=2) + "\n")
    return out


# The name the demo bringup (lingbot_va_ros.bringup.runner) uses.
write_tiny_checkpoint = make_tiny_checkpoint

_SHARED: dict[tuple[int, str], Path] = {}


def shared_tiny_checkpoint(seed: int = 0, embodiment: str = "demo_sim") -> Path:
    """A tiny checkpoint built once per process in a temporary folder (tests and benchmarks share it)."""
    import atexit
    import tempfile

    key = (seed, embodiment)
    if key not in _SHARED or not (_SHARED[key] / MARKER_FILE).is_file():
        folder = Path(tempfile.mkdtemp(prefix=f"lingbot_va_tiny_{seed}_"))
        atexit.register(shutil.rmtree, folder, True)
        _SHARED[key] = make_tiny_checkpoint(folder, embodiment, seed)
    return _SHARED[key]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lingbot-va-make-tiny-checkpoint", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", help="folder to create (transformer/, vae/, text_encoder/, tokenizer/)")
    parser.add_argument("--embodiment", default="demo_sim",
                        help="embodiment name or YAML the checkpoint is meant for (validated, recorded in "
                             f"{MARKER_FILE})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint in out_dir")
    args = parser.parse_args(argv)
    try:
        path = make_tiny_checkpoint(args.out_dir, args.embodiment, args.seed, args.overwrite)
    except (FileExistsError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"tiny LingBot-VA checkpoint written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
