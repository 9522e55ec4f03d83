import numpy as np
import pytest

from harness.engine.optimizers import SGD, Adagrad, Adam, RMSprop


def _arrays(n=6, seed=0):
    """A one-model stack: (1, n) parameters and gradients."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(1, n)), [rng.normal(size=(1, n)) for _ in range(3)]


def test_sgd_momentum_matches_formula():
    p0, grads = _arrays()
    opt, p = SGD(p0.shape, p0.dtype, momentum=0.9), p0.copy()
    v, expected = np.zeros_like(p0), p0.copy()
    for g in grads:
        opt.step(p, g.copy(), 0.1)
        v = 0.9 * v - 0.1 * g
        expected = expected + v
    np.testing.assert_allclose(p, expected, rtol=0, atol=1e-15)


def test_nesterov_matches_formula():
    p0, grads = _arrays()
    opt, p = SGD(p0.shape, p0.dtype, momentum=0.8, nesterov=True), p0.copy()
    v, expected = np.zeros_like(p0), p0.copy()
    for g in grads:
        opt.step(p, g.copy(), 0.05)
        v = 0.8 * v - 0.05 * g
        expected = expected + 0.8 * v - 0.05 * g
    np.testing.assert_allclose(p, expected, rtol=0, atol=1e-15)


def test_models_of_a_stack_take_their_own_settings():
    p0, grads = _arrays()
    both = np.vstack([p0, p0])
    opt = SGD(both.shape, both.dtype, momentum=[0.0, 0.9])
    for g in grads:
        opt.step(both, np.vstack([g, g]), np.array([[0.1], [0.01]]))
    alone = [p0.copy(), p0.copy()]
    for row, (m, lr) in enumerate([(0.0, 0.1), (0.9, 0.01)]):
        single = SGD(p0.shape, p0.dtype, momentum=m)
        for g in grads:
            single.step(alone[row], g.copy(), lr)
        assert np.array_equal(both[row : row + 1], alone[row])


def test_nesterov_with_zero_momentum_is_plain_sgd_bit_for_bit():
    p0, grads = _arrays(50)
    plain, nesterov = p0.copy(), p0.copy()
    a = SGD(p0.shape, p0.dtype, momentum=0.0)
    b = SGD(p0.shape, p0.dtype, momentum=0.0, nesterov=True)
    for g in grads:
        a.step(plain, g.copy(), 0.3)
        b.step(nesterov, g.copy(), 0.3)
        assert np.array_equal(plain, nesterov)
    np.testing.assert_allclose(plain, p0 - 0.3 * sum(grads), atol=1e-14)


def test_weight_decay_applies_to_weights_only():
    params = np.ones((1, 4))
    mask = np.array([[1.0, 1.0, 0.0, 0.0]])
    opt = SGD(params.shape, params.dtype, weight_decay=[0.5], decay_mask=mask)
    opt.step(params, np.zeros((1, 4)), 0.1)
    np.testing.assert_allclose(params, [[0.95, 0.95, 1.0, 1.0]])


def test_adam_matches_formula():
    p0, grads = _arrays()
    opt, p = Adam(p0.shape, p0.dtype, beta1=0.9, beta2=0.99, eps=1e-8), p0.copy()
    m = v = np.zeros_like(p0)
    expected = p0.copy()
    for t, g in enumerate(grads, start=1):
        opt.step(p, g.copy(), 0.01)
        m = 0.9 * m + 0.1 * g
        v = 0.99 * v + 0.01 * g * g
        lr_t = 0.01 * np.sqrt(1 - 0.99**t) / (1 - 0.9**t)
        expected = expected - lr_t * m / (np.sqrt(v) + 1e-8)
    np.testing.assert_allclose(p, expected, rtol=1e-13)


def test_rmsprop_matches_formula():
    p0, grads = _arrays()
    opt, p = RMSprop(p0.shape, p0.dtype, rho=0.9, eps=1e-8), p0.copy()
    s, expected = np.zeros_like(p0), p0.copy()
    for g in grads:
        opt.step(p, g.copy(), 0.01)
        s = 0.9 * s + 0.1 * g * g
        expected = expected - 0.01 * g / (np.sqrt(s) + 1e-8)
    np.testing.assert_allclose(p, expected, rtol=1e-13)


def test_adagrad_matches_formula():
    p0, grads = _arrays()
    opt, p = Adagrad(p0.shape, p0.dtype, eps=1e-8), p0.copy()
    s, expected = np.zeros_like(p0), p0.copy()
    for g in grads:
        opt.step(p, g.copy(), 0.1)
        s = s + g * g
        expected = expected - 0.1 * g / (np.sqrt(s) + 1e-8)
    np.testing.assert_allclose(p, expected, rtol=1e-13)


@pytest.mark.parametrize("cls", [SGD, Adam, RMSprop, Adagrad])
def test_float32_stays_float32(cls):
    p = np.ones((1, 3), dtype=np.float32)
    cls(p.shape, np.float32).step(p, np.full((1, 3), 0.5, dtype=np.float32), np.float32(0.1))
    assert p.dtype == np.float32
