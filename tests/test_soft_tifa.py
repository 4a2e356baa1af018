"""The reference's Soft-TIFA / TIFA / VQAScore rules and figures (harness/geneval2/soft_tifa.py, summary.py),
against values worked out by hand from GenEval 2's evaluation.py and soft_tifa_analysis.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import stepwise

from harness.geneval2.soft_tifa import (
    YES_VARIANTS,
    ImageScores,
    Row,
    answer_variants,
    figures,
    geometric_mean,
    hard_score,
    numeric_string,
    question_text,
    soft_score,
    variant_tokens,
    vqascore_text,
)
from harness.geneval2.summary import is_results, parse_results, summarize

CUBE_ROOT_QUARTER = 0.25 ** (1 / 3)


def test_question_texts_are_the_references() -> None:
    assert question_text("Are the cups red?") == "Are the cups red? Answer in one word."
    assert vqascore_text("three red cups") == ('Does this image show "three red cups"? '
                                               'Answer the question with Yes or No.')


def test_answer_variants() -> None:
    assert answer_variants("How many cups are in the image?", "three") == (
        "three", "Three", " three", " Three", "3", " 3")
    assert answer_variants("How many balloons are in the image?", "ten") == (
        "ten", "Ten", " ten", " Ten", "10", " 10")
    # every other question is scored by "Yes", whatever its answer field holds
    assert answer_variants("Are the cups red?", "Yes") == ("Yes", "yes", " yes", " Yes") == YES_VARIANTS
    assert answer_variants("Is there how many?", "three") == YES_VARIANTS  # startswith, case-sensitive
    assert numeric_string("zero") == "other"  # return_numeric_string's fallback


def test_variant_tokens_are_first_tokens_of_each_encoding() -> None:
    from harness.tiny.qwen3_vl import build_tiny_qwen3_tokenizer

    tokenizer = build_tiny_qwen3_tokenizer()  # Qwen2's split: digits alone, " 3" is " " then "3"

    def names(question: str, answer: str) -> list[str]:
        ids = variant_tokens(answer_variants(question, answer), tokenizer.encode)
        return tokenizer.convert_ids_to_tokens(list(ids))

    assert names("How many cups are in the image?", "three") == ["three", "Three", "Ġthree", "ĠThree", "3", "Ġ"]
    assert names("How many balloons are in the image?", "ten") == ["ten", "Ten", "Ġten", "ĠTen", "1", "Ġ"]
    assert names("Are the cups red?", "Yes") == ["Yes", "yes", "Ġyes", "ĠYes"]


def test_hard_score_is_the_lowercased_prediction_among_the_variants() -> None:
    three = answer_variants("How many cups are in the image?", "three")
    ten = answer_variants("How many balloons are in the image?", "ten")
    assert hard_score(" Yes", YES_VARIANTS) == 1
    assert hard_score("YES", YES_VARIANTS) == 1  # "yes"
    assert hard_score("No", YES_VARIANTS) == 0
    assert hard_score("Three", three) == 1 and hard_score("3", three) == 1 and hard_score(" 3", three) == 1
    assert hard_score("1", ten) == 0  # the token "1" is not the string "10"
    assert hard_score("four", three) == 0


def test_soft_score_adds_in_order_and_counts_shared_tokens_twice() -> None:
    assert soft_score([0.1, 0.2, 0.3]) == ((0.0 + 0.1) + 0.2) + 0.3
    assert soft_score([0.25, 0.25]) == 0.5  # two variants standing for one token: both counted


def test_geometric_mean_is_scipys_and_zero_with_a_zero() -> None:
    assert geometric_mean([0.5, 0.5, 1.0]) == pytest.approx(CUBE_ROOT_QUARTER, abs=1e-15)
    assert geometric_mean([0.25, 1.0]) == pytest.approx(0.5, abs=1e-15)
    assert geometric_mean([0.0, 0.9, 0.8]) == 0.0


ROWS = [
    Row(("count", "attribute", "object"), 3, ImageScores((0.5, 0.5, 1.0), (1, 0, 1), 0.8)),
    Row(("count", "object", "verb", "attribute", "count", "object"), 4,
        ImageScores((1.0, 0.25, 1.0, 1.0, 0.25, 1.0), (1, 0, 1, 1, 0, 1), 0.4)),
    Row(("count", "attribute", "object", "position", "count", "object"), 3,
        ImageScores((0.0, 1.0, 1.0, 1.0, 1.0, 1.0), (0, 1, 1, 1, 1, 1), 0.3)),
]


def test_figures_against_hand_computed_values() -> None:
    f = figures(ROWS)
    # per image GM: 0.25^(1/3), (0.25 * 0.25)^(1/6) = 0.25^(1/3), 0 (a zero)
    assert f.soft_tifa_gm == pytest.approx(100 * 2 * CUBE_ROOT_QUARTER / 3, abs=1e-12)
    assert f.soft_tifa_am == pytest.approx(100 * (2 / 3 + 4.5 / 6 + 5 / 6) / 3, abs=1e-12)  # 75
    assert f.tifa == pytest.approx(100 * (2 / 3 + 4 / 6 + 5 / 6) / 3, abs=1e-12)
    assert f.vqascore == pytest.approx(50.0, abs=1e-12)
    assert f.skills == pytest.approx({"object": 100 * 4.25 / 5, "attribute": 100 * 2.5 / 3, "count": 100 * 2.75 / 5,
                                      "position": 100.0, "verb": 100.0}, abs=1e-12)
    assert f.skill_counts == {"object": 5, "attribute": 3, "count": 5, "position": 1, "verb": 1}
    assert f.atomicity[3] == pytest.approx(100 * CUBE_ROOT_QUARTER / 2, abs=1e-12)
    assert f.atomicity[4] == pytest.approx(100 * CUBE_ROOT_QUARTER, abs=1e-12)
    assert all(f.atomicity[k] is None for k in range(5, 11))  # the reference would divide by zero
    assert f.atomicity_counts == {3: 2, 4: 1, 5: 0, 6: 0, 7: 0, 8: 0, 9: 0, 10: 0}


def test_figures_use_the_references_order_of_operations() -> None:
    """Bit for bit what evaluation.py's main and soft_tifa_analysis.py compute from the same lists."""
    lists = [list(r.scores.soft) for r in ROWS]
    f = figures(ROWS)
    assert f.soft_tifa_am == 100 * sum([sum(s) / len(s) for s in lists]) / len(lists)
    count_score, count_total = 0, 0
    for score_list, row in zip(lists, ROWS, strict=True):
        for i in range(len(score_list)):
            if row.skills[i] == "count":
                count_score += score_list[i]
                count_total += 1
    assert f.skills["count"] == 100 * count_score / count_total


