"""polyattn's attention as PyTorch autograd functions (importable only where torch is).

``polyattn.torch.attention(q, k, v, **keywords)`` and ``polyattn.torch.linear_attention(q, k, v,
feature_map=..., **keywords)`` take CPU tensors (float32/float64, rank 2–4) and the keywords of
:func:`polyattn.attention` / :func:`polyattn.linear_attention` (linear: not ``seq_lens``),
return tensors, and backpropagate through :func:`polyattn.attention_backward` /
:func:`polyattn.linear_attention_backward`. The backward recomputes the forward (one extra pass)
rather than holding state between the calls.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from . import attention as _attention
from . import attention_backward as _attention_backward
from . import linear_attention as _linear_attention
from . import linear_attention_backward as _linear_attention_backward

__all__ = ["attention", "linear_attention"]


def _numpy(t: torch.Tensor, name: str) -> np.ndarray:
    if t.device.type != "cpu":
        raise ValueError(f"{name} is on {t.device}: polyattn computes on the CPU; move it there")
    return t.detach().contiguous().numpy()


class _Attention(torch.autograd.Function):
    """One forward/backward pair of the package's functions; `engines` picks them."""

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                engines: tuple, options: dict) -> torch.Tensor:
        ctx.save_for_backward(q, k, v)
        ctx.engines, ctx.options = engines, options
        out = engines[0](_numpy(q, "q"), _numpy(k, "k"), _numpy(v, "v"), **options)
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor):  # type: ignore[override]
        q, k, v = ctx.saved_tensors
        dq, dk, dv = ctx.engines[1](
            _numpy(q, "q"), _numpy(k, "k"), _numpy(v, "v"), _numpy(grad_out, "grad_out"),
            **ctx.options,
        )
        return torch.from_numpy(dq), torch.from_numpy(dk), torch.from_numpy(dv), None, None


def _one_sequence(options: dict) -> None:
    if "seq_lens" in options:
        raise ValueError("seq_lens is not supported by linear_attention's gradients yet")


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **options: Any) -> torch.Tensor:
    """Exact polynomial or softmax attention with gradients for q, k and v (see
    :func:`polyattn.attention` for the keywords)."""
    return _Attention.apply(q, k, v, (_attention, _attention_backward), options)


def linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **options: Any
                     ) -> torch.Tensor:
    """Linear attention with a feature map, with gradients for q, k and v through the sketch
    (see :func:`polyattn.linear_attention` for the keywords; ``feature_map`` is required)."""
    _one_sequence(options)
    return _Attention.apply(q, k, v, (_linear_attention, _linear_attention_backward), options)
