"""The strategies under comparison: the built-in selection rules (`strategies.builtin`), the alignment
strategies whose prepare stage trains the generator first (`strategies.alignment`: `dpo`, `iterative-dpo`),
all registered in `harness/registry.py`, and how a strategy's keys are computed over a pool (`strategies.keys`)."""
