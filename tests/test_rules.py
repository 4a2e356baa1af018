"""GenEval's verdict rules (harness.geneval.rules), scenario by scenario.

Every reason string GenEval's `evaluate()` can write is asserted verbatim here. The port was
also cross-checked against GenEval's own code (evaluate_images.py, extracted and run under
numpy 1.23.5 as GenEval's environment.yml pins it) on 30,000 random scenarios; that harness
is not part of the suite because it needs a second numpy.
"""

from __future__ import annotations

import numpy as np
import pytest

from harness.geneval.classes import COLORS
from harness.geneval.detections import ClassDetections
from harness.geneval.legacy_sort import argsort_like_geneval
from harness.geneval.rules import (
    EvalOptions,
    MissingColorError,
    check_metadata,
    color_requests,
    compute_iou,
    evaluate,
    relative_position,
    select_objects,
)

F32_03 = np.float32(0.3)
F32_09 = np.float32(0.9)
ABOVE_03 = np.nextafter(F32_03, np.float32(1))
ABOVE_09 = np.nextafter(F32_09, np.float32(1))


def dets(*rows: tuple[float, float, float, float, float], colors: tuple[str | None, ...] | None = None):
    """ClassDetections from (x1, y1, x2, y2, score) rows, like one of mmdet 2.x's (k, 5) arrays."""
    arr = np.array(rows, dtype=np.float32).reshape(-1, 5)
    return ClassDetections(boxes=arr[:, :4], scores=arr[:, 4], colors=colors)


def box(x1: float, y1: float, x2: float, y2: float, score: float = 0.95):
    return (x1, y1, x2, y2, score)


def verdict(metadata, detections, **options):
    v = evaluate(metadata, detections, EvalOptions(**options))
    assert v.correct == (v.reason == "")
    return v


# --- metadata as GenEval's prompts/create_prompts.py writes it -------------------------------

def single(cls):
    return {"tag": "single_object", "include": [{"class": cls, "count": 1}], "prompt": f"a photo of a {cls}"}


def two(a, b):
    return {"tag": "two_object", "include": [{"class": a, "count": 1}, {"class": b, "count": 1}],
            "prompt": f"a photo of a {a} and a {b}"}


def counting(cls, n):
    return {"tag": "counting", "include": [{"class": cls, "count": n}],
            "exclude": [{"class": cls, "count": n + 1}], "prompt": f"a photo of {n} {cls}s"}


def colors(cls, color):
    return {"tag": "colors", "include": [{"class": cls, "count": 1, "color": color}],
            "prompt": f"a photo of a {color} {cls}"}


def position(a, rel, b):
    return {"tag": "position", "include": [{"class": b, "count": 1},
                                           {"class": a, "count": 1, "position": [rel, 0]}],
            "prompt": f"a photo of a {a} {rel} a {b}"}


def color_attr(a, ca, b, cb):
    return {"tag": "color_attr", "include": [{"class": a, "count": 1, "color": ca},
                                             {"class": b, "count": 1, "color": cb}],
            "prompt": f"a photo of a {ca} {a} and a {cb} {b}"}


LEFT = box(0, 0, 10, 10)
RIGHT = box(20, 0, 30, 10)


# --- single_object / two_object --------------------------------------------------------------

def test_single_object_found():
    v = verdict(single("dog"), {"dog": dets(box(1, 2, 3, 4, 0.5))})
    assert (v.correct, v.reason) == (True, "")
    assert v.details == {"dog": [[1.0, 2.0, 3.0, 4.0, float(np.float32(0.5))]]}


def test_single_object_missing_and_below_threshold():
    assert verdict(single("dog"), {}).reason == "expected dog>=1, found 0"
    assert verdict(single("dog"), {"cat": dets(LEFT)}).reason == "expected dog>=1, found 0"
    v = verdict(single("dog"), {"dog": dets(box(0, 0, 1, 1, 0.2))})
    assert (v.correct, v.reason, v.details) == (False, "expected dog>=1, found 0", {})


def test_two_object_reasons_are_joined_with_newlines():
    assert verdict(two("cat", "dog"), {"cat": dets(LEFT), "dog": dets(RIGHT)}).correct
    assert verdict(two("cat", "dog"), {"cat": dets(LEFT)}).reason == "expected dog>=1, found 0"
    assert verdict(two("cat", "dog"), {}).reason == "expected cat>=1, found 0\nexpected dog>=1, found 0"


