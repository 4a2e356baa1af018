"""Properties of GenEval's verdict rules over random detections (hypothesis)."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.geneval.classes import COLORS
from harness.geneval.detections import ClassDetections
from harness.geneval.legacy_sort import argsort_like_geneval
from harness.geneval.rules import (
    RELATIONS,
    EvalOptions,
    evaluate,
    relative_position,
    select_objects,
)

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CLASSES = ("cat", "dog", "cup")  # the metadata's classes; "kite" never appears in metadata
SCORE_SET = [np.float32(x) for x in (0.1, 0.3, 0.5, 0.9, 0.95)] + [
    np.nextafter(np.float32(0.3), np.float32(1)), np.nextafter(np.float32(0.9), np.float32(1)),
]

coord = st.floats(0, 200, width=32)
scores = st.one_of(st.sampled_from(SCORE_SET), st.floats(0, 1, width=32))


size = st.floats(0, 100, width=32)
boxes = st.tuples(coord, coord, size, size).map(lambda b: [b[0], b[1], b[0] + b[2], b[1] + b[3]])
row = st.tuples(scores, boxes, st.sampled_from(COLORS))


def build(rows: list) -> ClassDetections:
    return ClassDetections(boxes=np.array([r[1] for r in rows], dtype=np.float32).reshape(-1, 4),
                           scores=np.array([r[0] for r in rows], dtype=np.float32),
                           colors=tuple(r[2] for r in rows))


def class_detections(unique_scores: bool = False):
    unique_by = (lambda r: float(r[0])) if unique_scores else None
    return st.lists(row, max_size=12, unique_by=unique_by).map(build)


def image_detections(unique_scores: bool = False):
    return st.dictionaries(st.sampled_from(CLASSES), class_detections(unique_scores), max_size=len(CLASSES))


@st.composite
def metadata(draw):
    tag = draw(st.sampled_from(["single_object", "two_object", "counting", "colors", "position", "color_attr"]))
    a, b = draw(st.permutations(CLASSES))[:2]
    ca, cb = draw(st.permutations(COLORS))[:2]
    if tag == "single_object":
        include = [{"class": a, "count": 1}]
    elif tag == "two_object":
        include = [{"class": a, "count": 1}, {"class": b, "count": 1}]
    elif tag == "counting":
        n = draw(st.integers(1, 13))
        return {"tag": tag, "prompt": "p", "include": [{"class": a, "count": n}],
                "exclude": [{"class": a, "count": n + 1}]}
    elif tag == "colors":
        include = [{"class": a, "count": 1, "color": ca}]
    elif tag == "position":
        include = [{"class": b, "count": 1},
                   {"class": a, "count": 1, "position": [draw(st.sampled_from(RELATIONS)), 0]}]
    else:
        include = [{"class": a, "count": 1, "color": ca}, {"class": b, "count": 1, "color": cb}]
    return {"tag": tag, "prompt": "p", "include": include}


options = st.builds(
    EvalOptions,
    threshold=st.sampled_from([0.3, 0.5, 0.0, 0.9]),
    counting_threshold=st.sampled_from([0.9, 0.5]),
    max_objects=st.integers(0, 14),
    max_overlap=st.sampled_from([1.0, 0.5, 0.3]),
    position_threshold=st.sampled_from([0.1, 0.0, 0.3]),
)


def as_tuple(v):
    return v.correct, v.reason, v.details


@SETTINGS
@given(image_detections(), st.sampled_from(["single_object", "counting"]), options,
       st.floats(0, 1), st.floats(0, 1))
def test_raising_the_threshold_keeps_a_prefix(dets, tag, opts, t1, t2):
    low, high = sorted((t1, t2))
    sel_low = select_objects(dets, tag, EvalOptions(**{**opts.to_dict(), "threshold": low,
                                                       "counting_threshold": low}))
    sel_high = select_objects(dets, tag, EvalOptions(**{**opts.to_dict(), "threshold": high,
                                                        "counting_threshold": high}))
    for name, rows in sel_high.items():
        assert rows == sel_low[name][: len(rows)]
    assert sum(map(len, sel_high.values())) <= sum(map(len, sel_low.values()))


@SETTINGS
@given(image_detections(unique_scores=True), metadata(), options, st.randoms(use_true_random=False))
def test_verdict_invariant_under_permutation_of_distinct_scores(dets, md, opts, rnd):
    shuffled = {}
    for name, d in dets.items():
        perm = list(range(len(d)))
        rnd.shuffle(perm)
        shuffled[name] = ClassDetections(boxes=d.boxes[perm], scores=d.scores[perm],
                                         colors=tuple(d.colors[i] for i in perm))
    assert as_tuple(evaluate(md, shuffled, opts)) == as_tuple(evaluate(md, dets, opts))


@SETTINGS
@given(image_detections(), metadata(), options, st.data())
def test_unrelated_detections_below_threshold_change_nothing(dets, md, opts, data):
    threshold = opts.counting_threshold if md["tag"] == "counting" else opts.threshold
    n = data.draw(st.integers(1, 5))
    top = float(np.float32(threshold))  # float32(threshold) itself is not above the threshold
    low = data.draw(st.lists(st.floats(0, top, width=32), min_size=n, max_size=n))
    kite = ClassDetections(boxes=np.zeros((n, 4), np.float32), scores=np.array(low, np.float32),
                           colors=("red",) * n)
    assert as_tuple(evaluate(md, {**dets, "kite": kite}, opts)) == as_tuple(evaluate(md, dets, opts))


@SETTINGS
@given(image_detections(), metadata(), options)
def test_correct_iff_no_reason(dets, md, opts):
    v = evaluate(md, dets, opts)
    assert v.correct == (v.reason == "")
    # At most one reason per clause: a failed count or colour check skips the position check.
    assert v.correct or len(v.reason.split("\n")) <= len(md.get("include", [])) + len(md.get("exclude", []))
    for name, rows in select_objects(dets, md["tag"], opts).items():
        assert [r[4] for r in v.details[name]] == [float(dets[name].scores[i]) for i in rows]
        assert all(r[4] > np.float32(opts.counting_threshold if md["tag"] == "counting" else opts.threshold)
                   for r in v.details[name])


@SETTINGS
@given(image_detections(), st.sampled_from(CLASSES), st.integers(0, 13), options)
def test_counting_is_exact_count_and_exclude_is_the_upper_half(dets, cls, n, opts):
    found = len(select_objects(dets, "counting", opts).get(cls, []))
    exclude_only = {"tag": "counting", "prompt": "p", "exclude": [{"class": cls, "count": n + 1}]}
    v = evaluate(exclude_only, dets, opts)
    assert v.correct == (found <= n)
    if not v.correct:
        assert v.reason == f"expected {cls}<{n + 1}, found {found}"
    include_only = {"tag": "counting", "prompt": "p", "include": [{"class": cls, "count": n}]}
    assert evaluate(include_only, dets, opts).correct == (found >= n)
    both = {**exclude_only, "include": include_only["include"]}
    assert evaluate(both, dets, opts).correct == (found == n)


@SETTINGS
@given(boxes, boxes, st.sampled_from([0.0, 0.1, 0.3, 1.0]))
def test_relative_position_is_antisymmetric(a, b, threshold):
    a32, b32 = np.array(a, np.float32), np.array(b, np.float32)
    ab = relative_position(a32, b32, threshold)
    ba = relative_position(b32, a32, threshold)
    mirror = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
    assert {mirror[r] for r in ab} == ba
    assert not ({"left of", "right of"} <= ab or {"above", "below"} <= ab)


@SETTINGS
@given(st.lists(scores, max_size=60))
def test_argsort_like_geneval_sorts(values):
    arr = np.array(values, dtype=np.float32)
    order = argsort_like_geneval(arr)
    assert sorted(order) == list(range(len(values)))
    assert all(arr[i] <= arr[j] for i, j in itertools.pairwise(order))
    if len(set(values)) == len(values):
        assert order == np.argsort(arr, kind="stable").tolist()
