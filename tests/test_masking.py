"""Masking follows MAE exactly: counts, ids_restore, reproducibility, block strategy."""

from __future__ import annotations

import pytest
import torch

from plaml_lab.method.masking import block_noise, mask_from_noise, num_visible, random_masking


@pytest.mark.parametrize("ratio", [0.1, 0.5, 0.75, 0.9])
@pytest.mark.parametrize("strategy", ["random", "block"])
def test_masking_keeps_exactly_int_L_times_1_minus_r_visible(ratio, strategy):
    L = 64
    ids_keep, mask, ids_restore, ids_masked = random_masking(
        5, L, ratio, strategy=strategy, generator=torch.Generator().manual_seed(0))
    keep = int(L * (1 - ratio))
    assert ids_keep.shape == (5, keep)
    assert ids_masked.shape == (5, L - keep)
    assert torch.equal(mask.sum(1), torch.full((5,), float(L - keep)))
    # visible ids are exactly the zeros of the mask
    for b in range(5):
        assert set(ids_keep[b].tolist()) == set((mask[b] == 0).nonzero().flatten().tolist())
        assert set(ids_masked[b].tolist()) == set((mask[b] == 1).nonzero().flatten().tolist())


def test_ids_restore_undoes_the_shuffle():
    noise = torch.rand(4, 16, generator=torch.Generator().manual_seed(1))
    ids_keep, mask, ids_restore, ids_masked = mask_from_noise(noise, 0.75)
    ids_shuffle = torch.cat([ids_keep, ids_masked], dim=1)
    assert torch.equal(torch.gather(ids_shuffle, 1, ids_restore),
                       torch.arange(16).expand(4, 16))
    # the MAE convention: tokens listed as [kept, masked] return to patch order
    tokens = torch.arange(16).float().expand(4, 16)
    shuffled = torch.gather(tokens, 1, ids_shuffle)
    assert torch.equal(torch.gather(shuffled, 1, ids_restore), tokens)


def test_lowest_noise_patches_are_the_visible_ones():
    noise = torch.tensor([[0.9, 0.1, 0.5, 0.3]])
    ids_keep, mask, _, _ = mask_from_noise(noise, 0.5)
    assert ids_keep.tolist() == [[1, 3]]
    assert mask.tolist() == [[1.0, 0.0, 1.0, 0.0]]


def test_same_noise_gives_the_same_mask():
    a = random_masking(3, 64, 0.75, generator=torch.Generator().manual_seed(7))
    b = random_masking(3, 64, 0.75, generator=torch.Generator().manual_seed(7))
    c = random_masking(3, 64, 0.75, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])
    noise = torch.rand(3, 64)
    assert torch.equal(random_masking(3, 64, 0.6, noise=noise)[1],
                       random_masking(3, 64, 0.6, noise=noise)[1])


def test_block_masks_are_spatially_clustered():
    """Hidden patches of the block strategy have more hidden 4-neighbours than random ones."""
    def neighbour_agreement(mask):
        m = mask.reshape(-1, 8, 8)
        same = (m[:, 1:, :] == m[:, :-1, :]).float().mean() + (m[:, :, 1:] == m[:, :, :-1]).float().mean()
        return float(same / 2)
    g = torch.Generator().manual_seed(0)
    rand = random_masking(64, 64, 0.5, strategy="random", generator=g)[1]
    block = random_masking(64, 64, 0.5, strategy="block", block_size=3, generator=g)[1]
    assert neighbour_agreement(block) > neighbour_agreement(rand) + 0.1
    assert block_noise(2, 8, 2).shape == (2, 64)


def test_num_visible_matches_mae_rule():
    assert num_visible(196, 0.75) == 49
    assert num_visible(64, 0.75) == 16
    assert num_visible(10, 0.33) == int(10 * 0.67)
