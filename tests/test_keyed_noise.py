"""Evaluation noise keyed by input: an input's samples do not depend on its batch, its rank or N."""

import torch

from gram_lightning.keyed_noise import derive, keyed_normal, mix, sample_keys
from gram_lightning.module import GRAMModule
from tests.conftest import tiny_net


def test_keyed_normal_is_standard_normal_and_rows_are_independent():
    keys = mix(torch.arange(400))
    z = keyed_normal(keys, (50, 20))  # (400, 50, 20)
    assert z.shape == (400, 50, 20) and z.dtype == torch.float32
    assert abs(z.mean().item()) < 0.01 and abs(z.std().item() - 1) < 0.01
    assert abs(((z - z.mean()) ** 4).mean().item() / z.var().item() ** 2 - 3) < 0.05  # kurtosis of a Gaussian
    corr = torch.corrcoef(z.reshape(400, -1))  # (400, 400) between rows
    off_diagonal = corr[~torch.eye(400, dtype=torch.bool)]
    # 1,000 draws per row: independent rows correlate by chance with std 1 / sqrt(1000) = 0.032.
    assert abs(off_diagonal.std().item() - 1000**-0.5) < 0.002 and off_diagonal.abs().max() < 0.2


def test_a_rows_draws_depend_only_on_its_key():
    keys = mix(torch.arange(6))
    full = keyed_normal(keys, (3, 4))
    torch.testing.assert_close(keyed_normal(keys[[4, 1]], (3, 4)), full[[4, 1]])
    assert not torch.equal(keyed_normal(derive(keys, 0), (3, 4)), keyed_normal(derive(keys, 1), (3, 4)))


def test_sample_keys_are_nested_in_n_and_separate_streams():
    index = torch.tensor([7, 3])
    wide, narrow = sample_keys(1, index, 8).view(2, 8), sample_keys(1, index, 3).view(2, 3)
    assert torch.equal(wide[:, :3], narrow)
    assert len(set(wide.flatten().tolist())) == 16
    assert not torch.equal(sample_keys(1, index, 3, stream=1), sample_keys(1, index, 3))
    assert not torch.equal(sample_keys(2, index, 3), sample_keys(1, index, 3))


def test_an_inputs_samples_do_not_depend_on_the_batch_around_it():
    torch.manual_seed(0)
    module = GRAMModule(tiny_net(init_sigma=0.9), val_num_samples=4).eval()
    inputs = torch.randint(1, 6, (5, 16))
    batch = {"inputs": inputs, "labels": inputs.clone(), "index": torch.arange(10, 15)}
    alone = {k: v[3:4] for k, v in batch.items()}
    reordered = {k: v[[4, 3, 0]] for k, v in batch.items()}
    together = module.sample(batch, 6)
    torch.manual_seed(123)  # the global RNG plays no part
    assert torch.equal(module.sample(alone, 6).preds[0], together.preds[3])
    assert torch.equal(module.sample(reordered, 6).preds[1], together.preds[3])
    assert torch.equal(module.sample(batch, 3).preds, together.preds[:, :3])  # sample j is the same at any N
    # Different inputs and different samples of one input do get different noise.
    h = [out.h for out in module.net.rollout(inputs[:1].repeat(2, 1), 1, noise_keys=sample_keys(0, torch.tensor([0]), 2))]
    assert not torch.equal(h[0][0], h[0][1])