# --- thresholds --------------------------------------------------------------------------

def test_threshold_is_strict_and_float32():
    # float32(0.3) is 0.30000001192..., above 0.3 in float64; GenEval compares in float32.
    assert float(F32_03) > 0.3
    assert verdict(single("dog"), {"dog": dets(box(0, 0, 1, 1, F32_03))}).reason == "expected dog>=1, found 0"
    assert verdict(single("dog"), {"dog": dets(box(0, 0, 1, 1, ABOVE_03))}).correct
    just_below = np.nextafter(np.float32(0.5), np.float32(0))
    d = {"dog": dets(box(0, 0, 1, 1, 0.5), box(0, 0, 1, 1, just_below), box(0, 0, 1, 1, ABOVE_03))}
    assert select_objects(d, "single_object", EvalOptions(threshold=0.5)) == {}
    assert select_objects(d, "single_object", EvalOptions(threshold=float(just_below))) == {"dog": [0]}


def test_counting_threshold_applies_to_every_class():
    d = {
        "apple": dets(box(0, 0, 1, 1, F32_09), box(0, 0, 1, 1, ABOVE_09), box(0, 0, 1, 1, 0.95)),
        "dog": dets(box(0, 0, 1, 1, 0.8)),
    }
    assert select_objects(d, "counting", EvalOptions()) == {"apple": [2, 1]}
    assert select_objects(d, "single_object", EvalOptions()) == {"apple": [2, 1, 0], "dog": [0]}
    assert select_objects(d, "counting", EvalOptions(counting_threshold=0.5)) == {"apple": [2, 1, 0], "dog": [0]}
    v = verdict(counting("apple", 3), d)
    assert v.reason == "expected apple>=3, found 2"
    assert list(v.details) == ["apple"]


# --- counting ----------------------------------------------------------------------------

def test_counting_exact_too_few_too_many():
    apples = [box(10 * i, 0, 10 * i + 5, 5, 0.95) for i in range(5)]
    assert verdict(counting("apple", 3), {"apple": dets(*apples[:3])}).correct
    assert verdict(counting("apple", 3), {"apple": dets(*apples[:2])}).reason == "expected apple>=3, found 2"
    assert verdict(counting("apple", 3), {"apple": dets(*apples[:4])}).reason == "expected apple<4, found 4"
    assert verdict(counting("apple", 3), {"apple": dets(*apples)}).reason == "expected apple<4, found 5"


def test_exclude_only_metadata():
    md = {"tag": "counting", "prompt": "p", "exclude": [{"class": "cup", "count": 2}]}
    assert verdict(md, {}).correct
    assert verdict(md, {"cup": dets(LEFT)}).correct
    assert verdict(md, {"cup": dets(LEFT, RIGHT)}).reason == "expected cup<2, found 2"


def test_max_objects_caps_each_class():
    many = [box(i, 0, i + 1, 1, 0.95 - i / 1000) for i in range(20)]
    d = {"apple": dets(*many), "cup": dets(*many)}
    sel = select_objects(d, "counting", EvalOptions())
    assert sel == {"apple": list(range(16)), "cup": list(range(16))}
    assert verdict(counting("apple", 17), d).reason == "expected apple>=17, found 16"
    assert verdict(counting("apple", 16), d).correct  # the exclude clause (17) can never trigger
    assert verdict(counting("apple", 2), d, max_objects=2).correct
    assert verdict(counting("apple", 2), d, max_objects=0).reason == "expected apple>=2, found 0"
    assert select_objects(d, "counting", EvalOptions(max_objects=3))["apple"] == [0, 1, 2]


# --- overlap suppression -------------------------------------------------------------------

