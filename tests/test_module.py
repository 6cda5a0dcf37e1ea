"""The LightningModule: ACT carry, precision, compile, argument checks."""

import lightning as L
import pytest
import torch
from conftest import TINY_TRAINER, RandomBoards, tiny_net

from gram_lightning.act import halt_decision
from gram_lightning.model import StepOutput
from gram_lightning.errors import GramUserError
from gram_lightning.module import GRAMModule
from gram_lightning.task import Task




def _fit(module, **trainer_kwargs):
    trainer = L.Trainer(**{**TINY_TRAINER, "max_steps": 3, "val_check_interval": 3, "limit_val_batches": 1, **trainer_kwargs})
    trainer.fit(module, RandomBoards())
    return trainer


def test_act_replaces_only_halted_rows():
    module = GRAMModule(tiny_net(N_sup=3), act=False)
    first = {"inputs": torch.full((4, 16), 1), "labels": torch.full((4, 16), 2)}
    second = {"inputs": torch.full((4, 16), 3), "labels": torch.full((4, 16), 4)}
    carry = module._refresh_carry(first)
    assert torch.equal(carry.batch["inputs"], first["inputs"]) and carry.steps.tolist() == [0] * 4
    carry.h = carry.h + 1.0
    carry.steps = torch.tensor([3, 1, 3, 1])
    carry.halted = torch.tensor([True, False, True, False])
    carry = module._refresh_carry(second)
    assert carry.batch["inputs"][:, 0].tolist() == [3, 1, 3, 1]  # halted rows take the new examples
    assert carry.steps.tolist() == [0, 1, 0, 1]
    h0 = module.net.h0
    assert torch.equal(carry.h[0], h0) and torch.equal(carry.h[1], h0 + 1.0)  # fresh rows restart from z0


def test_examples_count_the_rows_refilled_not_the_steps():
    # Without ACT each row keeps its example for N_sup = 3 steps: 7 steps of 8 rows draw 8 x ceil(7 / 3) examples.
    module = GRAMModule(tiny_net(N_sup=3), act=False, warmup_steps=1)
    trainer = _fit(module, max_steps=7, val_check_interval=None, limit_val_batches=0, log_every_n_steps=1)
    assert int(module.examples_seen) == 24 and trainer.callback_metrics["train/examples"] == 24


def test_halting_without_act_is_the_step_limit():
    logits = torch.tensor([10.0, 10.0, -10.0])
    assert halt_decision(logits, torch.tensor([1, 3, 3]), 3, act=False, exploration_prob=0.1).tolist() == [False, True, True]
    assert halt_decision(logits, torch.tensor([1, 1, 1]), 3, act=True, exploration_prob=0.0).tolist() == [True, True, False]


@pytest.mark.parametrize("noise", ["learned", "none", "fixed", "mean_only"])
def test_every_noise_mode_trains_and_evaluates(noise):
    module = GRAMModule(tiny_net(noise=noise), warmup_steps=1, num_samples=3)
    trainer = _fit(module)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert ("val/exact_acc_posterior" in trainer.callback_metrics) == (noise in ("learned", "mean_only"))
    results = trainer.test(module, RandomBoards(), verbose=False)[0]
    assert 0 <= results["test/exact_acc"] <= results["test/pass_at_n"] <= 1


def test_bf16_mixed_precision_trains():
    trainer = _fit(GRAMModule(tiny_net(), warmup_steps=1), precision="bf16-mixed")
    assert torch.isfinite(trainer.callback_metrics["train/loss"])


@pytest.mark.slow
def test_compiled_step_trains_and_keeps_checkpoint_keys(tmp_path):
    module = GRAMModule(tiny_net(), warmup_steps=1, compile=True)
    trainer = _fit(module, enable_checkpointing=True, default_root_dir=tmp_path)
    assert torch.isfinite(trainer.callback_metrics["train/loss"]) and module._compiled_step is not None
    ckpt = torch.load(trainer.checkpoint_callback.last_model_path or trainer.checkpoint_callback.best_model_path, weights_only=True)
    assert not any("_orig_mod" in key for key in ckpt["state_dict"])


