"""What a search strategy's `search(problem, ctx)` gets: the context of one GenEval sample.

    ctx.generator        the run's stepping generator, metered (`harness.search.ledger.MeteredGenerator`):
                         start / advance / preview / fork / keep / finish, total_steps, request(...)
    ctx.verifiers        {name: MeteredVerifier}: the verifiers the strategy names (and the run's
                         --verifier ones), `score(prompt, images, previews)` and their public methods
    ctx.seeds(k)         the sample's first k candidate seeds: those of pool candidates s, s+S, s+2S, ...
    ctx.fresh_seed()     a new seed for a fork or a resampled particle (deterministic per sample)
    ctx.rng()            a seeded random.Random for the strategy's own draws (resampling)
    ctx.note(kind, ...)  a trace event of the strategy's own (what it decided and why)
    ctx.ledger           what the sample has spent so far (the harness keeps it); ctx.max_nfe, ctx.nfe_left
    ctx.budget           B: at most best-of-B's generator compute, B x total_steps candidate-steps

Nothing here loads a model; the runner builds the context around already-loaded plug-ins.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from typing import Any

from harness.search.ledger import Ledger, MeteredGenerator, MeteredVerifier, Trace

__all__ = ["SAMPLES", "SearchContext", "fresh_seed", "sample_seeds"]

SAMPLES = 4  # GenEval's images per prompt
_SEED_MASK = (1 << 63) - 1  # seeds are stored as signed 64-bit integers


def sample_seeds(run_seed: int, prompt_index: int, sample: int, count: int, samples: int = SAMPLES) -> list[int]:
    """Seeds of sample `sample`'s first `count` candidates: the pool candidates sample + samples * k.

    The same seeds a pool run of the same generator draws (`harness.runner.candidate_seed`), so a
    search starts from the pool's candidates, and a larger budget only adds candidates."""
    from harness.runner import candidate_seed

    return [candidate_seed(run_seed, prompt_index, sample + samples * k) for k in range(count)]


def fresh_seed(run_seed: int, prompt_index: int, sample: int, counter: int) -> int:
    """The `counter`-th fresh seed of a sample (forks, resampled particles): apart from candidate seeds."""
    digest = hashlib.sha256(f"stepwise-search-fork:{run_seed}:{prompt_index}:{sample}:{counter}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & _SEED_MASK


class SearchContext:
    """The context of one sample's search (module docstring)."""

    def __init__(self, *, generator: MeteredGenerator, verifiers: Mapping[str, MeteredVerifier], ledger: Ledger,
                 trace: Trace, budget: int, run_seed: int, prompt_index: int, sample: int,
                 samples: int = SAMPLES) -> None:
        self.generator = generator
        self.verifiers = dict(verifiers)
        self.ledger = ledger
        self.trace = trace
        self.budget = int(budget)
        self.total_steps = generator.total_steps
        self.max_nfe = generator.max_nfe
        self._run_seed = run_seed
        self._prompt_index = prompt_index
        self._sample = sample
        self._samples = samples
        self._forks = 0

    @property
    def nfe_left(self) -> int:
        return self.max_nfe - self.ledger.generator_nfe

    def seeds(self, count: int, first: int = 0) -> list[int]:
        """Candidate seeds `first` .. `first + count - 1` of this sample."""
        return sample_seeds(self._run_seed, self._prompt_index, self._sample, first + count, self._samples)[first:]

    def fresh_seed(self) -> int:
        seed = fresh_seed(self._run_seed, self._prompt_index, self._sample, self._forks)
        self._forks += 1
        return seed

    def rng(self, purpose: str = "") -> random.Random:
        """A random stream of this sample for the strategy's own choices (e.g. resampling)."""
        key = f"stepwise-search-rng:{self._run_seed}:{self._prompt_index}:{self._sample}:{purpose}"
        return random.Random(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big"))

    def note(self, kind: str, **fields: Any) -> None:
        """Add a strategy event to the trace (JSON values only: checked when the pick is stored)."""
        self.trace.add("note", kind=str(kind), **fields)
