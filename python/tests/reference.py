"""Plain numpy f64 references the tests compare the package with."""

import numpy as np


def lift(x):
    """[n, d] → [1, 1, n, d], [h, n, d] → [1, h, n, d] (the package's shape rules)."""
    x = np.asarray(x, dtype=np.float64)
    while x.ndim < 4:
        x = x[None]
    return x


def layernorm(x, eps=1e-5):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps)


def visible(n_q, n_k, causal):
    """The dense mask: query i sees key j ≤ i + n_k − n_q when causal."""
    if not causal:
        return np.ones((n_q, n_k), dtype=bool)
    i = np.arange(n_q)[:, None]
    j = np.arange(n_k)[None, :]
    return j <= i + (n_k - n_q)


def normalize(weights, values, norm, bias):
    num = weights @ values
    if norm == "none":
        return num
    den = weights.sum(axis=-1, keepdims=True)
    if norm == "one-plus-sum":
        den = den + bias
    return num / den


def attention(q, k, v, kernel="poly", degree=4, causal=False, norm="sum", bias=1.0,
              scale=None, ln=False):
    """Exact attention in f64, in q's rank."""
    rank = np.ndim(q)
    q, k, v = lift(q), lift(k), lift(v)
    if ln:
        q, k = layernorm(q), layernorm(k)
    d = q.shape[-1]
    if scale is None:
        scale = 1.0 / np.sqrt(d) if kernel == "softmax" else 1.0
    s = scale * q @ np.swapaxes(k, -1, -2)
    mask = visible(q.shape[-2], k.shape[-2], causal)
    if kernel == "softmax":
        # Unshifted: one-plus-sum and none are not shift-invariant (the tests keep s small).
        w = np.where(mask, np.exp(np.where(mask, s, 0.0)), 0.0)
    else:
        w = np.where(mask, s**degree, 0.0)
    out = normalize(w, v, norm, bias)
    return out.reshape(out.shape[4 - rank:])


def linear_attention(q, k, v, phi, causal=False, norm="sum", bias=1.0, block=None,
                     local_degree=None):
    """Sketched attention as the dense masked product of the map's own features, in f64; with
    ``local_degree``, exact (q·k)^p weights inside diagonal blocks of ``block`` rows."""
    rank = np.ndim(q)
    q, k, v = lift(q), lift(k), lift(v)
    a = phi.map(np.ascontiguousarray(q)).astype(np.float64)
    b = phi.map(np.ascontiguousarray(k)).astype(np.float64)
    w = a @ np.swapaxes(b, -1, -2)
    n_q, n_k = q.shape[-2], k.shape[-2]
    if local_degree is not None:
        rows = np.arange(n_q)[:, None] // block
        cols = np.arange(n_k)[None, :] // block
        exact = (q @ np.swapaxes(k, -1, -2)) ** local_degree
        w = np.where(rows == cols, exact, w)
    w = np.where(visible(n_q, n_k, causal), w, 0.0)
    out = normalize(w, v, norm, bias)
    return out.reshape(out.shape[4 - rank:])


def rel_err(got, want):
    return float(np.max(np.abs(np.asarray(got, np.float64) - want)) / max(np.max(np.abs(want)), 1e-300))
