"""polyattn.attention_backward against central finite differences of polyattn.attention (f64)
and against float32, over masks, windows, grouped heads, normalizations and kernels."""

import numpy as np
import pytest

import polyattn


def draw(seed, shape, dtype=np.float64, low=-1.0, high=1.0):
    return np.random.default_rng(seed).uniform(low, high, shape).astype(dtype)


def numeric_gradients(q, k, v, g, **kw):
    """Central differences of sum(g * attention(q, k, v)) for every element of q, k and v."""
    arrays = [q.copy(), k.copy(), v.copy()]
    grads = []
    for a in arrays:
        grad = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            at = a[i]
            h = 1e-6 * max(1.0, abs(at))
            a[i] = at + h
            up = np.sum(g * polyattn.attention(*arrays, **kw))
            a[i] = at - h
            down = np.sum(g * polyattn.attention(*arrays, **kw))
            a[i] = at
            grad[i] = (up - down) / (2 * h)
        grads.append(grad)
    return grads


CASES = [
    dict(degree=4, causal=True),
    dict(degree=3, norm="one-plus-sum", norm_bias=0.5),
    dict(degree=2, norm="none", causal=True, window=2),
    dict(kernel="softmax", causal=True, layernorm=True),
    dict(kernel="softmax", norm="one-plus-sum", scale=0.5),
]


@pytest.mark.parametrize("kw", CASES)
def test_gradients_equal_finite_differences(kw):
    # Two query heads sharing one k/v head; n_q != n_k; d_v != d.
    q = draw(1, (2, 4, 3), low=0.1)
    k, v = draw(2, (1, 6, 3), low=0.1), draw(3, (1, 6, 2))
    g = draw(4, (2, 4, 2))
    analytic = polyattn.attention_backward(q, k, v, g, **kw)
    for a, n, name in zip(analytic, numeric_gradients(q, k, v, g, **kw), "qkv"):
        assert a.shape == n.shape and a.dtype == np.float64
        err = np.max(np.abs(a - n)) / np.max(np.abs(n))
        assert err < 1e-6, (name, kw, err)


def test_float32_agrees_with_float64_and_high_degrees_do_not_overflow():
    q, k, v, g = (draw(s, (3, 70, 8), low=0.1) for s in range(4))
    for kw in [dict(degree=64), dict(kernel="softmax", causal=True, window=9)]:
        want = polyattn.attention_backward(q, k, v, g, **kw)
        got = polyattn.attention_backward(*(x.astype(np.float32) for x in (q, k, v, g)), **kw)
        for a, b in zip(got, want):
            assert a.dtype == np.float32
            assert np.max(np.abs(a - b)) <= 1e-4 * np.max(np.abs(b)), kw


def test_bad_gradients_raise_value_errors():
    q, k, v = (draw(s, (2, 5, 4), np.float32) for s in range(3))
    with pytest.raises(ValueError, match="grad_out is float64 but q is float32"):
        polyattn.attention_backward(q, k, v, q.astype(np.float64))
    with pytest.raises(ValueError, match="n_q"):
        polyattn.attention_backward(q, k, v, q[:, :4])
    bad = q.copy()
    bad[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        polyattn.attention_backward(q, k, v, bad)
    with pytest.raises(ValueError, match="two layouts"):
        polyattn.attention_backward(q, k, v, q, seq_lens=[5], key_lens=[5])


def test_packed_and_padded_gradients():
    lengths = [2, 9, 5]
    n = sum(lengths)
    q, k, v, g = (draw(s, (2, n, 4), low=0.1) for s in range(4))
    dq, dk, dv = polyattn.attention_backward(q, k, v, g, causal=True, seq_lens=lengths)
    start = 0
    for length in lengths:
        rows = slice(start, start + length)
        alone = polyattn.attention_backward(q[:, rows], k[:, rows], v[:, rows], g[:, rows],
                                            causal=True)
        for mine, theirs in zip((dq, dk, dv), alone):
            np.testing.assert_allclose(mine[:, rows], theirs, rtol=1e-9, atol=1e-12)
        start += length
    qb, kb, vb, gb = (x[None] for x in (q, k, v, g))
    pq, pk, pv = polyattn.attention_backward(qb, kb, vb, gb, key_lens=[10])
    np.testing.assert_array_equal(pq[0, :, 10:], 0.0)
    np.testing.assert_array_equal(pk[0, :, 10:], 0.0)
    cut = polyattn.attention_backward(q[:, :10], k[:, :10], v[:, :10], g[:, :10])
    np.testing.assert_allclose(pv[0, :, :10], cut[2], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kw", [
    dict(feature_map="tensored", causal=True, block=3),
    dict(feature_map="tree", causal=True, block=3, local_exact=True, norm="none"),
    dict(feature_map="favor", layernorm=True, scale=0.5),
    dict(feature_map="tensorsketch", causal=True, block=4, norm="none"),
])
def test_linear_gradients_equal_finite_differences(kw):
    d = 3
    maps = {
        "tensored": polyattn.SelfTensoredSketch(d, degree=4, sketch_dim=3, seed=1),
        "tree": polyattn.PolySketch(d, degree=3, sketch_dim=5, seed=2),
        "favor": polyattn.Favor(d, sketch_dim=6, seed=3),
        "tensorsketch": polyattn.TensorSketch(d, degree=3, sketch_dim=8, seed=4),
    }
    kw = dict(kw, feature_map=maps[kw["feature_map"]])
    q = draw(1, (2, 7, d), low=0.1)
    k, v = draw(2, (1, 7, d), low=0.1), draw(3, (1, 7, 2))
    g = draw(4, (2, 7, 2))

    def f(q, k, v, **kw):
        return polyattn.linear_attention(q, k, v, **kw)

    analytic = polyattn.linear_attention_backward(q, k, v, g, **kw)
    arrays = [q.copy(), k.copy(), v.copy()]
    for a, analytic_grad, name in zip(arrays, analytic, "qkv"):
        numeric = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            at = a[i]
            h = 1e-6 * max(1.0, abs(at))
            a[i] = at + h
            up = np.sum(g * f(*arrays, **kw))
            a[i] = at - h
            down = np.sum(g * f(*arrays, **kw))
            a[i] = at
            numeric[i] = (up - down) / (2 * h)
        err = np.max(np.abs(analytic_grad - numeric)) / np.max(np.abs(numeric))
        assert err < 1e-6, (name, err)
