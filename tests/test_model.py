"""The recursive network: shapes, noise modes, determinism, truncated gradients, losses."""

import pytest
import torch
from conftest import tiny_net

from gram_lightning import losses
from gram_lightning.model import GRAM, Gaussian


def _batch(B=4, L=16, vocab=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, vocab, (B, L), generator=g), torch.randint(2, vocab, (B, L), generator=g)


def _final(net, x, **kw):
    *_, out = net.rollout(x, **kw)
    return out


@pytest.mark.parametrize("core", ["attention", "mlp_t"])
@pytest.mark.parametrize("share", [True, False])
def test_shapes(core, share):
    net = tiny_net(core=core, share_weights=share)
    x, y = _batch()
    out = _final(net, x)
    assert out.logits.shape == (4, 16, 6)
    assert out.h.shape == out.l.shape == (4, net.total_len, 32) and net.total_len == 18
    assert out.halt_logits.shape == out.value.shape == (4,)
    assert ((out.value >= 0) & (out.value <= 1)).all()
    assert (net.f_L is net.f_H) == share


def test_output_length_differs_from_input():
    # graph coloring: n(n-1)/2 = 28 edge tokens in, n = 8 colors out
    net = tiny_net(seq_len=28, out_len=8, vocab_size=6)
    x, y = _batch(L=28)
    assert net.total_len == 2 + 28 + 8
    out = _final(net, x)
    assert out.logits.shape == (4, 8, 6)
    context = net.embed_target(y[:, :8])
    assert context.shape == (4, net.total_len, 32)
    assert context[:, : 2 + 28].abs().sum() == 0 and context[:, -8:].abs().sum() > 0
    step = net.supervision_step(*net.initial_state(4), net.embed_input(x), "posterior", context)
    assert step.noise.posterior.mean.shape == (4, net.total_len, 32)


def test_puzzle_embeddings_need_ids():
    net = tiny_net(num_puzzle_ids=5)
    x, _ = _batch()
    assert net.embed_input(x, torch.tensor([0, 1, 2, 4])).shape == (4, 18, 32)
    with pytest.raises(ValueError, match="puzzle_ids"):
        net.embed_input(x)


def test_z0_is_fixed_and_saved():
    net = tiny_net()
    state = net.state_dict()
    assert "h0" in state and "l0" in state
    assert torch.equal(tiny_net().h0, net.h0)  # drawn from its own seed, not the global RNG
    assert not torch.equal(tiny_net(z0_seed=1).h0, net.h0)


def test_deterministic_mode_is_bit_identical_across_runs():
    net = tiny_net(noise="none")
    x, _ = _batch()
    torch.manual_seed(0)
    a = _final(net, x)
    torch.manual_seed(123)
    b = _final(net, x)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.h, b.h)
    assert a.noise is None


def test_stochastic_mode_differs_across_seeds_and_repeats_within_one():
    net = tiny_net(noise="learned", init_sigma=0.5)
    x, _ = _batch()
    torch.manual_seed(0)
    a = _final(net, x)
    torch.manual_seed(1)
    b = _final(net, x)
    torch.manual_seed(0)
    c = _final(net, x)
    assert not torch.equal(a.h, b.h)
    assert torch.equal(a.h, c.h)


def test_mean_only_is_deterministic_but_guided():
    net = tiny_net(noise="mean_only")
    torch.nn.init.normal_(net.prior.out.weight, std=0.1)
    x, _ = _batch()
    torch.manual_seed(0)
    a = _final(net, x)
    torch.manual_seed(1)
    b = _final(net, x)
    assert torch.equal(a.h, b.h)
    assert a.noise.eps.abs().sum() > 0


def test_fixed_noise_has_requested_scale():
    net = tiny_net(noise="fixed", fixed_sigma=0.3)
    x, _ = _batch(B=64)
    out = _final(net, x)
    assert out.noise.prior is None and abs(out.noise.eps.std().item() - 0.3) < 0.02


def test_test_time_noise_on_deterministic_net():
    net = tiny_net(noise="none")
    x, _ = _batch()
    torch.manual_seed(0)
    a = _final(net, x, test_sigma=0.5)
    torch.manual_seed(1)
    b = _final(net, x, test_sigma=0.5)
    assert not torch.equal(a.h, b.h)


def test_prior_starts_at_init_sigma():
    net = tiny_net(init_sigma=0.25)
    x, _ = _batch()
    out = _final(net, x)
    torch.testing.assert_close(out.noise.prior.std, torch.full_like(out.noise.prior.std, 0.25))


