"""GenEval 2 (Kamath et al., 2025; github.com/facebookresearch/GenEval2): prompts, Soft-TIFA, figures.

    data.py        the user's geneval2_data.jsonl read strictly; the suite folder we write
    soft_tifa.py   the reference's questions, answer variants, scores and aggregations
    evaluator.py   per-image results through the batched VQA engine (harness.verifiers.answer_probs), cached
    inputs.py      what `stepwise eval --suite geneval2` reads: a generate-layout folder or {prompt: path}
    summary.py     the reference's figures for a results file
    reference.py   the reference's one-question-at-a-time loop, for tests and benchmarks

Nothing here is wired into the store, runner or site yet. The shape a suite plug-in could take
(`stepwise.suites`), with GenEval and GenEval 2 as its first two members:

    class Suite(Protocol):
        name: str                                    # "geneval", "geneval2"
        spec_type: type                              # EvaluatorSpec / SoftTifaSpec: .key() names stored results

        def records(self, source: str | None) -> list[dict]:    # the prompts with their structured records
            ...                                      # geneval: generated; geneval2: the user's data file
        def record_problems(self, record: dict) -> list[str]:   # checks a folder's metadata.jsonl
        def prompt(self, record: dict) -> str
        def groups(self, record: dict) -> str        # the breakdown a pool's table is split by
            ...                                      # geneval: record["tag"]; geneval2: f"atoms={atom_count}"
        def evaluate(self, images, records, spec) -> Iterator[dict]:   # one result per image, in order, with
            ...                                      # a scalar outcome in [0, 1] (GenEval: correct; GenEval 2:
            ...                                      # Soft-TIFA GM) and the suite's own detail
        def summarize(self, results: list[dict]) -> Any:        # the suite's figures (.to_text(), .to_dict())

Best-of-n curves only need each candidate's scalar outcome: the exact expectation of the selected
candidate's outcome has the same closed form for a real-valued outcome as for a 0/1 one.
"""