def test_compute_iou_pixel_convention_and_float64():
    assert compute_iou(np.float32([0, 0, 9, 9]), np.float32([0, 0, 9, 4])) == 0.5
    assert compute_iou(np.float32([0, 0, 9, 9]), np.float32([20, 20, 29, 29])) == 0.0
    # Widths are float32 differences, +1 and the rest in float64 (numpy 1.23 promotion).
    iou = compute_iou(np.float32([0, 0, 1, 0]), np.float32([1, 0, 2, 0]))
    assert iou == 1 / 3 and type(iou) is float
    # Degenerate boxes: zero union.
    assert compute_iou(np.float32([5, 5, 3, 3]), np.float32([5, 5, 3, 3])) == 0


def test_max_overlap_suppresses_lower_scored_overlaps():
    big, half, far = box(0, 0, 9, 9, 0.99), box(0, 0, 9, 4, 0.98), box(50, 50, 59, 59, 0.97)
    d = {"apple": dets(big, half, far)}
    assert select_objects(d, "counting", EvalOptions())["apple"] == [0, 1, 2]
    # IoU(big, half) == 0.5 exactly: suppressed at max_overlap 0.5 (kept only when IoU < max).
    assert select_objects(d, "counting", EvalOptions(max_overlap=0.5))["apple"] == [0, 2]
    assert select_objects(d, "counting", EvalOptions(max_overlap=0.51))["apple"] == [0, 1, 2]
    assert verdict(counting("apple", 3), d, max_overlap=0.5).reason == "expected apple>=3, found 2"
    assert verdict(counting("apple", 3), d).correct
    # Only kept boxes suppress: a suppressed box does not suppress the ones after it.
    chain = {"apple": dets(box(0, 0, 9, 9, 0.99), box(5, 0, 14, 9, 0.98), box(10, 0, 19, 9, 0.97))}
    assert select_objects(chain, "counting", EvalOptions(max_overlap=0.3))["apple"] == [0, 2]


def test_max_overlap_compares_in_float64():
    # IoU here is exactly 1/3 in float64; float32(1/3) is slightly larger. GenEval (numpy
    # 1.23) keeps the box at max_overlap=float32(1/3); a float32 IoU would drop it.
    d = {"apple": dets(box(0, 0, 1, 0, 0.99), box(1, 0, 2, 0, 0.98))}
    at = float(np.float32(1 / 3))
    assert select_objects(d, "counting", EvalOptions(max_overlap=at))["apple"] == [0, 1]
    assert select_objects(d, "counting", EvalOptions(max_overlap=1 / 3))["apple"] == [0]


# --- colours -------------------------------------------------------------------------------

def test_colors_pass_and_fail():
    d = {"car": dets(LEFT, colors=("red",))}
    assert verdict(colors("car", "red"), d).correct
    d = {"car": dets(LEFT, colors=("blue",))}
    assert verdict(colors("car", "red"), d).reason == "expected red car>=1, found 0 red; and 1 blue"


def test_color_reason_lists_colours_in_geneval_order():
    md = {"tag": "colors", "prompt": "p", "include": [{"class": "car", "count": 3, "color": "red"}]}
    rows = [box(0, 0, 1, 1, 0.9 - i / 100) for i in range(4)]
    # Best first: white, blue, white, (red: 4th, never looked at).
    d = {"car": dets(*rows, colors=("white", "blue", "white", "red"))}
    assert verdict(md, d).reason == "expected red car>=3, found 0 red; and 1 blue, 2 white"
    d = {"car": dets(*rows, colors=("white", "red", "pink", "red"))}
    assert verdict(md, d).reason == "expected red car>=3, found 1 red; and 1 red, 1 pink, 1 white"
    d = {"car": dets(*rows, colors=("red", "red", "red", "blue"))}
    assert verdict(md, d).correct
    assert list(COLORS).index("pink") < list(COLORS).index("white")


def test_colors_only_requested_for_first_count_when_count_is_met():
    md = {"tag": "colors", "prompt": "p", "include": [{"class": "car", "count": 2, "color": "red"}]}
    calls = []

    def colors_of(cls, rows):
        calls.append((cls, list(rows)))
        return ["red"] * len(rows)

    d = {"car": dets(box(0, 0, 1, 1, 0.5))}
    v = evaluate(md, d, colors_of=colors_of)
    assert (v.reason, calls) == ("expected car>=2, found 1", [])
    assert color_requests(md, select_objects(d, "colors", EvalOptions())) == {}

    d = {"car": dets(box(0, 0, 1, 1, 0.5), box(0, 0, 1, 1, 0.7), box(0, 0, 1, 1, 0.6))}
    assert evaluate(md, d, colors_of=colors_of).correct
    assert calls == [("car", [1, 2])]
    assert color_requests(md, select_objects(d, "colors", EvalOptions())) == {"car": [1, 2]}


