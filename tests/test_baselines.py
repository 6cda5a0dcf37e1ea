"""The generative baselines (gram_lightning/baselines/): the AR model's prefix-LM mask and KV cache, MDLM's ELBO
weight and sampler (on token sequences and on MNIST-sized images), N different samples per input, and both through
`gram fit` + `gram test`."""

import json
from pathlib import Path

import pytest
import torch

from gram_lightning.baselines import ARModule, MaskedDenoiser, MDLMModule, PrefixLM
from gram_lightning.baselines.mdlm import alpha, elbo_weight
from gram_lightning.errors import GramUserError
from gram_lightning.keyed_noise import sample_keys
from gram_lightning.losses import token_cross_entropy
from test_cli import ROOT, run_gram, tiny_args

NET = dict(vocab_size=6, seq_len=10, out_len=7, hidden_size=32, num_heads=2, expansion=2.0, num_layers=2)
# Binarized MNIST's shapes (PAD, black, white; 28 x 28 pixels) with a tiny width.
IMAGE_NET = dict(vocab_size=3, seq_len=784, out_len=784, hidden_size=16, num_heads=2, expansion=2.0, num_layers=1,
                 image_size=28, patch_size=2, conv_channels=8)


def ar_module(**kwargs) -> ARModule:
    torch.manual_seed(0)
    return ARModule(PrefixLM(**NET), **kwargs).eval()


def mdlm_module(**kwargs) -> MDLMModule:
    torch.manual_seed(0)
    return MDLMModule(MaskedDenoiser(**NET), **kwargs).eval()


def image_mdlm_module(**kwargs) -> MDLMModule:
    torch.manual_seed(0)
    return MDLMModule(MaskedDenoiser(**IMAGE_NET), **kwargs).eval()