def test_missing_vqascore_and_empty_skill() -> None:
    rows = [Row(("object",), 3, ImageScores((0.5,), (1,), None))]
    f = figures(rows)
    assert f.vqascore is None
    assert f.skills["verb"] is None and f.skill_counts["verb"] == 0
    with pytest.raises(ValueError, match="no results"):
        figures([])


# --- results files and the summary ------------------------------------------------------------------


def result_line(record: dict, soft: list[float], hard: list[int], vqascore: float | None, **extra: object) -> str:
    return json.dumps({"suite": "geneval2", "filename": "x.png", "metadata": record, "soft_scores": soft,
                       "tifa_scores": hard, "vqascore": vqascore, "model": "m", "dtype": "float32",
                       "evaluator": "k", **extra})


RECORD = {"prompt": "three red cups", "atom_count": 3,
          "vqa_list": [["How many cups are in the image?", "three"], ["Are the cups red?", "Yes"],
                       ["Are there any cups in the image?", "Yes"]],
          "skills": ["count", "attribute", "object"]}


def test_summary_text_prints_the_references_figures() -> None:
    lines = [result_line(RECORD, [0.5, 0.5, 1.0], [1, 0, 1], 0.8),
             result_line(RECORD, [0.25, 1.0, 1.0], [0, 1, 1], 0.4)]
    assert is_results("\n".join(lines))
    report = summarize(parse_results(lines, "r.jsonl"))
    assert report.prompts == 1 and report.figures.images == 2
    text = report.to_text().splitlines()
    gm = 100 * (CUBE_ROOT_QUARTER + 0.25 ** (1 / 3)) / 2
    assert text[5] == f"Soft-TIFA GM (prompt level): {report.figures.soft_tifa_gm}"
    assert report.figures.soft_tifa_gm == pytest.approx(gm)
    assert "Object:    100.0 (2 questions)" in text
    assert "Attribute: 75.0 (2 questions)" in text
    assert "Count:     37.5 (2 questions)" in text
    assert "Verb:      n/a (0 questions)" in text
    assert f"Atomicity=3: {round(gm, 2)} (2 images)" in text
    assert "Atomicity=4: n/a (0 images)" in text
    as_dict = report.to_dict()
    assert as_dict["suite"] == "geneval2" and as_dict["vqascore"] == pytest.approx(60.0)
    assert as_dict["skills"]["count"] == {"score": 37.5, "questions": 2}