def test_bad_inference_arguments_are_named():
    with pytest.raises(ValueError, match="selection"):
        GRAMModule(tiny_net(), selection="best")
    with pytest.raises(ValueError, match="num_samples"):
        GRAMModule(tiny_net(), num_samples=0)
    with pytest.raises(ValueError, match="PTRM"):
        GRAMModule(tiny_net(noise="learned"), test_noise_sigma=0.1)


def test_halting_at_inference_stops_each_trajectory():
    module = GRAMModule(tiny_net(N_sup=4), halt_at_inference=True).eval()
    batch = {"inputs": torch.ones(2, 16, dtype=torch.long), "labels": torch.full((2, 16), 2)}
    assert module.sample(batch, num_samples=3).steps.tolist() == [[4] * 3] * 2  # halt head starts at -5: never fires
    torch.nn.init.constant_(module.net.halt_head.bias, 5.0)
    samples = module.sample(batch, num_samples=3)
    assert samples.steps.tolist() == [[1] * 3] * 2 and samples.preds.shape == (2, 3, 16)


@pytest.mark.parametrize("halt_at_inference", [False, True])
def test_readouts_carry_the_logits_their_tokens_are_the_argmax_of(halt_at_inference):
    module = GRAMModule(tiny_net(N_sup=3), halt_at_inference=halt_at_inference).eval()
    torch.nn.init.constant_(module.net.halt_head.bias, 5.0 if halt_at_inference else -5.0)
    readouts = list(module.generate(torch.ones(2, 16, dtype=torch.long), [1, 3], keys=None))
    assert [depth for depth, _ in readouts] == [1, 3]
    for _, out in readouts:
        assert out.logits.shape[:2] == (2, 16) and torch.equal(out.logits.argmax(-1), out.preds)
    if halt_at_inference:  # every row halted after step 1: the deeper reading keeps step 1's logits
        assert torch.equal(readouts[0][1].logits, readouts[1][1].logits)


def test_head_targets_count_a_valid_non_label_answer_as_right():
    module = GRAMModule(tiny_net(noise="none"))
    labels = torch.full((2, 16), 2)
    logits = torch.nn.functional.one_hot(torch.tensor([[3] * 16, [4] * 16]), 6).float() * 10
    out = StepOutput(None, None, logits, torch.zeros(2), torch.full((2,), 0.2), None)
    # Without a checker only the label is right; a checker that accepts token 3 everywhere makes row 0 right.
    assert _loss_terms(module, out, labels, labels)["value_loss"] == pytest.approx(0.2**2)

    class ThreesTask(Task):
        def check(self, inputs, outputs):
            return (outputs == 3).all(-1)

    module.attach_task(ThreesTask())
    assert _loss_terms(module, out, labels, labels)["value_loss"] == pytest.approx((0.8**2 + 0.2**2) / 2)


def _loss_terms(module, out, inputs, labels):
    return module.elbo.terms(out, inputs, labels, module.global_step, module.task)


def test_prior_draw_reconstruction_trains_the_core_not_the_prior():
    net = tiny_net()
    module = GRAMModule(net, prior_ce_weight=1.0)
    batch = {"inputs": torch.ones(4, 16, dtype=torch.long), "labels": torch.full((4, 16), 2)}
    out = net.supervision_step(*net.initial_state(4), net.embed_input(batch["inputs"]), "posterior",
                               net.embed_target(batch["labels"]), prior_draw_grad=True)
    terms = _loss_terms(module, out, batch["inputs"], batch["labels"])
    assert terms["ce_prior_draw"] > 0
    terms["ce_prior_draw"].backward()
    assert net.decoder.weight.grad.abs().sum() > 0 and any(p.grad is not None for p in net.f_H.parameters())
    assert all(p.grad is None for p in net.prior.parameters())  # the draw is detached: the prior learns from the KL
    # Off (the default), the prior draw only feeds the heads and carries no graph.
    out = net.supervision_step(*net.initial_state(4), net.embed_input(batch["inputs"]), "posterior", net.embed_target(batch["labels"]))
    assert not out.judged_logits.requires_grad
    assert "ce_prior_draw" not in _loss_terms(GRAMModule(tiny_net()), out, batch["inputs"], batch["labels"])


