"""Per-puzzle embeddings: sparse sign-SGD on the rows a batch read, outside the main optimizer, and in checkpoints."""

import lightning as L
import pytest
import torch

from conftest import TINY_TRAINER, tiny_net
from gram_lightning.module import GRAMModule
from gram_lightning.puzzle_embedding import PuzzleEmbedding


def test_sign_sgd_updates_only_the_rows_read():
    embed = PuzzleEmbedding(10, 4)
    embed.weight[3] = 1.0
    rows = embed(torch.tensor([3, 5, 3]))  # row 3 twice: its gradients add up before the sign
    (rows * torch.tensor([[1.0, -1.0, 0.0, 2.0], [-1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 0.0, -3.0]])).sum().backward()
    embed.step(lr=0.1, weight_decay=0.5)
    # row 3: grad (2, 1, 0, -1): 1 * (1 - 0.05) - 0.1 * sign(grad)
    assert torch.allclose(embed.weight[3], torch.tensor([0.85, 0.85, 0.95, 1.05]))
    assert torch.allclose(embed.weight[5], torch.tensor([0.1, -0.1, -0.1, -0.1]))
    assert embed.weight[[0, 1, 2, 4, 6, 7, 8, 9]].abs().sum() == 0
    assert not embed.has_gradient  # consumed by the step


def test_eval_and_no_grad_reads_keep_no_gradient():
    embed = PuzzleEmbedding(4, 2)
    with torch.no_grad():
        embed(torch.tensor([1]))
    embed.eval()
    embed(torch.tensor([1])).sum()
    assert not embed.has_gradient


def test_out_of_range_ids_are_named():
    embed = PuzzleEmbedding(4, 2)
    with pytest.raises(ValueError, match="puzzle id 7 is outside the model's 4 puzzle embeddings"):
        embed(torch.tensor([1, 7]))
    with pytest.raises(ValueError, match="integers"):
        embed(torch.tensor([1.0]))


def test_net_prefix_holds_the_row_then_zeros():
    net = tiny_net(num_puzzle_ids=3, puzzle_prefix_len=2, hidden_size=32)
    net.puzzle_embed.weight[1] = torch.arange(32.0)
    e = net.embed_input(torch.ones(1, 16, dtype=torch.long), torch.tensor([1]))  # (1, 2 + 16, 32)
    assert torch.allclose(e[0, 0], torch.arange(32.0) * 32**0.5)
    assert e[0, 1].abs().sum() == 0  # puzzle_embed_dim defaults to D: one prefix position, as TRM
    wide = tiny_net(num_puzzle_ids=3, puzzle_prefix_len=2, hidden_size=32, puzzle_embed_dim=64)
    assert wide.puzzle_embed.weight.shape == (3, 64)
    with pytest.raises(ValueError, match="puzzle_embed_dim"):
        tiny_net(num_puzzle_ids=3, puzzle_prefix_len=2, hidden_size=32, puzzle_embed_dim=65)


class _Batches(torch.utils.data.Dataset):
    def __len__(self):
        return 64

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        inputs = torch.randint(1, 6, (16,), generator=g)
        return {"inputs": inputs, "labels": inputs.flip(0), "puzzle_ids": torch.tensor(i % 4)}


def test_training_moves_the_table_outside_the_optimizer_and_checkpoints_it(tmp_path):
    net = tiny_net(num_puzzle_ids=8)
    module = GRAMModule(net, warmup_steps=1, puzzle_embedding_lr=0.01, puzzle_embedding_weight_decay=0.0)
    assert module._ddp_params_and_buffers_to_ignore == ["net.puzzle_embed.weight"]  # no DDP broadcast of the table
    trainer = L.Trainer(**TINY_TRAINER, max_steps=3, limit_val_batches=0, default_root_dir=tmp_path)
    trainer.fit(module, torch.utils.data.DataLoader(_Batches(), batch_size=8))
    optimizer = trainer.optimizers[0]
    assert all(p is not net.puzzle_embed.weight for group in optimizer.param_groups for p in group["params"])
    table = net.puzzle_embed.weight
    assert table[:4].abs().sum() > 0 and table[4:].abs().sum() == 0  # only ids 0..3 were trained
    # sign-SGD moves each touched element by exactly lr per step (no decay here)
    assert torch.allclose(table[:4].abs().max(), torch.tensor(0.03))
    trainer.save_checkpoint(tmp_path / "c.ckpt")
    state = torch.load(tmp_path / "c.ckpt", weights_only=True)["state_dict"]
    assert torch.equal(state["net.puzzle_embed.weight"], table)


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    embed = PuzzleEmbedding(6, 3)
    ids = torch.tensor([rank, 4])  # row 4 on both ranks, rows 0 / 1 on one each
    (embed(ids) * (1.0 if rank == 0 else -3.0)).sum().backward()
    embed.step(lr=0.1, weight_decay=0.0)
    torch.save(embed.weight, f"{out_dir}/table{rank}.pt")
    dist.destroy_process_group()


def test_ddp_ranks_apply_every_ranks_rows_and_stay_equal(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    t0, t1 = (torch.load(tmp_path / f"table{r}.pt") for r in range(2))
    assert torch.equal(t0, t1)
    assert torch.allclose(t0[0], torch.full((3,), -0.1)) and torch.allclose(t0[1], torch.full((3,), 0.1))
    assert torch.allclose(t0[4], torch.full((3,), 0.1))  # gradients summed over ranks: 1 - 3 < 0
    assert t0[[2, 3, 5]].abs().sum() == 0
