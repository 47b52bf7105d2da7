"""Prompt handling as the reference server does it (spec §5.2) on the tiny checkpoint's UMT5 + tokenizer."""
from __future__ import annotations

import pytest
import torch

from lingbot_va_ros.model.text_encoder import MAX_TEXT_LENGTH, PromptEncoder, clean_prompt
from lingbot_va_ros.model.tiny_checkpoint import shared_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint():
    return shared_tiny_checkpoint()


@pytest.fixture(scope="module")
def encoder(checkpoint):
    return PromptEncoder(checkpoint / "text_encoder", checkpoint / "tokenizer")


@pytest.mark.parametrize("text", [
    "  Pick up   the red\tblock\n",
    "put the cup &amp;amp; the plate away",
    "caf\u00c3\u00a9 mojibake and \u201csmart quotes\u201d",
    "",
])
def test_clean_prompt_matches_wan_prompt_clean(text):
    from diffusers.pipelines.wan.pipeline_wan import prompt_clean

    assert clean_prompt(text) == prompt_clean(text)


def test_rows_beyond_the_tokens_are_zero(encoder):
    prompt = "pick up the red block and place it on the blue plate"
    embeds = encoder.encode(prompt)
    assert embeds.shape == (MAX_TEXT_LENGTH, encoder.d_model)
    tokens = encoder.tokenizer([prompt], padding="max_length", max_length=MAX_TEXT_LENGTH, truncation=True,
                               return_tensors="pt")
    n = int(tokens.attention_mask.sum())
    assert 1 < n < 40
    assert torch.all(embeds[n:] == 0)
    assert torch.all(embeds[:n].abs().sum(-1) > 0)
    # the kept rows are the encoder's own output for the masked padded input
    model = encoder._model
    with torch.no_grad():
        hidden = model(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask).last_hidden_state[0]
    torch.testing.assert_close(embeds[:n], hidden[:n])


def test_negative_prompt_is_the_empty_string(encoder):
    positive, negative = encoder.encode_pair("open the drawer")
    assert negative.shape == positive.shape
    assert int((negative.abs().sum(-1) > 0).sum()) == 1          # only </s>
    assert torch.equal(negative, encoder.encode(""))


def test_long_prompts_are_truncated_to_512_rows(encoder):
    embeds = encoder.encode("stack the bowls " * 400)
    assert embeds.shape[0] == MAX_TEXT_LENGTH
    assert torch.all(embeds.abs().sum(-1) > 0)                    # no padding left


def test_prompts_are_encoded_once_and_cleaned_before_caching(encoder):
    a = encoder.encode("wipe the plate")
    assert encoder.encode("  wipe   the plate ") is a


@pytest.mark.parametrize("offload", ["cpu", "move", "free"])
def test_offload_modes_give_identical_embeddings(checkpoint, encoder, offload):
    other = PromptEncoder(checkpoint / "text_encoder", checkpoint / "tokenizer", offload=offload)
    assert (other._model is None) == (offload == "free")
    torch.testing.assert_close(other.encode("grab the roller"), encoder.encode("grab the roller"))
    assert (other._model is None) == (offload == "free")         # "free" releases it after encoding
    other.release()


def test_bad_arguments(checkpoint, encoder):
    with pytest.raises(ValueError, match="offload"):
        PromptEncoder(checkpoint / "text_encoder", checkpoint / "tokenizer", offload="gpu")
    with pytest.raises(ValueError, match="string"):
        encoder.encode(None)