def test_prior_draw_reconstruction_trains_and_needs_a_learned_prior():
    trainer = _fit(GRAMModule(tiny_net(), warmup_steps=1, prior_ce_weight=0.5))
    assert torch.isfinite(trainer.callback_metrics["train/ce_prior_draw"])
    with pytest.raises(ValueError, match="prior_ce_weight"):
        GRAMModule(tiny_net(noise="none"), prior_ce_weight=0.5)


@pytest.mark.filterwarnings("ignore:You are trying to .self.log")  # a training_step called without a Trainer
@pytest.mark.parametrize("noise_on", ["h", "l"])
def test_prior_draw_carry_continues_from_the_state_the_heads_judged(noise_on):
    batch = {"inputs": torch.ones(4, 16, dtype=torch.long), "labels": torch.full((4, 16), 2)}
    carried = {}
    for carry in ("posterior", "prior_draw"):
        module = GRAMModule(tiny_net(noise_on=noise_on), act=False, carry=carry)
        outputs = []
        module.net.supervision_step = _recording(module.net.supervision_step, outputs)
        torch.manual_seed(0)
        module.training_step(batch, 0)
        out = outputs[0]
        expected = (out.judged_h, out.judged_l) if carry == "prior_draw" else (out.h, out.l)
        assert torch.equal(module.carry.h, expected[0]) and torch.equal(module.carry.l, expected[1])
        carried[carry] = module.carry.h
    # Same seed, same step: the two carries differ only in which eps the transition ended with.
    assert not torch.allclose(carried["posterior"], carried["prior_draw"])


def _recording(step, outputs):
    def wrapped(*args, **kwargs):
        outputs.append(step(*args, **kwargs))
        return outputs[-1]
    return wrapped


def test_prior_draw_carry_trains_and_needs_a_learned_prior():
    trainer = _fit(GRAMModule(tiny_net(), warmup_steps=1, carry="prior_draw"))
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    with pytest.raises(ValueError, match="carry='prior_draw' needs a learned prior"):
        GRAMModule(tiny_net(noise="none"), carry="prior_draw")
    with pytest.raises(ValueError, match="carry must be"):
        GRAMModule(tiny_net(), carry="prior")


def test_beta_schedule_is_geometric_from_beta_start_to_beta():
    module = GRAMModule(tiny_net(), beta=1.0, beta_start=16.0, beta_anneal_steps=100)
    assert [module.elbo.kl_weight(s) for s in (0, 50, 100, 1000)] == pytest.approx([16.0, 4.0, 1.0, 1.0])
    assert GRAMModule(tiny_net(), beta=0.5).elbo.kl_weight(0) == 0.5  # no beta_start: constant
    trainer = _fit(GRAMModule(tiny_net(), warmup_steps=1, beta=1.0, beta_start=4.0, beta_anneal_steps=4))
    assert trainer.callback_metrics["train/beta"] == pytest.approx(4.0 * 0.25 ** (2 / 4))  # logged at the third step
    with pytest.raises(ValueError, match="beta_start"):
        GRAMModule(tiny_net(), beta=0.0, beta_start=4.0)
    with pytest.raises(ValueError, match="beta_anneal_steps"):
        GRAMModule(tiny_net(), beta_anneal_steps=-1)


def test_summed_kl_weighs_every_latent_position():
    net = tiny_net()
    torch.nn.init.normal_(net.posterior.out.weight, std=0.1)  # q starts equal to p: make them differ
    batch = {"inputs": torch.ones(4, 16, dtype=torch.long), "labels": torch.full((4, 16), 2)}
    out = net.supervision_step(*net.initial_state(4), net.embed_input(batch["inputs"]), "posterior", net.embed_target(batch["labels"]))
    mean, summed = (_loss_terms(GRAMModule(net, beta=0.5, kl_reduction=r), out, batch["inputs"], batch["labels"]) for r in ("mean", "sum"))
    assert summed["kl"] == mean["kl"] > 0  # logged per position either way
    assert (summed["loss"] - mean["loss"]).item() == pytest.approx(0.5 * (net.total_len - 1) * mean["kl"].item(), rel=1e-5)
    with pytest.raises(ValueError, match="kl_reduction"):
        GRAMModule(net, kl_reduction="total")


