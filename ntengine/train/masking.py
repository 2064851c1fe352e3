"""NT's masked-language-model corruption (BERT's recipe, as the NT paper trains).

Each nucleotide token (never <cls>, <pad> or another special token) is selected with
probability 15%; a selected token becomes <mask> with probability 80%, a random
nucleotide token with 10%, and stays unchanged with 10%. The loss is taken at selected
tokens only. Each row is masked from its own seed, so a sample's corruption does not
depend on how samples are grouped into batches or processes.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

IGNORE = -100  # label of positions without loss (torch's cross_entropy ignore_index)


class Masked(NamedTuple):
    inputs: torch.Tensor  # [B, L] corrupted ids
    labels: torch.Tensor  # [B, L] original id at selected tokens, IGNORE elsewhere
    masked: torch.Tensor  # [B, L] bool: replaced by <mask> (the "real" prediction task)


def mask_tokens(ids: torch.Tensor, seeds, special_ids, mask_id: int, vocab_size: int, prob: float = 0.15,
                mask_frac: float = 0.8, random_frac: float = 0.1) -> Masked:
    """Corrupt a batch of token ids [B, L]; row b is masked from seeds[b]."""
    special = torch.zeros(vocab_size, dtype=torch.bool)
    special[torch.as_tensor(special_ids)] = True
    nucleotide_ids = torch.nonzero(~special).squeeze(1)
    inputs, labels, masked = ids.clone(), torch.full_like(ids, IGNORE), torch.zeros_like(ids, dtype=torch.bool)
    for b, seed in enumerate(seeds):
        g = torch.Generator().manual_seed(int(seed))
        row = ids[b]
        selected = (torch.rand(row.shape, generator=g) < prob) & ~special[row]
        r = torch.rand(row.shape, generator=g)
        to_mask = selected & (r < mask_frac)
        to_random = selected & (r >= mask_frac) & (r < mask_frac + random_frac)
        replacement = nucleotide_ids[torch.randint(len(nucleotide_ids), row.shape, generator=g)]
        inputs[b] = torch.where(to_mask, mask_id, torch.where(to_random, replacement, row))
        labels[b] = torch.where(selected, row, IGNORE)
        masked[b] = to_mask
    return Masked(inputs, labels, masked)
