"""Per-candidate randomness for batched generation.

A pool is generated in batches, but candidate i must draw only from its own seed: then adding
candidates, or changing how many share a batch, never changes the others. So a batched sampler
holds one `torch.Generator` per row and draws each row's noise from it, instead of one
generator for the whole batch (what `torch.multinomial(..., generator=g)` over a batch does).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["row_generators", "row_uniform", "sample_rows"]


def row_generators(seeds: Sequence[int], device: torch.device | str) -> list[torch.Generator]:
    """One generator per seed, on `device` (CUDA and CPU streams differ; each is deterministic)."""
    import torch

    return [torch.Generator(device=torch.device(device)).manual_seed(int(seed)) for seed in seeds]


def row_uniform(generators: Sequence[torch.Generator], shape: Sequence[int], device: torch.device | str,
                dtype: torch.dtype | None = None) -> torch.Tensor:
    """Uniform [0, 1) noise of shape (len(generators), *shape); row i drawn from generators[i] alone."""
    import torch

    rows = [torch.rand(tuple(shape), generator=g, device=torch.device(device), dtype=dtype or torch.float32)
            for g in generators]
    return torch.stack(rows)


def sample_rows(probs: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """Categorical samples by inverse CDF: `probs` (..., V) with one uniform number per sample (...).

    Equal in distribution to `torch.multinomial(probs, 1)`, but the randomness is the caller's
    `uniform` tensor, so each row can come from its own generator. Computed in float64 so the
    cumulative sum does not drift past 1 for large vocabularies.
    """
    import torch

    cdf = probs.double().cumsum(-1)
    target = uniform.double().unsqueeze(-1) * cdf[..., -1:]
    index = torch.searchsorted(cdf, target, right=True).squeeze(-1)
    return index.clamp_(max=probs.shape[-1] - 1)