# ---- training levers: posterior at every transition, free bits, a mixing prior, the final-reward value head ----


def _posterior_step(net, batch, seed=0, **kwargs):
    torch.manual_seed(seed)
    return net.supervision_step(*net.initial_state(4), net.embed_input(batch["inputs"]), "posterior",
                                net.embed_target(batch["labels"]), **kwargs)


BATCH = {"inputs": torch.ones(4, 16, dtype=torch.long), "labels": torch.full((4, 16), 2)}


def test_posterior_at_every_transition_samples_the_whole_step_from_q():
    torch.manual_seed(1)
    net = tiny_net(T=3, posterior_transitions="all")
    torch.nn.init.normal_(net.posterior.out.weight, std=0.3)  # q starts equal to p: make them differ
    out = _posterior_step(net, BATCH)
    # By hand: all three transitions draw from q.
    torch.manual_seed(0)
    h, l = net.initial_state(4)
    e, context = net.embed_input(BATCH["inputs"]), net.embed_target(BATCH["labels"])
    kls = []
    for _ in range(3):
        h, l, noise = net.transition(h, l, e, "posterior", context)
        kls.append(noise.posterior.kl(noise.prior).mean(-1))
    assert torch.allclose(out.h, h, atol=1e-5)
    assert torch.allclose(out.untrained_kl, kls[0] + kls[1], atol=1e-5) and (out.untrained_kl > 0).all()
    net.posterior_transitions = "last"  # the same weights, q at the last transition only
    last = _posterior_step(net, BATCH)
    assert last.untrained_kl is None and not torch.allclose(last.h, out.h)
    trainer = _fit(GRAMModule(tiny_net(posterior_transitions="all"), warmup_steps=1))
    assert torch.isfinite(trainer.callback_metrics["train/kl_untrained"])
    with pytest.raises(ValueError, match="posterior_transitions"):
        tiny_net(posterior_transitions="first")


def test_free_bits_floor_each_positions_kl_and_stop_its_gradient_below():
    torch.manual_seed(1)
    net = tiny_net()
    torch.nn.init.normal_(net.posterior.out.weight, std=0.3)
    out = _posterior_step(net, BATCH)
    per_position = out.noise.posterior.kl(out.noise.prior).mean(0).detach()  # the balanced KL's value is the KL
    floor = float(per_position.median())
    plain, floored = (_loss_terms(GRAMModule(net, beta=0.5, kl_free_bits=f), out, BATCH["inputs"], BATCH["labels"])
                      for f in (0.0, floor))
    assert floored["kl"] == plain["kl"]  # logged unfloored
    expected = 0.5 * (per_position.clamp(min=floor).mean() - per_position.mean())
    assert (floored["loss"] - plain["loss"]).item() == pytest.approx(expected.item(), rel=1e-4)
    # A floor above every position's KL leaves the prior without a gradient from the KL.
    terms = _loss_terms(GRAMModule(net, beta=0.5, kl_free_bits=1e6), out, BATCH["inputs"], BATCH["labels"])
    terms["loss"].backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in net.prior.parameters())
    with pytest.raises(ValueError, match="kl_free_bits"):
        GRAMModule(tiny_net(), kl_free_bits=-1.0)


@pytest.mark.parametrize("noise_input", ["core", "detached"])
def test_detached_noise_input_keeps_the_kl_out_of_the_core(noise_input):
    torch.manual_seed(1)
    net = tiny_net(noise_input=noise_input)
    torch.nn.init.normal_(net.posterior.out.weight, std=0.3)  # q differs from p: a KL with a gradient
    out = _posterior_step(net, BATCH)
    out.noise.posterior.kl(out.noise.prior).sum().backward()
    core = [p.grad for p in net.f_L.parameters()]
    reaches_core = any(g is not None and g.abs().sum() > 0 for g in core)
    assert reaches_core == (noise_input == "core")
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.prior.parameters())
    with pytest.raises(ValueError, match="noise_input"):
        tiny_net(noise_input="both")