def test_color_requests_merge_clauses_and_skip_colourless_ones():
    md = {"tag": "color_attr", "prompt": "p", "include": [
        {"class": "car", "count": 1, "color": "red"},
        {"class": "car", "count": 2, "color": "blue"},
        {"class": "dog", "count": 1},
    ]}
    sel = {"car": [4, 2, 7], "dog": [0]}
    assert color_requests(md, sel) == {"car": [4, 2]}
    assert color_requests(single("dog"), sel) == {}


def test_missing_colour_is_an_error_only_when_needed():
    d = {"car": dets(box(0, 0, 1, 1, 0.9), box(0, 0, 1, 1, 0.8), colors=(None, "red"))}
    with pytest.raises(MissingColorError, match="'car'"):
        evaluate(colors("car", "red"), d)
    d = {"car": dets(box(0, 0, 1, 1, 0.9), box(0, 0, 1, 1, 0.8), colors=("red", None))}
    assert evaluate(colors("car", "red"), d).correct
    with pytest.raises(MissingColorError):
        evaluate(colors("car", "red"), {"car": dets(LEFT)})
    # No colour clause: colours never needed.
    assert evaluate(single("car"), {"car": dets(LEFT)}).correct


def test_color_attr():
    md = color_attr("car", "red", "bench", "green")
    d = {"car": dets(LEFT, colors=("red",)), "bench": dets(RIGHT, colors=("green",))}
    assert verdict(md, d).correct
    d = {"car": dets(LEFT, colors=("black",)), "bench": dets(RIGHT, colors=("green",))}
    assert verdict(md, d).reason == "expected red car>=1, found 0 red; and 1 black"
    d = {"car": dets(LEFT, colors=("black",)), "bench": dets(RIGHT, colors=("orange",))}
    assert verdict(md, d).reason == (
        "expected red car>=1, found 0 red; and 1 black\n"
        "expected green bench>=1, found 0 green; and 1 orange"
    )
    d = {"bench": dets(RIGHT, colors=("green",))}
    assert verdict(md, d).reason == "expected car>=1, found 0"


# --- position ------------------------------------------------------------------------------

def test_relative_position_geometry():
    a, b = np.float32(LEFT[:4]), np.float32(RIGHT[:4])
    assert relative_position(a, b, 0.1) == {"left of"}
    assert relative_position(b, a, 0.1) == {"right of"}
    top, bottom = np.float32([0, 0, 10, 10]), np.float32([0, 20, 10, 30])
    assert relative_position(top, bottom, 0.1) == {"above"}
    assert relative_position(bottom, top, 0.1) == {"below"}
    diag_a, diag_b = np.float32([20, 0, 30, 10]), np.float32([0, 20, 10, 30])
    assert relative_position(diag_a, diag_b, 0.1) == {"right of", "above"}
    # Centre distance 20 == 1.0 * (10 + 10): the sizes swallow the offset.
    assert relative_position(a, b, 1.0) == set()
    assert relative_position(a, a, 0.1) == set()


def test_position_pass_and_fail_reasons():
    md = position("cat", "left of", "dog")
    assert verdict(md, {"cat": dets(LEFT), "dog": dets(RIGHT)}).correct
    v = verdict(md, {"cat": dets(RIGHT), "dog": dets(LEFT)})
    assert v.reason == "expected cat left of target, found right of target"


def test_position_reason_with_no_relation():
    md = position("cat", "above", "dog")
    v = verdict(md, {"cat": dets(box(0, 0, 10, 10)), "dog": dets(box(1, 1, 11, 11))})
    assert v.reason == "expected cat above target, found  target"


