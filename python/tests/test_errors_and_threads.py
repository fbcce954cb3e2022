"""Bad input raises (ValueError with the engine's message, MemoryError for the budget) and never
crashes the interpreter; concurrent calls release the GIL and agree."""

import sys
import threading
import time

import numpy as np
import pytest

import polyattn


def arr(shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(dtype)


Q, K, V = arr((2, 9, 4), 1), arr((2, 9, 4), 2), arr((2, 9, 3), 3)
PHI = polyattn.SelfTensoredSketch(4, degree=4, sketch_dim=4)


def nan_at(x, index):
    x = x.copy()
    x[index] = np.nan
    return x


@pytest.mark.parametrize("call, needle", [
    (lambda: polyattn.attention(Q, arr((2, 9, 5)), V), "tensor k"),
    (lambda: polyattn.attention(Q, K, arr((2, 8, 3))), "tensor v"),
    (lambda: polyattn.attention(arr((9,)), K, V), "rank 2, 3 or 4"),
    (lambda: polyattn.attention(arr((1, 1, 1, 9, 4)), K, V), "rank 2, 3 or 4"),
    (lambda: polyattn.attention(Q.astype(np.float32), K, V), "k is float64 but q is float32"),
    (lambda: polyattn.attention(Q.astype(np.int64), K, V), "found int64"),
    (lambda: polyattn.attention(Q.astype(np.float16), K, V), "found float16"),
    (lambda: polyattn.attention(nan_at(Q, (1, 4, 2)), K, V), "q"),
    (lambda: polyattn.attention(Q, K, nan_at(V, (0, 0, 0)), norm="none"), "v"),
    (lambda: polyattn.attention(Q, K, V, kernel="bogus"), "expected \"poly\" or \"softmax\""),
    (lambda: polyattn.attention(Q, K, V, kernel="softmax", degree=3), "degree applies only"),
    (lambda: polyattn.attention(Q, K, V, degree=0), "degree"),
    (lambda: polyattn.attention(Q, K, V, norm="l2"), "invalid norm"),
    (lambda: polyattn.attention(Q, K, V, norm_bias=2.0), "norm_bias applies only"),
    (lambda: polyattn.attention(Q, K, V, scale=float("nan")), "scale"),
    (lambda: polyattn.attention(Q, K, V, threads=0), "threads"),
    (lambda: polyattn.attention(Q, K, V, threads=1_000_000), "threads"),
    (lambda: polyattn.attention(np.ones((1, 1)), np.array([[1.0], [-1.0]]),
                                np.array([[1.0], [2.0]]), degree=3),
     "ill-conditioned"),
    (lambda: polyattn.attention(Q, arr((2, 0, 4)), arr((2, 0, 3))), "k"),
    (lambda: polyattn.linear_attention(Q, K, V, feature_map=polyattn.ExactDegree2(5)),
     "input dimension"),
    (lambda: polyattn.linear_attention(Q, K, V, feature_map=PHI, block=0), "block"),
    (lambda: polyattn.linear_attention(Q, K, V, feature_map=PHI, local_exact=True),
     "causal"),
    (lambda: polyattn.linear_attention(Q, K, V, feature_map=polyattn.Favor(4), norm="none"),
     "Sum"),
    (lambda: polyattn.linear_attention(np.ones((1, 1)), np.array([[1.0], [-1.0]]),
                                       np.array([[1.0], [2.0]]),
                                       feature_map=polyattn.TensorSketch(1, degree=3)),
     "ill-conditioned"),
    (lambda: polyattn.PolySketch(4, degree=0), "degree"),
    (lambda: polyattn.PolySketch(4, scale="big"), "scale"),
    (lambda: polyattn.TensorSketch(4, sketch_dim=0), "size"),
    (lambda: polyattn.FeatureMap("gaussian", 4), "kind"),
    (lambda: PHI.map(arr((3, 5))), "[..., 4]"),
    (lambda: PHI.map(nan_at(arr((3, 4)), (2, 1))), "row 2"),
    (lambda: polyattn.DecodingState(PHI, 0), "d_v"),
    (lambda: polyattn.DecodingState(PHI, 3, dtype="int8"), "dtype"),
    (lambda: polyattn.DecodingState(PHI, 3).step(arr(4), arr(4), arr(3)),
     "float64 but the state is float32"),
    (lambda: polyattn.DecodingState(PHI, 3, dtype="float64").step(arr(4), arr(4), arr(2)),
     "[rows, 3]"),
    (lambda: polyattn.set_memory_budget(0), "max-memory"),
    (lambda: polyattn.warm_up(threads=0), "threads"),
    (lambda: polyattn.warm_up(threads=1_000_000), "threads"),
])
def test_bad_input_raises_value_error(call, needle):
    with pytest.raises(ValueError) as info:
        call()
    assert needle in str(info.value), str(info.value)


def test_sizes_beyond_the_budget_raise_memory_error_before_allocating():
    # 800 KB of input asking for a 40 GB output.
    q, k, v = np.ones((100_000, 1)), np.ones((1, 1)), np.ones((1, 100_000))
    with pytest.raises(MemoryError, match="attention output"):
        polyattn.attention(q, k, v)
    with pytest.raises(MemoryError):
        polyattn.SelfTensoredSketch(4, degree=4, sketch_dim=1_000_000_000)
    before = polyattn.memory_budget()
    try:
        polyattn.set_memory_budget(1 << 20)
        assert polyattn.memory_budget() == 1 << 20
        with pytest.raises(MemoryError, match="over the memory budget of 1048576 bytes"):
            polyattn.attention(arr((1, 2000, 4)), arr((1, 2000, 4)), arr((1, 2000, 200)))
    finally:
        polyattn.set_memory_budget(None)
    assert polyattn.memory_budget() == before


def test_warm_up_changes_no_result():
    q, k, v = (np.random.default_rng(s).standard_normal((2, 200, 16)).astype(np.float32)
               for s in (1, 2, 3))
    for kernel in ("poly", "softmax"):
        before = polyattn.attention(q, k, v, kernel=kernel, causal=True, threads=2)
        assert polyattn.warm_up() is None
        assert polyattn.warm_up(threads=2) is None
        after = polyattn.attention(q, k, v, kernel=kernel, causal=True, threads=2)
        np.testing.assert_array_equal(after, before)


def test_a_failed_decoding_step_leaves_the_state_unchanged():
    phi = polyattn.TensorSketch(1, degree=3, sketch_dim=8)
    state = polyattn.DecodingState(phi, 1, dtype="float64")
    state.prefill(np.array([[1.0]]), np.array([[1.0]]))
    with pytest.raises(ValueError, match="ill-conditioned"):
        state.step(np.array([1.0]), np.array([-1.0]), np.array([2.0]))
    assert len(state) == 1


def test_two_python_threads_compute_at_once_and_agree():
    q, k, v = (arr((4, 700, 32), s, np.float32) for s in range(3))
    want = polyattn.attention(q, k, v, causal=True, threads=1)
    results, errors = [None] * 4, []

    def work(i):
        try:
            results[i] = polyattn.attention(q, k, v, causal=True, threads=1)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for r in results:
        np.testing.assert_array_equal(r, want)


def test_the_gil_is_released_during_the_computation():
    # With a huge switch interval the interpreter never takes the GIL from a thread that holds
    # it, so the main thread can count during the worker's call only if the call released it.
    q, k, v = (arr((8, 3000, 32), s, np.float32) for s in range(3))
    ticks, seen = [0], {}

    def work():
        seen["before"] = ticks[0]
        polyattn.attention(q, k, v, threads=1)
        seen["after"] = ticks[0]

    interval = sys.getswitchinterval()
    sys.setswitchinterval(100.0)
    try:
        t = threading.Thread(target=work)
        t.start()
        while t.is_alive():
            ticks[0] += 1
            time.sleep(0)  # lets the worker take the GIL back when its call returns
        t.join()
    finally:
        sys.setswitchinterval(interval)
    assert seen["after"] > seen["before"]
