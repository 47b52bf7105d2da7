"""UMT5 prompt encoding as the reference server does it (spec §5.2), with optional offloading.

Prompt -> Wan ``prompt_clean`` (ftfy fix-up, HTML unescape, whitespace collapse) -> T5TokenizerFast padded
and truncated to 512 -> UMT5 encoder ``last_hidden_state`` -> every row past the true token count set to
zero -> [512, d_model]. The negative (unconditional) prompt is "". Encoding happens once per episode, and
identical prompts are served from a small cache, so a repeated task costs nothing at reset.
"""
from __future__ import annotations

import gc
import html
import re
from collections import OrderedDict
from pathlib import Path
from typing import Literal

import torch

MAX_TEXT_LENGTH = 512

# Where the text encoder lives between prompts:
#   "none":  on the model device all the time (fastest reset, uses device memory)
#   "cpu":   on the CPU, encodes on the CPU; the embeddings are moved to the device
#   "move":  on the CPU, moved to the device only while encoding (device memory used only at reset)
#   "free":  loaded from disk for each new prompt and released right after (least memory, slowest reset)
TextEncoderOffload = Literal["none", "cpu", "move", "free"]
OFFLOAD_MODES = ("none", "cpu", "move", "free")


def clean_prompt(text: str) -> str:
    """Wan's prompt_clean: ftfy fix-up, double HTML unescape, strip, collapse whitespace."""
    try:
        import ftfy

        text = ftfy.fix_text(text)
    except ImportError:  # the reference also skips ftfy when it is missing
        pass
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip()


class PromptEncoder:
    """Tokenizer + UMT5 encoder producing zero-padded [512, d_model] prompt embeddings."""

    def __init__(self, text_encoder_dir: str | Path, tokenizer_dir: str | Path, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, offload: TextEncoderOffload = "none",
                 max_length: int = MAX_TEXT_LENGTH, cache_size: int = 8):
        if offload not in OFFLOAD_MODES:
            raise ValueError(f"text encoder offload must be one of {OFFLOAD_MODES}, got {offload!r}")
        from transformers import T5TokenizerFast, UMT5Config

        self.text_encoder_dir = Path(text_encoder_dir)
        self.tokenizer_dir = Path(tokenizer_dir)
        self.device = torch.device(device)
        self.dtype = dtype
        self.offload = offload
        self.max_length = int(max_length)
        self.tokenizer = T5TokenizerFast.from_pretrained(str(self.tokenizer_dir), local_files_only=True)
        self.config = UMT5Config.from_pretrained(str(self.text_encoder_dir), local_files_only=True)
        self._model = None
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._cache_size = cache_size
        if offload != "free":
            self._model = self._load(self._home_device())

    @property
    def d_model(self) -> int:
        return int(self.config.d_model)

    def _home_device(self) -> torch.device:
        return self.device if self.offload == "none" else torch.device("cpu")

    def _load(self, device: torch.device):
        from transformers import UMT5EncoderModel

        model = UMT5EncoderModel.from_pretrained(str(self.text_encoder_dir), dtype=self.dtype,
                                                 local_files_only=True)
        return model.to(device).eval()

    @torch.no_grad()
    def encode(self, prompt: str) -> torch.Tensor:
        """[max_length, d_model] embeddings of ``prompt`` on ``device`` in ``dtype`` (rows past its tokens = 0)."""
        if not isinstance(prompt, str):
            raise ValueError(f"prompt must be a string, got {type(prompt).__name__}")
        key = clean_prompt(prompt)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        embeds = self._encode_uncached(key)
        self._cache[key] = embeds
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return embeds

    def _encode_uncached(self, cleaned: str) -> torch.Tensor:
        tokens = self.tokenizer([cleaned], padding="max_length", max_length=self.max_length, truncation=True,
                                add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
        ids, mask = tokens.input_ids, tokens.attention_mask
        num_tokens = int(mask.gt(0).sum())
        run_device = torch.device("cpu") if self.offload == "cpu" else self.device
        model = self._model if self._model is not None else self._load(run_device)
        if self.offload == "move":
            model.to(run_device)
        try:
            hidden = model(input_ids=ids.to(run_device), attention_mask=mask.to(run_device)).last_hidden_state[0]
        finally:
            if self.offload == "move":
                model.to("cpu")
            if self.offload == "free":
                del model
                gc.collect()
        embeds = hidden.to(device=self.device, dtype=self.dtype).clone()
        embeds[num_tokens:] = 0            # the reference keeps only the real tokens and zero-pads to 512
        return embeds

    def encode_pair(self, prompt: str, negative_prompt: str = "") -> tuple[torch.Tensor, torch.Tensor]:
        """(prompt, negative) embeddings; the reference's unconditional prompt is the empty string."""
        return self.encode(prompt), self.encode(negative_prompt)

    def release(self) -> None:
        """Drop the model and the cached embeddings (e.g. at shutdown)."""
        self._model = None
        self._cache.clear()
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