def test_position_reason_with_two_relations_in_fixed_order():
    md = position("cat", "left of", "dog")
    v = verdict(md, {"cat": dets(box(20, 0, 30, 10)), "dog": dets(box(0, 20, 10, 30))})
    assert v.reason == "expected cat left of target, found right of and above target"
    d = {"cat": dets(box(0, 20, 10, 30)), "dog": dets(box(20, 0, 30, 10))}
    assert verdict(position("cat", "below", "dog"), d).correct  # one of two relations suffices
    v = verdict(position("cat", "above", "dog"), d)
    assert v.reason == "expected cat above target, found left of and below target"


def test_position_no_target():
    md = position("cat", "left of", "dog")
    v = verdict(md, {"cat": dets(LEFT)})
    assert v.reason == "expected dog>=1, found 0\nno target for cat to be left of"
    # A target clause that failed its colour check is no target either.
    md = {"tag": "position", "prompt": "p", "include": [
        {"class": "dog", "count": 1, "color": "red"},
        {"class": "cat", "count": 1, "position": ["left of", 0]},
    ]}
    v = verdict(md, {"cat": dets(LEFT), "dog": dets(RIGHT, colors=("blue",))})
    assert v.reason == "expected red dog>=1, found 0 red; and 1 blue\nno target for cat to be left of"
    # ... while a missing object yields only the count reason, never "no target".
    v = verdict(md, {"dog": dets(RIGHT, colors=("red",))})
    assert v.reason == "expected cat>=1, found 0"


def test_position_threshold():
    md = position("cat", "left of", "dog")
    d = {"cat": dets(LEFT), "dog": dets(RIGHT)}
    assert verdict(md, d, position_threshold=0.1).correct
    assert verdict(md, d, position_threshold=0.0).correct
    assert verdict(md, d, position_threshold=1.0).reason == "expected cat left of target, found  target"


def test_position_checks_every_pair_of_first_count_objects():
    md = {"tag": "position", "prompt": "p", "include": [
        {"class": "dog", "count": 2},
        {"class": "cat", "count": 1, "position": ["left of", 0]},
    ]}
    cat = dets(box(0, 0, 10, 10))
    dogs = dets(box(20, 0, 30, 10, 0.9), box(40, 0, 50, 10, 0.8), box(-40, 0, -30, 10, 0.7))
    assert verdict(md, {"cat": cat, "dog": dogs}).correct  # the third dog is never compared
    dogs = dets(box(20, 0, 30, 10, 0.9), box(-40, 0, -30, 10, 0.8))
    v = verdict(md, {"cat": cat, "dog": dogs})
    assert v.reason == "expected cat left of target, found right of target"


def test_mixed_failures_join_in_clause_order():
    md = {"tag": "two_object", "prompt": "p",
          "include": [{"class": "cup", "count": 2}, {"class": "car", "count": 1, "color": "red"}],
          "exclude": [{"class": "dog", "count": 1}]}
    d = {"cup": dets(LEFT), "car": dets(RIGHT, colors=("blue",)), "dog": dets(LEFT, LEFT)}
    assert verdict(md, d).reason == (
        "expected cup>=2, found 1\n"
        "expected red car>=1, found 0 red; and 1 blue\n"
        "expected dog<1, found 2"
    )


# --- tie order ----------------------------------------------------------------------------

def test_ties_resolve_as_in_genevals_numpy():
    # numpy 1.23 sorts <= 16 scores by insertion sort (stable), so after GenEval's [::-1]
    # tied detections come latest-row first; the details and the checked box follow.
    d = {"cat": dets(box(0, 0, 1, 1, 0.9), box(0, 0, 2, 2, 0.9), box(0, 0, 3, 3, 0.9),
                     box(0, 0, 1, 1, 0.3), box(0, 0, 1, 1, 0.5), box(0, 0, 1, 1, 0.5))}
    assert select_objects(d, "single_object", EvalOptions())["cat"] == [2, 1, 0, 5, 4]
    assert select_objects(d, "single_object", EvalOptions(max_objects=2))["cat"] == [2, 1]
    md = position("cat", "left of", "dog")
    d = {"cat": dets(box(100, 0, 110, 10, 0.8), box(0, 0, 10, 10, 0.8)), "dog": dets(RIGHT)}
    assert verdict(md, d).correct  # row 1 (left of the dog) is the one checked


