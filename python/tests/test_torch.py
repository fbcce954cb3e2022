"""Against PyTorch, where it is installed (torch is optional: these tests need it)."""

import numpy as np
import pytest

import polyattn

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_softmax_equals_scaled_dot_product_attention(causal, dtype):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 257, 32, generator=g, dtype=dtype) for _ in range(3))
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
    got = polyattn.attention(q, k, v, kernel="softmax", causal=causal)
    tol = 2e-5 if dtype == torch.float32 else 1e-12
    np.testing.assert_allclose(got, want.numpy(), rtol=tol, atol=tol)


def test_polynomial_equals_the_hand_written_torch_version():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(3, 100, 16, generator=g, dtype=torch.float64) for _ in range(3))
    w = torch.tril((q @ k.transpose(-1, -2)) ** 4)
    want = (w @ v) / w.sum(-1, keepdim=True)
    got = polyattn.attention(q, k, v, degree=4, causal=True)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-10)


def test_cpu_tensors_are_read_without_copying():
    t = torch.randn(4, 8, 16)
    a = polyattn._as_array(t, "q")
    assert np.shares_memory(a, t.numpy())
    # A non-contiguous tensor is copied once; a tensor that requires grad is refused clearly.
    assert polyattn._as_array(t.transpose(1, 2), "q").flags.c_contiguous
    with pytest.raises(ValueError, match="q"):
        polyattn.attention(t.requires_grad_(), t, t)
