"""Search strategies: reasoning *during* generation, measured on score vs compute.

A search strategy (`harness.plugins.SearchStrategy`: a strategy class with `search`) makes one image
per GenEval sample by driving a stepping generator (`harness.plugins.SteppingGenerator`) and the
run's verifiers while the image is being made: PARM truncating paths, step-level beam search,
particle resampling, adaptive N, reflection (the built-ins are in `strategies/search/`).

    context.py  `SearchContext`: what `search(problem, ctx)` gets: the metered generator and
                verifiers, the sample's seeds, trace notes; the budget
    ledger.py   the compute ledger the harness keeps (the plug-in never writes it): generator NFE
                per candidate-step and batched passes, verifier calls, forward passes, tokens,
                seconds; and the trace of JSON events (rows advanced, previewed, forked, kept,
                scored), recorded by the wrappers around the generator and the verifiers
    runner.py   `stepwise run --strategy NAME --budget B`: every prompt's samples, judged by GenEval,
                stored one transaction per prompt (resumable, sharded under torchrun)
    store.py    the searches, picks, traces and pick verdicts in the results store
    adaptive.py adaptive-n's exact expected accuracy and cost over random candidate orders of a pool
    report.py   search rows for `stepwise curve` (score, interval, NFE and seconds per prompt) and
                the score-vs-compute plot
    trace.py    a trace read back as paths (pruned where, previews seen, scores): the entry page's view

Budget: `--budget B` allows each sample at most the generator compute of best-of-B, B x
`total_steps` candidate-steps; the harness refuses a step past it. Seeds: sample s of prompt i has
the candidate seeds of the pool candidates s, s + S, s + 2S, ... (S samples per prompt, 4 by
default), so a search and a pool of the same generator start from the same images, and a larger
budget only adds candidates.
"""