# Orders printed by numpy 1.23.5's np.argsort (GenEval's pin) for these float32 arrays.
GOLDEN_QUICKSORT = (
    [0.3, 0.9, 0.9, 0.3, 0.5, 0.9, 0.5, 0.9, 0.9, 0.3, 0.9, 0.3, 0.5, 0.5, 0.9, 0.3, 0.3, 0.9, 0.5, 0.9],
    [0, 16, 15, 11, 9, 3, 6, 18, 12, 13, 4, 5, 7, 8, 10, 14, 2, 1, 17, 19],
)
GOLDEN_HEAPSORT = (  # a median-of-3 killer: the introsort falls back to heapsort, with ties
    [0, 20, 2, 23, 4, 39, 6, 37, 8, 19, 10, 36, 12, 35, 14, 17, 16, 16, 18, 1, 3, 5, 7, 9, 11, 13, 15,
     17, 19, 21, 31, 30, 29, 28, 27, 26, 25, 24, 16, 11],
    [0, 19, 2, 20, 4, 21, 6, 22, 8, 23, 10, 24, 39, 12, 25, 14, 26, 38, 16, 17, 15, 27, 18, 28, 9, 1,
     29, 3, 37, 36, 35, 34, 33, 32, 31, 30, 13, 11, 7, 5],
)


@pytest.mark.parametrize("values, order", [GOLDEN_QUICKSORT, GOLDEN_HEAPSORT], ids=["quicksort", "heapsort"])
def test_argsort_matches_numpy_1_23(values, order):
    assert argsort_like_geneval(np.array(values, dtype=np.float32)) == order


def test_argsort_edge_cases():
    assert argsort_like_geneval(np.float32([])) == []
    assert argsort_like_geneval(np.float32([0.5])) == [0]
    assert argsort_like_geneval(np.float32([0.9, 0.1, 0.5])) == [1, 2, 0]
    assert argsort_like_geneval(np.float32([np.nan, 0.5, np.nan, 0.5])) == [1, 3, 0, 2]


# --- options -------------------------------------------------------------------------------

def test_options_from_strings():
    opts = EvalOptions.from_strings({"threshold": "0.5", "counting_threshold": "0.8", "max_objects": "3",
                                     "max_overlap": "0.6", "position_threshold": "0.2"})
    assert opts == EvalOptions(threshold=0.5, counting_threshold=0.8, max_objects=3, max_overlap=0.6,
                               position_threshold=0.2)
    assert EvalOptions.from_strings({}) == EvalOptions()
    assert EvalOptions().to_dict() == {"threshold": 0.3, "counting_threshold": 0.9, "max_objects": 16,
                                       "max_overlap": 1.0, "position_threshold": 0.1}


@pytest.mark.parametrize("options, message", [
    ({"model": "mask2former"}, "unknown option 'model'"),
    ({"thresh": "0.3"}, "unknown option 'thresh'"),
    ({"max_objects": "1.5"}, "max_objects='1.5' is not a valid int"),
    ({"threshold": "high"}, "threshold='high' is not a valid float"),
    ({"threshold": "nan"}, "threshold must be a finite number"),
    ({"max_overlap": "inf"}, "max_overlap must be a finite number"),
    ({"max_objects": "-1"}, "max_objects must be >= 0"),
])
def test_options_rejected(options, message):
    with pytest.raises(ValueError, match=message):
        EvalOptions.from_strings(options)


# --- metadata validation -------------------------------------------------------------------

VALID_METADATA = [
    # Lines of the form of GenEval's evaluation_metadata.jsonl, one or more per tag.
    {"tag": "single_object", "include": [{"class": "bench", "count": 1}], "prompt": "a photo of a bench"},
    {"tag": "single_object", "include": [{"class": "traffic light", "count": 1}],
     "prompt": "a photo of a traffic light"},
    {"tag": "two_object", "include": [{"class": "parking meter", "count": 1},
                                      {"class": "teddy bear", "count": 1}],
     "prompt": "a photo of a parking meter and a teddy bear"},
    {"tag": "counting", "include": [{"class": "backpack", "count": 2}],
     "exclude": [{"class": "backpack", "count": 3}], "prompt": "a photo of two backpacks"},
    {"tag": "counting", "include": [{"class": "pizza", "count": 4}],
     "exclude": [{"class": "pizza", "count": 5}], "prompt": "a photo of four pizzas"},
    {"tag": "colors", "include": [{"class": "potted plant", "count": 1, "color": "purple"}],
     "prompt": "a photo of a purple potted plant"},
    {"tag": "position", "include": [{"class": "skateboard", "count": 1},
                                    {"class": "bird", "count": 1, "position": ["below", 0]}],
     "prompt": "a photo of a bird below a skateboard"},
    {"tag": "position", "include": [{"class": "parking meter", "count": 1},
                                    {"class": "zebra", "count": 1, "position": ("right of", 0)}],
     "prompt": "a photo of a zebra right of a parking meter"},
    {"tag": "color_attr", "include": [{"class": "tennis racket", "count": 1, "color": "purple"},
                                      {"class": "sink", "count": 1, "color": "black"}],
     "prompt": "a photo of a purple tennis racket and a black sink"},
]


