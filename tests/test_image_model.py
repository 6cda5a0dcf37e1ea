"""ImageGRAM: the conv patch encoder / decoder around the GRAM core, one tiny test per property."""

import pytest
import torch

from gram_lightning.image_model import ImageGRAM, PatchDecoder, PatchEncoder


def tiny_image_net(**overrides) -> ImageGRAM:
    kwargs = dict(vocab_size=3, seq_len=64, image_size=8, patch_size=2, conv_channels=8, conv_groups=4,
                  hidden_size=16, num_heads=2, expansion=2.0, num_layers=1, puzzle_prefix_len=2, T=2, K=1, N_sup=2)
    kwargs.update(overrides)
    return ImageGRAM(**kwargs)


def test_patch_encoder_folds_2x2_patches_into_positions():
    enc = PatchEncoder(vocab_size=3, image_size=28, patch_size=2, channels=16, dim=32, groups=8)
    out = enc(torch.randint(0, 3, (5, 784)))
    assert out.shape == (5, 196, 32)
    assert 0.5 < out.pow(2).mean().sqrt().item() * 32**0.5 < 2.0  # a token embedding's scale, 1/sqrt(D)


def test_patch_decoder_unfolds_positions_into_pixel_logits_in_raster_order():
    dec = PatchDecoder(vocab_size=3, image_size=4, patch_size=2, channels=8, dim=16, groups=4)
    h = torch.randn(2, 4, 16, requires_grad=True)
    logits = dec(h)
    assert logits.shape == (2, 16, 3)
    # The top-left pixel's logit depends on the top-left patch's latent (and, through the 5x5 convolutions, on
    # its neighbours, all of which a 4x4 image reaches): a gradient path exists and it is finite.
    logits[:, 0].sum().backward()
    assert torch.isfinite(h.grad).all() and h.grad[:, 0].abs().sum() > 0


def test_image_gram_runs_the_core_on_patches_and_decodes_every_pixel():
    net = tiny_image_net()
    assert net.seq_len == 16 and net.num_pixels == 64 and net.total_len == 2 + 16
    blank = torch.zeros(3, 64, dtype=torch.long)
    *_, last = net.rollout(blank, num_steps=2)
    assert last.logits.shape == (3, 64, 3)


def test_image_gram_trains_with_the_posterior_reading_the_image():
    net = tiny_image_net()
    labels = torch.randint(1, 3, (4, 64))
    e = net.embed_input(torch.zeros(4, 64, dtype=torch.long))
    out = net.supervision_step(*net.initial_state(4), e, "posterior", net.embed_target(labels))
    loss = torch.nn.functional.cross_entropy(out.logits.flatten(0, 1), labels.flatten())
    loss.backward()
    assert out.noise.posterior is not None and out.judged_logits.shape == (4, 64, 3)
    assert net.target_embed.body[0].weight.grad is not None  # the posterior's conv encoder is trained
    assert net.token_embed.body[0].weight.grad is not None


def test_deterministic_image_twin_has_no_posterior_encoder():
    net = tiny_image_net(noise="none")
    assert net.target_embed is None and net.prior is None


@pytest.mark.parametrize("bad, match", [(dict(seq_len=63), "image_size"), (dict(out_len=16), "out_len"),
                                        (dict(image_size=9, seq_len=81), "multiple of patch_size"),
                                        (dict(conv_channels=6), "conv_groups")])
def test_bad_image_shapes_are_named(bad, match):
    with pytest.raises(ValueError, match=match):
        tiny_image_net(**bad)
