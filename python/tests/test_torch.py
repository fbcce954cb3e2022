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


@pytest.mark.parametrize("kw", [
    dict(degree=4, causal=True),
    dict(degree=3, norm="one-plus-sum", window=3),
    dict(kernel="softmax", layernorm=True, causal=True),
])
def test_autograd_function_passes_gradcheck(kw):
    import polyattn.torch as pt

    g = torch.Generator().manual_seed(2)
    q = (torch.rand(2, 5, 3, generator=g, dtype=torch.float64) + 0.1).requires_grad_()
    k = (torch.rand(1, 7, 3, generator=g, dtype=torch.float64) + 0.1).requires_grad_()
    v = torch.randn(1, 7, 2, generator=g, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda q, k, v: pt.attention(q, k, v, **kw), (q, k, v))


def test_autograd_gradients_equal_torch_own_softmax_attention():
    import polyattn.torch as pt

    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 3, 65, 16, generator=g, requires_grad=True) for _ in range(3))
    ours = pt.attention(q, k, v, kernel="softmax", causal=True)
    (ours * ours).sum().backward()
    mine = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    theirs = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    (theirs * theirs).sum().backward()
    for a, t in zip(mine, (q, k, v)):
        torch.testing.assert_close(a, t.grad, rtol=1e-4, atol=1e-5)


def test_linear_autograd_function_passes_gradcheck():
    import polyattn.torch as pt

    phi = polyattn.SelfTensoredSketch(3, degree=4, sketch_dim=3, seed=4)
    g = torch.Generator().manual_seed(5)
    q = (torch.rand(2, 6, 3, generator=g, dtype=torch.float64) + 0.1).requires_grad_()
    k = (torch.rand(2, 6, 3, generator=g, dtype=torch.float64) + 0.1).requires_grad_()
    v = torch.randn(2, 6, 2, generator=g, dtype=torch.float64).requires_grad_()
    fn = lambda q, k, v: pt.linear_attention(q, k, v, feature_map=phi, causal=True, block=4)
    assert torch.autograd.gradcheck(fn, (q, k, v))
