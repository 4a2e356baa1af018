"""Tiny, randomly initialised versions of the real models, built from configs in code.

Used by the tests, `make demo` and the benchmarks on machines with no downloaded weights:
the same classes and loading paths as the real models, at a size that runs in seconds on CPU.
Verdicts from these models are meaningless; the code paths they exercise are not.
"""