@pytest.mark.parametrize("share", [True, False])
def test_gradients_reach_only_the_last_transition(share):
    net = tiny_net(T=3, K=2, share_weights=share)
    x, y = _batch()
    grad_calls = {"f_L": 0, "f_H": 0}

    def count(name):
        def hook(module, args, output):
            grad_calls[name] += torch.is_grad_enabled()
        return hook

    net.f_L.register_forward_hook(count("f_L"))
    if not share:
        net.f_H.register_forward_hook(count("f_H"))
    h0, l0 = (t.clone().requires_grad_(True) for t in net.initial_state(4))
    out = net.supervision_step(h0, l0, net.embed_input(x), "posterior", net.embed_target(y))
    # only the last of T=3 transitions runs with gradients: K=2 low-level calls and one high-level call
    if share:
        assert grad_calls["f_L"] == 2 + 1
    else:
        assert grad_calls == {"f_L": 2, "f_H": 1}
    loss = out.logits.float().pow(2).mean() + losses.gaussian_kl(out.noise.posterior, out.noise.prior).mean()
    grad_h0, grad_l0 = torch.autograd.grad(loss, [h0, l0], allow_unused=True)
    assert grad_h0 is None and grad_l0 is None  # the start state sits behind the no_grad transitions
    loss.backward()
    assert net.token_embed.weight.grad is not None and net.prior.out.weight.grad is not None


def test_one_transition_step_passes_gradient_to_its_start_state():
    net = tiny_net(T=1)
    x, _ = _batch()
    h0 = net.initial_state(4)[0].clone().requires_grad_(True)
    out = net.supervision_step(h0, net.initial_state(4)[1], net.embed_input(x))
    (grad,) = torch.autograd.grad(out.logits.sum(), [h0])
    assert grad.abs().sum() > 0


def test_halt_and_value_heads_do_not_train_the_core():
    net = tiny_net()
    x, _ = _batch()
    out = net.supervision_step(*net.initial_state(4), net.embed_input(x))
    (out.halt_logits.sum() + out.value.sum()).backward()
    assert net.halt_head.weight.grad is not None and net.value_head.weight.grad is not None
    assert all(p.grad is None for p in net.f_L.parameters())
    assert net.token_embed.weight.grad is None


def test_kl_is_nonnegative_and_zero_when_q_equals_p():
    g = torch.Generator().manual_seed(0)
    shape = (3, 5, 8)
    p = Gaussian(torch.randn(shape, generator=g), torch.rand(shape, generator=g) + 0.1)
    q = Gaussian(torch.randn(shape, generator=g), torch.rand(shape, generator=g) + 0.1)
    kl = losses.gaussian_kl(q, p)
    assert kl.shape == (3, 5) and (kl >= 0).all() and kl.sum() > 0
    torch.testing.assert_close(losses.gaussian_kl(p, p), torch.zeros(3, 5))
    # closed form, one dimension: KL(N(1, 1) || N(0, 1)) = 0.5
    one = Gaussian(torch.ones(1, 1, 1), torch.ones(1, 1, 1))
    zero = Gaussian(torch.zeros(1, 1, 1), torch.ones(1, 1, 1))
    torch.testing.assert_close(losses.gaussian_kl(one, zero), torch.tensor([[0.5]]))


def test_balanced_kl_has_kl_value_and_splits_the_gradient():
    shape = (2, 3, 4)
    mp = torch.zeros(shape, requires_grad=True)
    mq = torch.ones(shape, requires_grad=True)
    std = torch.ones(shape)
    value = losses.balanced_kl(Gaussian(mq, std), Gaussian(mp, std), balance=0.8)
    torch.testing.assert_close(value, losses.gaussian_kl(Gaussian(mq, std), Gaussian(mp, std)))
    value.sum().backward()
    # d/dmu of 0.5 (mq - mp)^2 is +-1 per element: 80% of it moves the prior, 20% the posterior
    torch.testing.assert_close(mp.grad, torch.full(shape, -0.8))
    torch.testing.assert_close(mq.grad, torch.full(shape, 0.2))


@pytest.mark.parametrize("kind", ["stablemax", "softmax"])
def test_cross_entropy_ignores_pad_and_is_small_when_confident(kind):
    labels = torch.tensor([[2, 3, 0]])
    logits = torch.full((1, 3, 5), -10.0)
    logits[0, 0, 2] = logits[0, 1, 3] = 50.0
    per_token = losses.token_cross_entropy(logits, labels, kind)
    assert per_token[0, 2] == 0 and per_token[0, :2].max() < 0.05
    wrong = losses.token_cross_entropy(logits, torch.tensor([[4, 4, 0]]), kind)
    assert wrong[0, :2].min() > 1.0


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="noise"):
        tiny_net(noise="gaussian")
    with pytest.raises(ValueError, match="core"):
        tiny_net(core="conv")
    with pytest.raises(ValueError, match="num_heads"):
        tiny_net(hidden_size=30, num_heads=4)
    with pytest.raises(ValueError, match="T must be"):
        tiny_net(T=0)
    with pytest.raises(ValueError, match="min_sigma < init_sigma < max_sigma"):
        GRAM(vocab_size=4, seq_len=4, init_sigma=0.0)


