"""Exact and sketched polynomial attention on multicore CPUs, from numpy and PyTorch.

The functions take float32 or float64 arrays of rank 2, 3 or 4 (``[n, d]``, ``[h, n, d]``,
``[b, h, n, d]``) — numpy arrays, or anything numpy can read without a copy where it can (CPU torch
tensors through ``__dlpack__``) — and return numpy arrays of q's rank with v's last dimension.
C-contiguous inputs are used in place; others are copied once. The GIL is released for the whole
computation, so several Python threads can compute at once. Bad input raises ``ValueError`` with
the Rust engine's message; a size beyond the memory budget raises ``MemoryError`` before anything
is allocated (see :func:`set_memory_budget`).

Example::

    import numpy as np, polyattn
    q, k, v = (np.random.default_rng(s).standard_normal((8, 1024, 64), dtype=np.float32)
               for s in range(3))
    y = polyattn.attention(q, k, v, degree=4, causal=True)              # exact, O(n²)
    phi = polyattn.SelfTensoredSketch(64, degree=4, sketch_dim=32, seed=0)
    z = polyattn.linear_attention(q, k, v, feature_map=phi, causal=True)  # sketched, O(n)
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from . import _polyattn
from ._polyattn import FeatureMap, memory_budget, set_memory_budget, warm_up

__version__: str = _polyattn.__version__

__all__ = [
    "attention",
    "attention_backward",
    "linear_attention",
    "linear_attention_backward",
    "FeatureMap",
    "PolySketch",
    "SelfTensoredSketch",
    "TensorSketch",
    "RandomMaclaurin",
    "Favor",
    "ExactDegree2",
    "DecodingState",
    "KvCache",
    "memory_budget",
    "set_memory_budget",
    "warm_up",
]


def _as_array(x: Any, name: str) -> np.ndarray:
    """``x`` as a C-contiguous float32/float64 ndarray, without a copy where possible."""
    if isinstance(x, np.ndarray):
        a = x
    else:
        a = None
        if hasattr(x, "__dlpack__") and hasattr(x, "__dlpack_device__"):
            try:
                a = np.from_dlpack(x)
            except (TypeError, RuntimeError, BufferError, ValueError):
                a = None  # e.g. a tensor that requires grad, or not on the CPU: try __array__
        if a is None:
            try:
                a = np.asarray(x)
            except Exception as e:  # torch raises RuntimeError for tensors that require grad
                raise ValueError(f"{name} cannot be read as an array: {e}") from None
    if a.dtype != np.float32 and a.dtype != np.float64:
        raise ValueError(f"{name} must be a float32 or float64 array; found {a.dtype}")
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    return a


def attention(
    q: Any,
    k: Any,
    v: Any,
    *,
    kernel: str = "poly",
    degree: Optional[int] = None,
    causal: bool = False,
    norm: str = "sum",
    norm_bias: Optional[float] = None,
    scale: Optional[float] = None,
    layernorm: bool = False,
    threads: Optional[int] = None,
    window: Optional[int] = None,
    seq_lens: Optional[Sequence[int]] = None,
    key_lens: Optional[Sequence[int]] = None,
) -> np.ndarray:
    """Exact attention: weights ``(s·q·k)^degree`` (``kernel="poly"``) or ``exp(s·q·k)``
    (``kernel="softmax"``) over the visible keys, normalized by ``norm``.

    Args:
        q, k, v: ``[..., n_q, d]``, ``[..., n_k, d]``, ``[..., n_k, d_v]``, one dtype.
        kernel: ``"poly"`` or ``"softmax"``.
        degree: the polynomial degree β ≥ 1 (default 4); only for ``"poly"``.
        causal: query i sees keys j ≤ i + n_k − n_q.
        norm: ``"sum"`` (divide by Σw), ``"one-plus-sum"`` (by norm_bias + Σw) or ``"none"``.
        norm_bias: the constant of ``"one-plus-sum"`` (default 1.0); only with it.
        scale: multiplies q·k (default 1 for poly, 1/√d for softmax).
        layernorm: LayerNorm q and k rows (no affine) first.
        threads: a dedicated pool of this many threads (default: the global pool).
        window: sliding-window attention over ``window`` keys: query i (at key position
            i' = i + n_k − n_q) sees i' − window < j ≤ i' when causal, |i' − j| < window
            otherwise; costs O(n·window).
        seq_lens: packed variable-length sequences on the sequence axis (n_q = n_k = their
            sum): each query sees only the keys of its own sequence (mask and window apply
            within it).
        key_lens: a right-padded batch: batch entry b has ``key_lens[b]`` valid keys at the
            start of its sequence axis; no query sees the padding, and the padding rows'
            outputs are 0 (one layout: not with
            ``seq_lens``).

    K and v may have fewer heads than q (grouped-query attention): ``H_kv`` must divide ``H``,
    and query head h reads k/v head h // (H / H_kv).

    Returns:
        ``[..., n_q, d_v]`` in q's rank and dtype.

    Raises:
        ValueError: bad shapes, dtypes, parameters, non-finite values, an ill-conditioned
            normalizer (odd degrees), overflow. MemoryError: beyond the memory budget.
    """
    return _polyattn.attention(
        _as_array(q, "q"),
        _as_array(k, "k"),
        _as_array(v, "v"),
        kernel=kernel,
        degree=degree,
        causal=causal,
        norm=norm,
        norm_bias=norm_bias,
        scale=scale,
        layernorm=layernorm,
        threads=threads,
        window=window,
        seq_lens=None if seq_lens is None else [int(n) for n in seq_lens],
        key_lens=None if key_lens is None else [int(n) for n in key_lens],
    )


def attention_backward(
    q: Any,
    k: Any,
    v: Any,
    grad_out: Any,
    *,
    kernel: str = "poly",
    degree: Optional[int] = None,
    causal: bool = False,
    norm: str = "sum",
    norm_bias: Optional[float] = None,
    scale: Optional[float] = None,
    layernorm: bool = False,
    threads: Optional[int] = None,
    window: Optional[int] = None,
    seq_lens: Optional[Sequence[int]] = None,
    key_lens: Optional[Sequence[int]] = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of exact attention: ``(dq, dk, dv)`` of ``L = sum(grad_out * attention(q, k, v))``
    for the same keywords as :func:`attention` (padding rows and padded keys get 0).

    Flash-style: the forward is recomputed with two statistics per row and the backward
    recomputes score tiles, so memory stays O(n); the same overflow-proof scaling as the forward
    (high degrees work in float32). With fewer k/v heads than query heads, ``dk`` and ``dv`` sum
    over each group. Each gradient has its input's shape and dtype.

    Raises:
        ValueError: as :func:`attention`, plus a ``grad_out`` whose shape is not the output's or
            whose dtype is not q's, non-finite ``grad_out``, a gradient that overflows.
    """
    return _polyattn.attention_backward(
        _as_array(q, "q"),
        _as_array(k, "k"),
        _as_array(v, "v"),
        _as_array(grad_out, "grad_out"),
        kernel=kernel,
        degree=degree,
        causal=causal,
        norm=norm,
        norm_bias=norm_bias,
        scale=scale,
        layernorm=layernorm,
        threads=threads,
        window=window,
        seq_lens=None if seq_lens is None else [int(n) for n in seq_lens],
        key_lens=None if key_lens is None else [int(n) for n in key_lens],
    )


def linear_attention(
    q: Any,
    k: Any,
    v: Any,
    *,
    feature_map: FeatureMap,
    causal: bool = False,
    block: int = 256,
    local_exact: bool = False,
    norm: str = "sum",
    norm_bias: Optional[float] = None,
    scale: Optional[float] = None,
    layernorm: bool = False,
    threads: Optional[int] = None,
    seq_lens: Optional[Sequence[int]] = None,
) -> np.ndarray:
    """Attention with weights ``⟨φ(q), φ(k)⟩`` in time linear in n (PolySketchFormer).

    Args:
        q, k, v: as for :func:`attention`; d must be the map's ``input_dim``.
        feature_map: φ, e.g. ``SelfTensoredSketch(d, degree=4, sketch_dim=32)``.
        causal: the block lower-triangular algorithm (n_q = n_k).
        block: rows per block of the causal algorithm.
        local_exact: exact ``(q·k)^p`` weights inside the diagonal blocks (causal, polynomial
            maps).
        norm, norm_bias, scale, layernorm, threads: as for :func:`attention`. Signed sketches
            whose ``sum`` normalizers cancel raise ValueError (docs/math.md §4.5).
        seq_lens: packed sequences, as for :func:`attention`; the causal state restarts at
            each sequence.

    Returns:
        ``[..., n_q, d_v]`` in q's rank and dtype.
    """
    return _polyattn.linear_attention(
        _as_array(q, "q"),
        _as_array(k, "k"),
        _as_array(v, "v"),
        feature_map=feature_map,
        causal=causal,
        block=block,
        local_exact=local_exact,
        norm=norm,
        norm_bias=norm_bias,
        scale=scale,
        layernorm=layernorm,
        threads=threads,
        seq_lens=None if seq_lens is None else [int(n) for n in seq_lens],
    )


def linear_attention_backward(
    q: Any,
    k: Any,
    v: Any,
    grad_out: Any,
    *,
    feature_map: FeatureMap,
    causal: bool = False,
    block: int = 256,
    local_exact: bool = False,
    norm: str = "sum",
    norm_bias: Optional[float] = None,
    scale: Optional[float] = None,
    layernorm: bool = False,
    threads: Optional[int] = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of linear attention: ``(dq, dk, dv)`` of
    ``L = sum(grad_out * linear_attention(q, k, v, ...))`` for the same keywords (not
    ``seq_lens``), through the block-causal scan and the feature map, so q and k train through
    the sketch (every feature map has a backward).

    Raises:
        ValueError: as :func:`linear_attention`, plus a ``grad_out`` whose shape is not the
            output's, a gradient that overflows.
    """
    return _polyattn.linear_attention_backward(
        _as_array(q, "q"),
        _as_array(k, "k"),
        _as_array(v, "v"),
        _as_array(grad_out, "grad_out"),
        feature_map=feature_map,
        causal=causal,
        block=block,
        local_exact=local_exact,
        norm=norm,
        norm_bias=norm_bias,
        scale=scale,
        layernorm=layernorm,
        threads=threads,
    )


class PolySketch(FeatureMap):
    """The Gaussian-tree PolySketch of degree p (any p ≥ 1): ``sketch_dim`` signed features
    whose inner product estimates ``(x·y)^p``. ``scale="reference"`` matches the KMZ23 JAX code.
    """

    def __new__(cls, d: int, degree: int = 4, sketch_dim: int = 32, seed: int = 0,
                scale: str = "unbiased"):
        return super().__new__(cls, "polysketch", d, degree, sketch_dim, seed, scale)


class SelfTensoredSketch(FeatureMap):
    """PolySketchFormer's map for even p: φ(x) = M(x) ⊗ M(x) with M a degree-p/2 PolySketch of
    ``sketch_dim`` = r features, stored packed (r(r+1)/2 features); weights are ≥ 0. This is the
    command line's ``--kernel polysketch`` for even degrees.
    """

    def __new__(cls, d: int, degree: int = 4, sketch_dim: int = 32, seed: int = 0,
                scale: str = "unbiased"):
        return super().__new__(cls, "self-tensored", d, degree, sketch_dim, seed, scale)


class TensorSketch(FeatureMap):
    """TensorSketch of degree p: CountSketches combined by FFT, ``sketch_dim`` features."""

    def __new__(cls, d: int, degree: int = 4, sketch_dim: int = 256, seed: int = 0):
        return super().__new__(cls, "tensorsketch", d, degree, sketch_dim, seed)


class RandomMaclaurin(FeatureMap):
    """Random Maclaurin features of pure degree p: products of p Rademacher projections."""

    def __new__(cls, d: int, degree: int = 4, sketch_dim: int = 256, seed: int = 0):
        return super().__new__(cls, "maclaurin", d, degree, sketch_dim, seed)


class Favor(FeatureMap):
    """FAVOR+ positive random features for softmax (use ``norm="sum"``)."""

    def __new__(cls, d: int, sketch_dim: int = 256, seed: int = 0):
        return super().__new__(cls, "favor", d, 1, sketch_dim, seed)


class ExactDegree2(FeatureMap):
    """Exact degree-2 features x ⊗ x, packed (d(d+1)/2): linear attention then *is* β = 2."""

    def __new__(cls, d: int):
        return super().__new__(cls, "exact2", d, 2, 0, 0)


class DecodingState:
    """Token-by-token sketched decoding of one head: O(m·d_v) per token, whatever the context.

    Args:
        feature_map: φ, as for :func:`linear_attention`.
        d_v: the value dimension.
        norm, norm_bias, scale, layernorm: as for :func:`linear_attention`.
        local_exact, block: the mixed variant (exact weights inside blocks of ``block`` tokens).
        dtype: ``"float32"`` or ``"float64"``; inputs must have this dtype.
    """

    def __init__(
        self,
        feature_map: FeatureMap,
        d_v: int,
        *,
        norm: str = "sum",
        norm_bias: Optional[float] = None,
        scale: Optional[float] = None,
        layernorm: bool = False,
        local_exact: bool = False,
        block: int = 256,
        dtype: str = "float32",
    ) -> None:
        self._state = _polyattn.DecodingState(
            feature_map, d_v, norm=norm, norm_bias=norm_bias, scale=scale,
            layernorm=layernorm, local_exact=local_exact, block=block, dtype=dtype,
        )

    def prefill(self, k: Any, v: Any) -> None:
        """Absorbs a prompt's keys ``[rows, d]`` and values ``[rows, d_v]``."""
        self._state.prefill(_as_array(k, "k"), _as_array(v, "v"))

    def step(self, q: Any, k: Any, v: Any) -> np.ndarray:
        """Absorbs one token's ``k`` ``[d]`` and ``v`` ``[d_v]`` and returns the output ``[d_v]``
        for its query ``q`` ``[d]`` — or, under grouped-query attention (one state per k/v head),
        the outputs ``[g, d_v]`` for the queries ``[g, d]`` of the g query heads sharing it.
        A step that raises leaves the state unchanged."""
        return self._state.step(_as_array(q, "q"), _as_array(k, "k"), _as_array(v, "v"))

    def reset(self) -> None:
        """Forgets every absorbed token, so the next sequence (of a packed batch) starts here."""
        self._state.reset()

    def __len__(self) -> int:
        return len(self._state)

    @property
    def dtype(self) -> str:
        """``"float32"`` or ``"float64"``."""
        return self._state.dtype

    @property
    def feature_dim(self) -> int:
        """The feature dimension m of the state."""
        return self._state.feature_dim


class KvCache:
    """Exact decoding: the keys and values of ``kv_heads`` heads, growing token by token, and
    attention of the newest tokens' queries over all of them.

    Each key chunk of 1024 tokens of each head is one task (split-K, flash-decoding), so one
    head's step uses every thread; results do not depend on the thread count. Tokens are
    checked for finite values once, when they are appended.

    Args:
        kv_heads, d, d_v: heads of keys and values, the key and value dimensions.
        kernel, degree, norm, norm_bias, scale, layernorm, threads, window: as for
            :func:`attention`.
        causal: query i of the t newest sees the keys up to its own position (default);
            otherwise every cached key.
        dtype: ``"float32"`` or ``"float64"``; inputs must have this dtype.

    Example::

        cache = polyattn.KvCache(2, 64, 64, degree=4)
        cache.append(k_prompt, v_prompt)      # [2, P, 64] each
        cache.append(k_new, v_new)            # [2, 1, 64]
        y = cache.attend(q_new)               # q [8, 1, 64] (4 query heads per k/v head) -> [8, 1, 64]
    """

    def __init__(
        self,
        kv_heads: int,
        d: int,
        d_v: int,
        *,
        kernel: str = "poly",
        degree: Optional[int] = None,
        causal: bool = True,
        norm: str = "sum",
        norm_bias: Optional[float] = None,
        scale: Optional[float] = None,
        layernorm: bool = False,
        threads: Optional[int] = None,
        window: Optional[int] = None,
        dtype: str = "float32",
    ) -> None:
        self._cache = _polyattn.KvCache(
            kv_heads, d, d_v, kernel=kernel, degree=degree, causal=causal, norm=norm,
            norm_bias=norm_bias, scale=scale, layernorm=layernorm, threads=threads,
            window=window, dtype=dtype,
        )

    def append(self, k: Any, v: Any) -> None:
        """Appends t tokens: keys ``[kv_heads, t, d]`` and values ``[kv_heads, t, d_v]``. An
        append that raises leaves the cache unchanged."""
        self._cache.append(_as_array(k, "k"), _as_array(v, "v"))

    def attend(self, q: Any) -> np.ndarray:
        """Attention of the newest t tokens' queries ``[heads, t, d]`` (heads a multiple of
        kv_heads: query head h reads k/v head h // (heads / kv_heads)) over the cache:
        ``[heads, t, d_v]``."""
        return self._cache.attend(_as_array(q, "q"))

    def reserve(self, tokens: int) -> None:
        """Reserves room for ``tokens`` more tokens (``MemoryError`` beyond the budget)."""
        self._cache.reserve(tokens)

    def __len__(self) -> int:
        return len(self._cache)

    @property
    def dtype(self) -> str:
        """``"float32"`` or ``"float64"``."""
        return self._cache.dtype
