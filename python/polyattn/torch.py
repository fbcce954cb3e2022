"""polyattn's exact attention as a PyTorch autograd function (importable only where torch is).

``polyattn.torch.attention(q, k, v, **keywords)`` takes CPU tensors (float32/float64, rank 2–4)
and the keywords of :func:`polyattn.attention` (not ``seq_lens``/``key_lens``), returns a tensor,
and backpropagates through :func:`polyattn.attention_backward`. The backward recomputes the
forward's row statistics (one extra forward pass) rather than holding them between the calls.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from . import attention as _attention
from . import attention_backward as _attention_backward

__all__ = ["attention"]


def _numpy(t: torch.Tensor, name: str) -> np.ndarray:
    if t.device.type != "cpu":
        raise ValueError(f"{name} is on {t.device}: polyattn computes on the CPU; move it there")
    return t.detach().contiguous().numpy()


class _ExactAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                options: dict) -> torch.Tensor:
        ctx.save_for_backward(q, k, v)
        ctx.options = options
        out = _attention(_numpy(q, "q"), _numpy(k, "k"), _numpy(v, "v"), **options)
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor):  # type: ignore[override]
        q, k, v = ctx.saved_tensors
        dq, dk, dv = _attention_backward(
            _numpy(q, "q"), _numpy(k, "k"), _numpy(v, "v"), _numpy(grad_out, "grad_out"),
            **ctx.options,
        )
        return torch.from_numpy(dq), torch.from_numpy(dk), torch.from_numpy(dv), None


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **options: Any) -> torch.Tensor:
    """Exact polynomial or softmax attention with gradients for q, k and v (see
    :func:`polyattn.attention` for the keywords)."""
    for bad in ("seq_lens", "key_lens"):
        if bad in options:
            raise ValueError(f"{bad} is not supported with gradients yet: pass one sequence")
    return _ExactAttention.apply(q, k, v, options)
