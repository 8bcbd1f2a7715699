"""Packed batches attend per document without flash-attn: baize's `baize_packed` attention (transformers'
AttentionInterface; flex_attention on CPU, PyTorch's varlen flash attention on CUDA) gives a packed row the logits
each document has alone, for the Llama and Qwen2 architectures, and never builds a dense mask for it."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

from baize.modeling import packed_attention

ARCHITECTURES = {
    "llama": LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2),
    "qwen2": Qwen2Config(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2),
}  # fmt: skip
DOCUMENTS = [11, 5, 17, 1, 9]  # token counts, one of a single token


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_a_packed_row_has_the_logits_of_each_document_alone(architecture):
    torch.manual_seed(0)
    config = ARCHITECTURES[architecture]
    reference = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa").eval()
    packed = AutoModelForCausalLM.from_config(config, attn_implementation=packed_attention.register()).eval()
    packed.load_state_dict(reference.state_dict())
    documents = [torch.randint(0, config.vocab_size, (1, n)) for n in DOCUMENTS]
    row = torch.cat(documents, dim=1)
    position_ids = torch.cat([torch.arange(n) for n in DOCUMENTS]).unsqueeze(0)
    with torch.no_grad():
        together = packed(input_ids=row, position_ids=position_ids).logits
        alone = torch.cat([reference(input_ids=d).logits for d in documents], dim=1)
        dense = reference(input_ids=row, position_ids=position_ids).logits  # sdpa's block-mask fallback
    assert torch.allclose(together, alone, atol=1e-5), (together - alone).abs().max()
    assert torch.allclose(dense, alone, atol=1e-5)  # the fallback is correct too, only slower
    # Without the documents (one sequence), a cross-document leak would show: the packed logits differ from it.
    with torch.no_grad():
        leaked = reference(input_ids=row).logits
    assert not torch.allclose(leaked[:, DOCUMENTS[0] :], alone[:, DOCUMENTS[0] :], atol=1e-3)


def test_padded_batches_and_generation_keep_sdpa(tiny_llama_dir):
    """A padding mask or a KV cache is not a packed batch: the same results as sdpa."""
    torch.manual_seed(0)
    sdpa = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, attn_implementation="sdpa").eval()
    packed = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, attn_implementation=packed_attention.register())
    packed.eval()
    ids = torch.randint(5, 1000, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # left padding
    with torch.no_grad():
        assert torch.allclose(packed(input_ids=ids, attention_mask=mask).logits,
                              sdpa(input_ids=ids, attention_mask=mask).logits, atol=1e-5)  # fmt: skip
        kwargs = dict(max_new_tokens=6, do_sample=False, pad_token_id=0)
        assert torch.equal(packed.generate(ids, attention_mask=mask, **kwargs),
                           sdpa.generate(ids, attention_mask=mask, **kwargs))  # fmt: skip


def test_flex_attention_path_attends_per_document():
    """The CUDA fallback when varlen is missing (flex_attention's block mask), checked against the per-document sdpa
    of the CPU path, forward only (flex has no CPU backward)."""
    torch.manual_seed(0)
    position_ids = torch.cat([torch.arange(n) for n in DOCUMENTS]).unsqueeze(0)
    length = position_ids.shape[1]
    query, key, value = torch.randn(1, 4, length, 16), torch.randn(1, 2, length, 16), torch.randn(1, 2, length, 16)
    flex = packed_attention.flex_packed(query, key, value, packed_attention.document_ids(position_ids), 0.25)
    bounds = packed_attention.cu_seq_lens(position_ids)[0]
    loop = packed_attention.per_document(query, key, value, bounds, 0.25)
    assert torch.allclose(flex.transpose(1, 2), loop, atol=1e-5)


def test_document_boundaries_from_position_ids():
    position_ids = torch.tensor([[0, 1, 2, 0, 1, 0], [0, 1, 0, 1, 2, 3]])
    assert packed_attention.document_ids(position_ids).tolist() == [[1, 1, 1, 2, 2, 3], [1, 1, 2, 2, 2, 2]]
    bounds, longest = packed_attention.cu_seq_lens(position_ids)
    assert bounds.tolist() == [0, 3, 5, 6, 8, 12] and longest == 4


@pytest.mark.slow
def test_packed_training_through_baize_train_matches_the_dense_mask(tmp_path, tiny_llama_dir, chat_jsonl):
    """`baize train` with packing and flash_attention_2 requested (absent here): the per-document attention's
    first loss equals that of sdpa with transformers' dense block mask."""
    from helpers import train, write_recipe

    losses = {}
    for attention in ("sdpa", "flash_attention_2"):
        (tmp_path / attention).mkdir()
        recipe = write_recipe(tmp_path / attention, tiny_llama_dir, chat_jsonl, packing=True, max_steps=2,
                              test_split_size=None, save_strategy="no", attn_implementation=attention,
                              output_dir=str(tmp_path / attention / "run"))  # fmt: skip
        losses[attention] = train(recipe)["loss_first"]
    assert losses["flash_attention_2"] == pytest.approx(losses["sdpa"], rel=1e-4)
