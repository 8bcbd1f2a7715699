"""Attention per document in packed batches, without the flash-attn package.

TRL packs several documents into one row (padding-free: `position_ids` restart at 0 for each document, and the
collator adds `cu_seq_lens_q/k`). flash-attn reads those and attends within each document. Without it, baize used
to fall back to sdpa, where transformers builds a dense block-diagonal mask over the whole packed row: correct, but
attention then runs over every token pair of the row (8,192² for a [1, 8192] batch). This module registers
`baize_packed` in transformers' AttentionInterface instead:

- on CUDA, PyTorch's own variable-length flash attention (`torch.nn.attention.varlen.varlen_attn`, torch >= 2.10):
  one kernel over the documents, no mask at all;
- on CUDA without varlen, `flex_attention` (compiled) with a block mask built from the document ids (blocks
  outside a document are skipped);
- on CPU, where flex_attention has no backward, sdpa once per document (causal), which is exact;
- and sdpa, unchanged, for everything that is not a packed training batch (a padding mask, a KV cache).

`tests/test_packed_attention.py` checks that the logits of a packed batch equal those of each document run alone,
for the Llama and Qwen2 architectures.
"""

from __future__ import annotations

import functools
import inspect

import torch

NAME = "baize_packed"
BACKEND: str | None = None  # None: varlen on CUDA when torch has it, else flex; "flex" forces flex (the benchmark)


def document_ids(position_ids: torch.Tensor) -> torch.Tensor:
    """[B, T] position ids -> [B, T] document index (a new document wherever the position restarts at 0)."""
    starts = position_ids == 0
    starts[:, 0] = True
    return starts.cumsum(-1)


def cu_seq_lens(position_ids: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Cumulative document lengths over the flattened [B * T] tokens, and the longest document."""
    starts = (position_ids == 0).flatten().clone()
    starts[0] = True
    starts.view(position_ids.shape)[:, 0] = True  # a row never continues the row before it
    bounds = torch.cat([starts.nonzero().flatten(), torch.tensor([starts.numel()], device=starts.device)])
    return bounds.to(torch.int32), int(bounds.diff().max())


@functools.cache
def _varlen():
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    # torch 2.10-2.12 take is_causal; later versions a window, (-1, 0) being causal.
    causal = {"window_size": (-1, 0)} if "window_size" in inspect.signature(varlen_attn).parameters else {}
    return functools.partial(varlen_attn, **(causal or {"is_causal": True}))


@functools.cache
def _compiled_flex():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=True)


def flex_packed(query, key, value, documents: torch.Tensor, scaling: float | None) -> torch.Tensor:
    """[B, H, T, D] attention within each document (causal), through flex_attention's block mask."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    def same_document_causal(b, h, q, kv):
        return (documents[b, q] == documents[b, kv]) & (q >= kv)

    batch, _, length, _ = query.shape
    mask = create_block_mask(same_document_causal, batch, None, length, length, device=query.device)
    attend = _compiled_flex() if query.is_cuda else flex_attention  # CPU: eager, forward only (the tests)
    return attend(query, key, value, block_mask=mask, scale=scaling, enable_gqa=query.shape[1] != key.shape[1])


def per_document(query, key, value, bounds: torch.Tensor, scaling: float | None) -> torch.Tensor:
    """[B, H, T, D] -> [B, T, H, D]: causal sdpa over each document's own tokens, one call per document."""
    batch, heads, length, dim = query.shape
    flat = [t.transpose(1, 2).reshape(batch * length, t.shape[1], dim).transpose(0, 1) for t in (query, key, value)]
    edges = bounds.tolist()
    pieces = [
        torch.nn.functional.scaled_dot_product_attention(
            *(t[:, start:end].unsqueeze(0) for t in flat), is_causal=True, scale=scaling,
            enable_gqa=heads != key.shape[1],
        )[0]
        for start, end in zip(edges[:-1], edges[1:], strict=True)
    ]  # fmt: skip
    return torch.cat(pieces, dim=1).transpose(0, 1).reshape(batch, length, heads, dim)


def packed_attention_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers' attention-function signature: [B, H, T, D] in, ([B, T, H, D], None) out."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    position_ids = kwargs.get("position_ids")
    packed = attention_mask is None and position_ids is not None and query.shape[2] == key.shape[2] > 1
    if not packed or (module.training and dropout > 0):
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      **kwargs)  # fmt: skip
    batch, heads, length, dim = query.shape
    varlen = _varlen()
    if query.is_cuda and varlen is not None and BACKEND != "flex":
        if kwargs.get("cu_seq_lens_q") is not None and batch == 1:  # TRL's collator computed them on the CPU
            bounds, longest = kwargs["cu_seq_lens_q"].to(torch.int32), int(kwargs["max_length_q"])
        else:
            bounds, longest = cu_seq_lens(position_ids)
        flat = [t.transpose(1, 2).reshape(batch * length, t.shape[1], dim) for t in (query, key, value)]
        out = varlen(*flat, bounds, bounds, longest, longest, scale=scaling, enable_gqa=heads != key.shape[1])
        return out.view(batch, length, heads, dim), None
    if not query.is_cuda:
        return per_document(query, key, value, cu_seq_lens(position_ids)[0], scaling), None
    out = flex_packed(query, key, value, document_ids(position_ids), scaling)
    return out.transpose(1, 2).contiguous(), None


def packed_mask(*args, **kwargs):
    """No dense mask for a packed or unpadded batch (the attention above reads the documents from position_ids);
    sdpa's mask where there is padding."""
    from transformers.masking_utils import sdpa_mask

    if kwargs.get("attention_mask") is None:
        return None
    return sdpa_mask(*args, **kwargs)


@functools.cache
def register() -> str:
    """Make `attn_implementation: baize_packed` loadable (once per process); returns the name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, packed_attention_forward)
    AttentionMaskInterface.register(NAME, packed_mask)
    return NAME
