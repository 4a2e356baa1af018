"""The strategies under comparison: the built-ins (`strategies.builtin`, registered in `harness/registry.py`)
and how a strategy's keys are computed over a pool (`strategies.keys`)."""
