"""polyattn.attention and polyattn.linear_attention against numpy f64 references."""

import itertools

import numpy as np
import pytest

import polyattn
import reference as ref

TOL = {np.float32: 2e-4, np.float64: 1e-10}


def draw(seed, shape, dtype, low=-1.0, high=1.0):
    return np.random.default_rng(seed).uniform(low, high, shape).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("norm", ["sum", "one-plus-sum", "none"])
def test_polynomial_attention_matches_the_reference(dtype, causal, norm):
    # n_q ≠ n_k (causal: queries align with the last keys); odd n crosses tile edges.
    for degree, (n_q, n_k), scale, ln in [
        (1, (33, 70), None, False),
        (2, (65, 65), 0.5, False),
        (3, (1, 129), None, False),
        (4, (70, 70), None, True),
        (7, (17, 40), 2.0, False),
    ]:
        # Positive inputs keep odd-degree normalizers away from cancellation.
        q = draw(degree, (2, 3, n_q, 8), dtype, 0.1, 1.0)
        k = draw(degree + 10, (2, 3, n_k, 8), dtype, 0.1, 1.0)
        v = draw(degree + 20, (2, 3, n_k, 5), dtype)
        bias = 0.5 if norm == "one-plus-sum" else None
        got = polyattn.attention(q, k, v, degree=degree, causal=causal, norm=norm,
                                 norm_bias=bias, scale=scale, layernorm=ln)
        want = ref.attention(q, k, v, degree=degree, causal=causal, norm=norm,
                             bias=bias or 1.0, scale=scale, ln=ln)
        assert got.dtype == dtype and got.shape == want.shape
        assert ref.rel_err(got, want) < TOL[dtype], (degree, n_q, n_k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("causal", [False, True])
def test_softmax_matches_the_reference(dtype, causal):
    q, k, v = (draw(s, (3, 77, 16), dtype, -3, 3) for s in range(3))
    for norm, scale in [("sum", None), ("sum", 0.3), ("one-plus-sum", None), ("none", None)]:
        got = polyattn.attention(q, k, v, kernel="softmax", causal=causal, norm=norm,
                                 scale=scale)
        want = ref.attention(q, k, v, kernel="softmax", causal=causal, norm=norm, scale=scale)
        assert ref.rel_err(got, want) < TOL[dtype], norm


def test_ranks_follow_the_command_line_rules():
    q4 = draw(1, (2, 3, 10, 4), np.float64)
    v4 = draw(2, (2, 3, 10, 6), np.float64)
    assert polyattn.attention(q4, q4, v4).shape == (2, 3, 10, 6)
    assert polyattn.attention(q4[0], q4[0], v4[0]).shape == (3, 10, 6)
    two = polyattn.attention(q4[0, 0], q4[0, 0], v4[0, 0])
    assert two.shape == (10, 6)
    np.testing.assert_array_equal(two, polyattn.attention(q4, q4, v4)[0, 0])


def test_non_contiguous_and_array_likes_give_the_same_result():
    x = draw(3, (4, 12, 6), np.float64)
    strided = np.swapaxes(np.swapaxes(x, 0, 1).copy(), 0, 1)  # same values, F-like strides
    assert not strided.flags.c_contiguous
    base = polyattn.attention(x, x, x)
    np.testing.assert_array_equal(polyattn.attention(strided, strided, strided), base)
    np.testing.assert_array_equal(polyattn.attention(x.tolist(), x, x), base)
    assert polyattn._as_array(x, "x") is x  # C-contiguous arrays are passed through


def test_thread_counts_give_identical_bits():
    q, k, v = (draw(s, (2, 300, 16), np.float32) for s in range(3))
    one = polyattn.attention(q, k, v, causal=True, threads=1)
    for threads in (2, 3):
        np.testing.assert_array_equal(one, polyattn.attention(q, k, v, causal=True,
                                                              threads=threads))


MAPS = [
    lambda d: polyattn.SelfTensoredSketch(d, degree=4, sketch_dim=8, seed=1),
    lambda d: polyattn.PolySketch(d, degree=2, sketch_dim=16, seed=2),
    lambda d: polyattn.TensorSketch(d, degree=3, sketch_dim=16, seed=3),
    lambda d: polyattn.RandomMaclaurin(d, degree=2, sketch_dim=16, seed=4),
    lambda d: polyattn.Favor(d, sketch_dim=16, seed=5),
    lambda d: polyattn.ExactDegree2(d),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make", MAPS)
def test_linear_attention_is_the_masked_product_of_the_features(dtype, make):
    d = 6
    phi = make(d)
    q, k = draw(7, (2, 40, d), dtype), draw(8, (2, 40, d), dtype)
    v = draw(9, (2, 40, 3), dtype)
    # Signed weights cancel under sum (refused, tested below), so signed maps use none.
    norms = ["sum", "one-plus-sum"] if phi.nonnegative_weights else ["none"]
    if phi.kind == "favor":
        norms = ["sum"]
    for causal, block, norm in itertools.product([False, True], [1, 7, 256], norms):
        got = polyattn.linear_attention(q, k, v, feature_map=phi, causal=causal, block=block,
                                        norm=norm)
        want = ref.linear_attention(q, k, v, phi, causal=causal, norm=norm)
        assert ref.rel_err(got, want) < 10 * TOL[dtype], (phi, causal, block, norm)
    if phi.degree is not None:
        block = 7
        got = polyattn.linear_attention(q, k, v, feature_map=phi, causal=True, block=block,
                                        local_exact=True, norm=norms[0])
        want = ref.linear_attention(q, k, v, phi, causal=True, norm=norms[0], block=block,
                                    local_degree=phi.degree)
        assert ref.rel_err(got, want) < 10 * TOL[dtype], phi


def test_exact_degree2_features_are_exact_degree2_attention():
    q, k, v = (draw(s, (3, 50, 5), np.float64) for s in range(3))
    phi = polyattn.ExactDegree2(5)
    assert phi.feature_dim == 15
    for causal in (False, True):
        got = polyattn.linear_attention(q, k, v, feature_map=phi, causal=causal, block=16)
        want = polyattn.attention(q, k, v, degree=2, causal=causal)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_maps_apply_to_any_leading_shape_and_both_dtypes():
    phi = polyattn.SelfTensoredSketch(4, degree=4, sketch_dim=8, seed=3)
    x = draw(1, (2, 3, 5, 4), np.float64)
    f64 = phi.map(x)
    assert f64.shape == (2, 3, 5, 36) and phi.feature_dim == 36 and phi.input_dim == 4
    f32 = phi.map(x.astype(np.float32))
    assert f32.dtype == np.float32
    np.testing.assert_allclose(f32, f64, rtol=1e-3, atol=1e-4)
    # ⟨φ(x), φ(y)⟩ = ⟨M x, M y⟩² ≥ 0 for the self-tensored map.
    flat = f64.reshape(-1, 36)
    assert (flat @ flat.T >= -1e-12).all()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("local_exact", [False, True])
def test_decoding_matches_causal_linear_attention_at_every_position(dtype, local_exact):
    d, d_v, n, block = 5, 3, 23, 4
    phi = polyattn.SelfTensoredSketch(d, degree=2 * 2, sketch_dim=8, seed=9)
    q, k, v = (draw(s, (n, w), dtype) for s, w in [(1, d), (2, d), (3, d_v)])
    want = polyattn.linear_attention(q, k, v, feature_map=phi, causal=True, block=block,
                                     local_exact=local_exact, norm="one-plus-sum")
    state = polyattn.DecodingState(phi, d_v, norm="one-plus-sum", local_exact=local_exact,
                                   block=block, dtype=dtype)
    state.prefill(k[:5], v[:5])
    assert len(state) == 5 and state.dtype == dtype and state.feature_dim == 36
    for t in range(5, n):
        got = state.step(q[t], k[t], v[t])
        np.testing.assert_allclose(got, want[t], rtol=TOL[np.dtype(dtype).type] * 10,
                                   atol=TOL[np.dtype(dtype).type])
    assert len(state) == n


@pytest.mark.parametrize("kernel", ["poly", "softmax"])
def test_grouped_key_value_heads_equal_repeated_ones(kernel):
    q = draw(1, (2, 6, 33, 8), np.float32)
    k, v = draw(2, (2, 2, 40, 8), np.float32), draw(3, (2, 2, 40, 5), np.float32)
    grouped = polyattn.attention(q, k, v, kernel=kernel, causal=True)
    repeated = polyattn.attention(q, np.repeat(k, 3, axis=1), np.repeat(v, 3, axis=1),
                                  kernel=kernel, causal=True)
    np.testing.assert_array_equal(grouped, repeated)
    phi = polyattn.SelfTensoredSketch(8, degree=4, sketch_dim=8)
    lin = polyattn.linear_attention(q[:, :, :40], k, v, feature_map=phi)
    lin_rep = polyattn.linear_attention(q[:, :, :40], np.repeat(k, 3, axis=1),
                                        np.repeat(v, 3, axis=1), feature_map=phi)
    np.testing.assert_array_equal(lin, lin_rep)
    with pytest.raises(ValueError, match="do not divide"):
        polyattn.attention(q, k[:, :1].repeat(4, axis=1), v[:, :1].repeat(4, axis=1))


@pytest.mark.parametrize("causal", [False, True])
def test_window_equals_the_dense_band(causal):
    q, k, v = (draw(s, (2, 45, 6), np.float64, 0.1, 1.0) for s in range(3))
    w = 6
    at = np.arange(45)[:, None]
    j = np.arange(45)[None, :]
    band = (j <= at) & (j > at - w) if causal else np.abs(at - j) < w
    weights = np.where(band, (q @ np.swapaxes(k, -1, -2)) ** 3, 0.0)
    want = (weights @ v) / weights.sum(-1, keepdims=True)
    got = polyattn.attention(q, k, v, degree=3, causal=causal, window=w)
    np.testing.assert_allclose(got, want, rtol=1e-10)
    with pytest.raises(ValueError, match="window"):
        polyattn.attention(q, k, v, window=0)


def test_packed_sequences_attend_only_within_themselves():
    lengths = [5, 1, 70, 12]
    n = sum(lengths)
    q, k, v = (draw(s, (2, n, 6), np.float64, 0.1, 1.0) for s in range(3))
    got = polyattn.attention(q, k, v, causal=True, seq_lens=lengths)
    start = 0
    for length in lengths:
        rows = slice(start, start + length)
        alone = polyattn.attention(q[:, rows], k[:, rows], v[:, rows], causal=True)
        np.testing.assert_allclose(got[:, rows], alone, rtol=1e-10)
        start += length
    with pytest.raises(ValueError, match="sequence lengths"):
        polyattn.attention(q, k, v, seq_lens=[n - 1])
    with pytest.raises(ValueError, match="length 0"):
        polyattn.attention(q, k, v, seq_lens=[n, 0])


def test_packed_sequences_in_linear_attention_restart_the_state():
    lengths = [3, 30, 9]
    n = sum(lengths)
    q, k, v = (draw(s, (2, n, 6), np.float32) for s in range(3))
    phi = polyattn.SelfTensoredSketch(6, degree=4, sketch_dim=8, seed=4)
    got = polyattn.linear_attention(q, k, v, feature_map=phi, causal=True, block=4,
                                    seq_lens=lengths)
    start = 0
    for length in lengths:
        rows = slice(start, start + length)
        alone = polyattn.linear_attention(q[:, rows], k[:, rows], v[:, rows], feature_map=phi,
                                          causal=True, block=4)
        np.testing.assert_array_equal(got[:, rows], alone)
        start += length


@pytest.mark.parametrize("causal", [False, True])
def test_padded_keys_are_never_seen(causal):
    q, k, v = (draw(s, (3, 2, 40, 6), np.float64, 0.1, 1.0) for s in range(3))
    lengths = [40, 1, 17]
    got = polyattn.attention(q, k, v, causal=causal, key_lens=lengths)
    for b, length in enumerate(lengths):
        alone = polyattn.attention(q[b, :, :length], k[b, :, :length], v[b, :, :length],
                                   causal=causal)
        np.testing.assert_allclose(got[b, :, :length], alone, rtol=1e-10)
        # Padding query rows output 0, also where a window leaves them no key at all.
        np.testing.assert_array_equal(got[b, :, length:], 0.0)
    windowed = polyattn.attention(q, k, v, causal=causal, key_lens=lengths, window=2)
    np.testing.assert_array_equal(windowed[1, :, 1:], 0.0)
    with pytest.raises(ValueError, match="key lengths"):
        polyattn.attention(q, k, v, key_lens=[40, 0, 1])
    with pytest.raises(ValueError, match="one"):
        polyattn.attention(q, k, v, key_lens=lengths, seq_lens=[40])