def test_noise_warmup_scales_the_training_residual_from_zero():
    net = tiny_net()
    torch.nn.init.normal_(net.posterior.out.weight, std=0.3)
    net.train_residual_scale.fill_(0.0)
    # Scaled to zero in training, two draws of the residual leave the same state: the deterministic transition.
    assert torch.equal(_posterior_step(net, BATCH, seed=0).h, _posterior_step(net, BATCH, seed=1).h)
    net.train_residual_scale.fill_(0.5)
    assert not torch.equal(_posterior_step(net, BATCH, seed=0).h, _posterior_step(net, BATCH, seed=1).h)
    net.train_residual_scale.fill_(0.0)
    net.eval()  # evaluation adds the whole residual whatever the training scale
    rollouts = [net.supervision_step(*net.initial_state(4), net.embed_input(BATCH["inputs"]), noise_keys=torch.arange(4) + k).h
                for k in (0, 10)]
    assert not torch.equal(*rollouts)
    assert "train_residual_scale" not in net.state_dict()  # checkpoints keep their keys
    trainer = _fit(GRAMModule(tiny_net(), warmup_steps=1, noise_warmup_steps=1000))
    assert 0 <= trainer.callback_metrics["train/residual_scale"] < 0.01
    with pytest.raises(GramUserError, match="noise_warmup_steps"):
        GRAMModule(tiny_net(), noise_warmup_steps=-1)


@pytest.mark.parametrize("prior_head", ["mlp", "mixing"])
def test_mixing_prior_lets_one_positions_noise_depend_on_the_others(prior_head):
    torch.manual_seed(0)
    net = tiny_net(prior_head=prior_head)
    head = net.prior.head if prior_head == "mixing" else net.prior
    torch.nn.init.normal_(head.out.weight, std=0.3)
    u = torch.randn(1, net.total_len, 32)
    moved = u.clone()
    moved[0, 0] += 1.0  # change position 0 only
    changed = (net.prior(u).mean - net.prior(moved).mean)[0].abs().sum(-1)  # (L_total,)
    assert changed[0] > 0
    assert (changed[1:].max() > 1e-4) == (prior_head == "mixing")
    trainer = _fit(GRAMModule(tiny_net(prior_head=prior_head), warmup_steps=1))
    assert torch.isfinite(trainer.callback_metrics["train/loss"])


@pytest.mark.filterwarnings("ignore:You are trying to .self.log")  # a training_step called without a Trainer
def test_final_reward_value_head_learns_the_trajectorys_last_accuracy_at_every_step():
    module = GRAMModule(tiny_net(N_sup=3), act=False, value_target="final")
    outputs, losses = [], []
    module.net.supervision_step = _recording(module.net.supervision_step, outputs)
    module.elbo.terms = _recording(module.elbo.terms, losses)
    torch.manual_seed(0)
    for step in range(3):
        module.training_step(BATCH, step)
        if step < 2:  # no trajectory has ended: no value target yet
            assert losses[-1]["value_loss"] == 0
    final_acc, _ = module.elbo.judged_outcome(outputs[-1], BATCH["inputs"], BATCH["labels"], module.task)
    summaries = torch.stack([out.judged_state[:, 0] for out in outputs], 1)  # (4, 3, D)
    expected = (module.net.value_of(summaries) - final_acc[:, None]).pow(2).mean()
    assert losses[-1]["value_loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert module.carry.halted.all()
    state = module.carry.state()
    assert torch.equal(type(module.carry).from_state(state, torch.device("cpu")).summaries, module.carry.summaries)
    trainer = _fit(GRAMModule(tiny_net(), warmup_steps=1, value_target="final"), max_steps=6)
    assert torch.isfinite(trainer.callback_metrics["train/value_loss"])
    with pytest.raises(ValueError, match="value_target"):
        GRAMModule(tiny_net(), value_target="trajectory")