def test_learned_noise_stays_bounded():
    net = tiny_net(max_sigma=0.8, max_mu=0.5)
    torch.nn.init.normal_(net.prior.out.weight, std=100.0)  # push the raw outputs far out
    out = net.prior(torch.randn(2, 3, 32))
    assert out.std.max() <= 0.8 and out.std.min() >= 1e-3 and out.mean.abs().max() <= 0.5


def test_posterior_is_drawn_only_where_its_kl_is_paid():
    net = tiny_net(T=3)
    x, y = _batch()
    calls = []
    net.posterior.register_forward_hook(lambda *a: calls.append("q"))
    net.prior.register_forward_hook(lambda *a: calls.append("p"))
    out = net.supervision_step(*net.initial_state(4), net.embed_input(x), "posterior", net.embed_target(y))
    assert calls == ["p", "p", "p", "q"]  # two prior-only transitions, then prior and posterior for the KL
    assert out.noise.posterior is not None


def test_stablemax_gradient_is_finite_at_a_logit_of_one():
    logits = torch.tensor([[[1.0, 0.5, -2.0, 0.0]]], requires_grad=True)
    losses.token_cross_entropy(logits, torch.tensor([[2]])).sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_heads_judge_a_prior_draw_when_the_posterior_drives_the_step():
    net = tiny_net()
    x, y = _batch()
    h, l = net.initial_state(4)
    e, context = net.embed_input(x), net.embed_target(y)
    out = net.supervision_step(h, l, e, "posterior", context)
    assert out.judged_logits is not None and out.judged_logits.shape == out.logits.shape
    assert not torch.allclose(out.judged_logits, out.logits)  # a different eps: the prior's, not q's
    assert not out.judged_logits.requires_grad  # the heads' targets come from it, no gradient
    (out.halt_logits.sum() + out.value.sum()).backward()
    assert net.halt_head.weight.grad is not None and all(p.grad is None for p in net.f_L.parameters())
    assert net.supervision_step(h, l, e).judged_logits is None  # prior rollouts judge their own output


def test_looped_transformer_has_no_low_level():
    net = tiny_net(K=0, noise="none")
    x, _ = _batch()
    out = _final(net, x)
    assert out.logits.shape == (4, 16, 6)
    l0 = net.initial_state(4)[1]
    assert torch.equal(out.l, l0)  # l is never updated: f_H reads h + e_x
    with pytest.raises(ValueError, match="noise_on='l' needs a low level"):
        tiny_net(K=0, noise_on="l")


def test_noise_on_l_leaves_h_a_deterministic_function_of_l():
    net = tiny_net(noise="learned", noise_on="l", init_sigma=0.5)
    x, y = _batch()
    h, l = net.initial_state(4)
    e = net.embed_input(x)
    torch.manual_seed(0)
    h1, l1, noise = net.transition(h, l, e, "prior")
    assert noise is not None and noise.eps.shape == l1.shape
    assert torch.allclose(h1, net.f_H(h, l1), atol=1e-6)  # the residual went into l, f_H read the noisy l
    out = net.supervision_step(h, l, e, "posterior", net.embed_target(y))
    assert out.judged_logits is not None and out.noise.posterior is not None


def test_z0_noise_draws_a_new_start_per_trajectory():
    net = tiny_net(noise="none", z0_noise_sigma=0.5)
    h_a, l_a = net.initial_state(2)
    assert not torch.allclose(h_a[0], h_a[1]) and torch.equal(l_a[0], l_a[1])
    assert (h_a - net.h0).std().item() == pytest.approx(0.5, rel=0.2)
    x, _ = _batch(B=2)
    x = x[:1].expand(2, -1)
    out = _final(net, x)
    assert not torch.equal(out.logits[0], out.logits[1])  # same input, different trajectories


def test_posterior_rollout_can_continue_from_each_steps_prior_draw():
    net = tiny_net()
    inputs, labels = torch.ones(2, 16, dtype=torch.long), torch.full((2, 16), 2)
    for carry_prior_draw in (False, True):
        seen = []

        def step(h, l, *args, **kwargs):
            seen.append(h)
            return net.supervision_step(h, l, *args, **kwargs)

        outs = list(net.rollout(inputs, 2, labels=labels, step_fn=step, carry_prior_draw=carry_prior_draw))
        expected = outs[0].judged_h if carry_prior_draw else outs[0].h
        assert torch.equal(seen[1], expected)
    prior_outs = list(net.rollout(inputs, 2, carry_prior_draw=True))  # prior rollouts have no separate draw
    assert prior_outs[0].judged_h is None