def blank_images(B: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    return {"inputs": torch.zeros(B, 784, dtype=torch.long), "labels": torch.randint(1, 3, (B, 784), generator=g),
            "index": torch.arange(B)}


def batch(B: int = 3) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {"inputs": torch.randint(1, 6, (B, 10), generator=g), "labels": torch.randint(1, 6, (B, 7), generator=g),
            "index": torch.arange(B)}


def test_ar_output_token_j_changes_no_logit_before_it():
    net = ar_module().net
    b = batch()
    logits = net(b["inputs"], b["labels"])  # (B, 7, V): row j predicts y_j from the input and y_<j
    for j in range(7):
        changed = b["labels"].clone()
        changed[:, j] = changed[:, j] % 5 + 1
        after = net(b["inputs"], changed)
        torch.testing.assert_close(after[:, : j + 1], logits[:, : j + 1])  # y_j reaches only rows j + 1 ..
        if j < 6:
            assert not torch.allclose(after[:, j + 1 :], logits[:, j + 1 :])


def test_ar_input_positions_never_see_the_output():
    net = ar_module().net
    assert net.mask[:10, 10:].sum() == 0 and net.mask[:10, :10].all()  # inputs: bidirectional among themselves
    assert net.mask[10:, :10].all() and torch.equal(net.mask[10:, 10:], torch.ones(7, 7, dtype=torch.bool).tril())


@pytest.mark.parametrize("filters", [{}, {"temperature": 0.7, "top_k": 3}, {"top_p": 0.8}])
def test_ar_kv_cache_sampling_equals_uncached_sampling_for_the_same_draws(filters):
    cached, plain = ar_module(kv_cache=True, **filters), ar_module(kv_cache=False, **filters)
    inputs = batch(4)["inputs"].repeat_interleave(5, 0)
    keys = sample_keys(7, torch.arange(4), 5)
    out = cached.decode(inputs, keys)
    assert torch.equal(out, plain.decode(inputs, keys))
    assert out.shape == (20, 7) and ((out >= 0) & (out < 6)).all()


def test_mdlm_loss_weight_against_a_hand_computation():
    t = torch.tensor([0.25, 0.5])
    torch.testing.assert_close(elbo_weight(t, "loglinear"), torch.tensor([4.0, 2.0]))
    # cosine: -alpha'/(1 - alpha) = (pi/2) sin(pi t/2) / (1 - cos(pi t/2)); at t = 0.5: 1.5708 * 0.70711 / 0.29289
    torch.testing.assert_close(elbo_weight(t[1:], "cosine"), torch.tensor([3.7922]), atol=1e-4, rtol=0)
    torch.testing.assert_close(alpha(t, "loglinear"), torch.tensor([0.75, 0.5]))

    module = mdlm_module()
    b = batch(2)
    masked = torch.zeros(2, 7, dtype=torch.bool)
    masked[0, [1, 4]] = True  # row 0: two of 7 tokens masked at t = 0.25
    masked[1, :] = True  # row 1: all masked at t = 0.5
    terms = module.loss_terms(b["inputs"], b["labels"], t, masked)
    z = torch.where(masked, torch.full_like(b["labels"], module.net.mask_id), b["labels"])
    nll = token_cross_entropy(module.net(b["inputs"], z), b["labels"], "softmax")
    by_hand = torch.stack([4.0 * (nll[0, 1] + nll[0, 4]) / 7, 2.0 * nll[1].sum() / 7]).mean()
    torch.testing.assert_close(terms["loss"], by_hand)


@pytest.mark.parametrize("data,num_steps", [("tokens", 1), ("tokens", 3), ("tokens", 7), ("tokens", 20),
                                            ("images", 1), ("images", 7)])
def test_mdlm_sampling_never_changes_an_unmasked_token_and_ends_with_no_mask(data, num_steps):
    # On images the tokens are pixels, masked one by one under the patch encoder.
    module, inputs, out_len = (mdlm_module(), batch(4)["inputs"], 7) if data == "tokens" else \
        (image_mdlm_module(), blank_images(4)["inputs"], 784)
    seen = []
    forward = module.net.forward
    module.net.forward = lambda inputs, z: (seen.append(z.clone()), forward(inputs, z))[1]
    out = module.denoise(inputs, num_steps, sample_keys(3, torch.arange(4), 1))
    mask_id = module.net.mask_id
    assert seen[0].eq(mask_id).all()  # starts from all-[MASK]
    for before, after in zip(seen, [*seen[1:], out]):
        kept = before != mask_id
        assert torch.equal(after[kept], before[kept])
    assert not out.eq(mask_id).any() and out.shape == (4, out_len)
    assert len(seen) <= num_steps


def test_mdlm_on_images_attends_over_patches_and_decodes_every_pixel():
    module = image_mdlm_module()
    positions = []
    module.net.body.blocks[0].register_forward_pre_hook(lambda block, args: positions.append(args[0].shape[1]))
    b = blank_images(2)
    z = torch.where(torch.rand(2, 784) < 0.5, b["labels"], torch.full_like(b["labels"], module.net.mask_id))
    logits = module.net(b["inputs"], z)
    assert logits.shape == (2, 784, 3)  # per-pixel logits over PAD, black, white: never [MASK]
    assert positions == [196]  # 2 x 2 patches, and the blank input costs no position
    assert module.default_depth == 64
    known = {**b, "inputs": b["labels"]}  # an input with known pixels: inpainting is not offered
    with pytest.raises(GramUserError, match="blank inputs"):
        module.sample(known, 1, num_steps=1, selection="first")
    with pytest.raises(GramUserError, match="blank inputs"):
        module.training_step(known, 0)


def test_mdlm_image_samples_of_one_blank_input_differ():
    samples = image_mdlm_module().sample(blank_images(1), 4, num_steps=4, selection="first")
    assert samples.preds.shape == (1, 4, 784)
    assert len({tuple(p.tolist()) for p in samples.preds[0]}) == 4


@pytest.mark.parametrize("change, message", [
    ({"image_size": 27}, "image_size 27 means 729 pixels"),
    ({"patch_size": 3}, "not a multiple of patch_size 3"),
    ({"conv_channels": 12}, "conv_channels 12"),
])
def test_mdlm_image_settings_that_do_not_fit_the_data_are_refused(change, message):
    with pytest.raises(GramUserError, match=message):
        MaskedDenoiser(**{**IMAGE_NET, **change})


@pytest.mark.parametrize("make", [ar_module, mdlm_module], ids=["ar", "mdlm"])
def test_n_samples_of_one_input_differ_and_are_keyed_by_input(make):
    module = make()
    b = batch(1)
    samples = module.sample(b, 8, selection="vote")
    assert samples.preds.shape == (1, 8, 7)
    assert len({tuple(p.tolist()) for p in samples.preds[0]}) > 1
    # The first 4 of N = 8 are the N = 4 samples: each draw is a function of (seed, index, sample number).
    assert torch.equal(module.sample(b, 4, selection="vote").preds, samples.preds[:, :4])


@pytest.mark.parametrize("make", [ar_module, mdlm_module])
def test_baseline_examples_are_its_batches(make):
    module = make(warmup_steps=1).train()
    for step in range(3):
        module.on_train_batch_start(batch(4), step)
    assert int(module.examples_seen) == 12


def test_mdlm_depth_defaults_to_sampling_steps_then_one_step_per_output_token():
    assert mdlm_module().default_depth == 7
    module = mdlm_module(sampling_steps=3)
    assert module.default_depth == 3 and module.sample(batch(1), 2).steps.eq(3).all()
    with pytest.raises(GramUserError, match="sampling_steps"):
        mdlm_module(sampling_steps=0)


def test_baselines_have_no_value_head_to_select_with():
    with pytest.raises(GramUserError, match="vote"):
        ARModule(PrefixLM(**NET), selection="lprm")
    with pytest.raises(GramUserError, match="MaskedDenoiser"):
        MDLMModule(PrefixLM(**NET))


@pytest.mark.slow  # two `gram fit` + `gram test` processes per model
@pytest.mark.parametrize("overlay", ["ar", "mdlm"])
def test_baseline_runs_through_gram_fit_and_gram_test(overlay, tmp_path):
    fit = run_gram("fit", *tiny_args(tmp_path), "--config", str(ROOT / "experiments" / "baselines" / f"{overlay}.yaml"),
                   cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr[-3000:]
    run_dir = tmp_path / "logs" / "demo" / overlay
    config = (run_dir / "config.yaml").read_text()
    assert f"gram_lightning.baselines.{'ARModule' if overlay == 'ar' else 'MDLMModule'}" in config
    assert "Width scaling" in fit.stdout and "lprm" not in json.dumps(json.loads((run_dir / "width_scaling.json").read_text()))
    test = run_gram("test", "--config", str(run_dir / "config.yaml"), "--ckpt_path", str(run_dir / "checkpoints" / "last.ckpt"),
                    "--trainer.logger.init_args.save_dir", str(tmp_path / "eval"), "--model.num_samples", "4", cwd=tmp_path)
    assert test.returncode == 0, test.stderr[-3000:]
    results = json.loads(next(Path(tmp_path / "eval").rglob("test_metrics.json")).read_text())
    assert results["settings"]["model"] == ("ARModule" if overlay == "ar" else "MDLMModule")
    assert results["settings"]["num_samples"] == 4
    assert {"test/exact_acc", "test/sample_acc", "test/coverage"} <= set(results["metrics"])