@pytest.mark.parametrize("metadata", VALID_METADATA, ids=lambda m: m["prompt"])
def test_check_metadata_accepts_geneval_lines(metadata):
    assert check_metadata(metadata) == []


@pytest.mark.parametrize("metadata, message", [
    ([], "metadata must be a JSON object, got list"),
    ({"prompt": "p"}, "missing or non-string 'tag'"),
    ({"tag": "spatial", "prompt": "p"}, "unknown tag 'spatial'"),
    ({"tag": "counting"}, "missing or non-string 'prompt'"),
    ({"tag": "counting", "prompt": "p", "include": {"class": "cup", "count": 1}}, "'include' must be a list"),
    ({"tag": "counting", "prompt": "p", "exclude": "cup"}, "'exclude' must be a list"),
    ({"tag": "counting", "prompt": "p", "include": ["cup"]}, "include[0]: must be an object"),
    ({"tag": "counting", "prompt": "p", "include": [{"class": "mug", "count": 1}]},
     "include[0]: 'class' 'mug' is not one of GenEval's 80 class names"),
    ({"tag": "counting", "prompt": "p", "include": [{"class": "cup"}]},
     "include[0]: 'count' must be a non-negative integer, got None"),
    ({"tag": "counting", "prompt": "p", "include": [{"class": "cup", "count": True}]},
     "'count' must be a non-negative integer, got True"),
    ({"tag": "counting", "prompt": "p", "exclude": [{"class": "cup", "count": -1}]},
     "exclude[0]: 'count' must be a non-negative integer, got -1"),
    ({"tag": "counting", "prompt": "p", "include": [{"class": "cup", "count": "2"}]},
     "'count' must be a non-negative integer, got '2'"),
    ({"tag": "colors", "prompt": "p", "include": [{"class": "cup", "count": 1, "color": "grey"}]},
     "include[0]: 'color' 'grey' is not one of red, orange"),
    ({"tag": "position", "prompt": "p", "include": [{"class": "cup", "count": 1},
                                                    {"class": "dog", "count": 1, "position": ["near", 0]}]},
     "include[1]: 'position' must be [relation, index of an earlier include clause], got ['near', 0]"),
    ({"tag": "position", "prompt": "p", "include": [{"class": "cup", "count": 1, "position": ["above", 0]}]},
     "include[0]: 'position' must be [relation, index of an earlier include clause]"),
    ({"tag": "position", "prompt": "p", "include": [{"class": "cup", "count": 1},
                                                    {"class": "dog", "count": 1, "position": ["above", 2]}]},
     "include[1]: 'position'"),
    ({"tag": "position", "prompt": "p", "include": [{"class": "cup", "count": 1},
                                                    {"class": "dog", "count": 1, "position": "above"}]},
     "include[1]: 'position'"),
    ({"tag": "position", "prompt": "p", "include": [{"class": "cup", "count": 1}],
      "exclude": [{"class": "dog", "count": 1, "position": ["above", 0]}]},
     "exclude[0]: 'position'"),
])
def test_check_metadata_rejects(metadata, message):
    problems = check_metadata(metadata)
    assert problems, metadata
    assert any(message in p for p in problems), problems


def test_check_metadata_reports_every_problem():
    problems = check_metadata({"tag": "nope", "include": [{"class": "mug", "count": -2, "color": "teal"}]})
    assert len(problems) == 5, problems