@pytest.mark.parametrize(("line", "message"), [
    ('{"suite": "geneval2"}', "missing key(s) metadata, soft_scores, tifa_scores, vqascore"),
    (result_line(RECORD, [0.5, 0.5], [1, 0, 1], 0.8), "'soft_scores' must be 3 non-negative numbers"),
    (result_line(RECORD, [0.5, "x", 1.0], [1, 0, 1], 0.8), "'soft_scores' must be 3 non-negative numbers"),
    (result_line({**RECORD, "skills": ["count"]}, [0.5, 0.5, 1.0], [1, 0, 1], 0.8), "'metadata' is not a GenEval 2"),
    (result_line(RECORD, [0.5, 0.5, 1.0], [1, 0, 1], -1.0), "'vqascore' must be a non-negative number or null"),
    ('{"tag": "counting", "correct": true, "metadata": "{}"}', "not a GenEval 2 result"),
])
def test_malformed_results_name_the_line(line: str, message: str) -> None:
    good = result_line(RECORD, [0.5, 0.5, 1.0], [1, 0, 1], 0.8)
    with pytest.raises(ValueError) as caught:
        parse_results([good, line], "r.jsonl")
    assert str(caught.value).startswith("r.jsonl:2: ") and message in str(caught.value)


def test_summary_command_on_geneval2_results(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text(result_line(RECORD, [0.5, 0.5, 1.0], [1, 0, 1], 0.8) + "\n")
    code, output = stepwise("summary", str(path))
    assert code == 0, output
    assert output.startswith("GenEval 2 summary\n")
    assert "VQA model: m (float32)" in output
    code, output = stepwise("summary", str(path), "--json")
    assert code == 0 and json.loads(output)["soft_tifa_am"] == pytest.approx(100 * 2 / 3)


def test_summary_refuses_mixed_evaluator_settings(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text(result_line(RECORD, [0.5, 0.5, 1.0], [1, 0, 1], 0.8) + "\n"
                    + result_line(RECORD, [0.5, 0.5, 1.0], [1, 0, 1], 0.8, evaluator="other", model="n") + "\n")
    code, output = stepwise("summary", str(path))
    assert code == 1 and "mixes GenEval 2 evaluator settings (m (float32); n (float32))" in output
    code, output = stepwise("summary", str(path), "--allow-mixed-backends")
    assert code == 0 and "Total images: 2" in output


def test_summary_bad_line_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text(result_line(RECORD, [0.5, 0.5, 1.0], [1, 0, 1], 0.8) + "\n{not json\n")
    code, output = stepwise("summary", str(path))
    assert code == 1 and output.strip().splitlines() == [f"Error: {path}:2: not valid JSON (Expecting property "
                                                         "name enclosed in double quotes)"]
