"""The built-in search strategies: they act while images are made (`harness.plugins.SearchStrategy`).

    parm-prune   the paper's PARM with real truncation (parm_prune.py)
    step-beam    beam search over steps, any verifier on previews (beam.py)
    smc          particle resampling in the style of FK steering (smc.py)
    adaptive-n   candidates in batches until the verifier passes tau (adaptive.py)
    reflect      PARM++'s reflection loop with a documented substitute judge (reflect.py)

Each module's docstring cites its source and says how the budget B (at most best-of-B's generator
compute per GenEval sample) is spent. Nothing here imports torch: models are the run's plug-ins.
"""
