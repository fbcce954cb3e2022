"""Decoding from Python: the exact KvCache and the sketched DecodingState reproduce the engines
at every position, with grouped heads, windows and packed sequences."""

import numpy as np
import pytest

import polyattn


def draw(seed, shape, dtype=np.float64, low=-1.0, high=1.0):
    return np.random.default_rng(seed).uniform(low, high, shape).astype(dtype)


@pytest.mark.parametrize("kernel,window", [("poly", None), ("poly", 7), ("softmax", None)])
def test_kv_cache_equals_causal_attention_at_every_position(kernel, window):
    heads, kv_heads, n, d, d_v = 6, 2, 40, 8, 5
    q = draw(1, (heads, n, d), low=0.1)
    k, v = draw(2, (kv_heads, n, d), low=0.1), draw(3, (kv_heads, n, d_v))
    want = polyattn.attention(q, k, v, kernel=kernel, causal=True, window=window)
    cache = polyattn.KvCache(kv_heads, d, d_v, kernel=kernel, window=window, dtype="float64")
    cache.reserve(n)
    prompt = 11
    cache.append(k[:, :prompt], v[:, :prompt])
    # The prompt's last three queries at once, then one token at a time.
    np.testing.assert_allclose(cache.attend(q[:, prompt - 3:prompt]),
                               want[:, prompt - 3:prompt], rtol=1e-10, atol=1e-12)
    for t in range(prompt, n):
        cache.append(k[:, t:t + 1], v[:, t:t + 1])
        got = cache.attend(q[:, t:t + 1])
        assert got.shape == (heads, 1, d_v)
        np.testing.assert_allclose(got[:, 0], want[:, t], rtol=1e-10, atol=1e-12)
    assert len(cache) == n and cache.dtype == "float64"


def test_kv_cache_refuses_bad_tokens_and_keeps_its_state():
    cache = polyattn.KvCache(2, 4, 3)
    k, v = draw(1, (2, 5, 4), np.float32), draw(2, (2, 5, 3), np.float32)
    cache.append(k, v)
    bad = k.copy()
    bad[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        cache.append(bad, v)
    assert len(cache) == 5
    with pytest.raises(ValueError, match=r"shape \[2, t, 4\]"):
        cache.append(k[:1], v[:1])
    with pytest.raises(ValueError, match="tokens"):
        cache.append(k, v[:, :4])
    with pytest.raises(ValueError, match="float64 but the cache is float32"):
        cache.append(k.astype(np.float64), v.astype(np.float64))
    with pytest.raises(ValueError, match="multiple of 2"):
        cache.attend(draw(3, (3, 1, 4), np.float32))
    with pytest.raises(ValueError, match="queries over 5 cached tokens"):
        cache.attend(draw(3, (2, 6, 4), np.float32))
    with pytest.raises(ValueError, match="kernel"):
        polyattn.KvCache(1, 4, 3, kernel="polysketch")


def test_grouped_decoding_with_resets_equals_packed_linear_attention():
    heads, kv_heads, d, d_v = 4, 2, 5, 3
    g = heads // kv_heads
    lengths = [2, 13, 6]
    n = sum(lengths)
    q = draw(4, (heads, n, d))
    k, v = draw(5, (kv_heads, n, d)), draw(6, (kv_heads, n, d_v))
    phi = polyattn.SelfTensoredSketch(d, degree=4, sketch_dim=8, seed=2)
    want = polyattn.linear_attention(q, k, v, feature_map=phi, causal=True, block=4,
                                     seq_lens=lengths)
    for kv in range(kv_heads):
        state = polyattn.DecodingState(phi, d_v, block=4, dtype="float64")
        start = 0
        for length in lengths:
            state.reset()
            for t in range(start, start + length):
                got = state.step(q[kv * g:(kv + 1) * g, t], k[kv, t], v[kv, t])
                assert got.shape == (g, d_v)
                np.testing.assert_allclose(got, want[kv * g:(kv + 1) * g, t], rtol=1e-9,
                                           atol=1e-12)
            assert len(state) == length
            start += length
