"""Exact, faster instance post-processing for mmdet's Mask2Former (CPU).

mmdet upsamples every query's mask to the padded input and then to the image size, and scores,
binarises and boxes the mask once per selected (query, class) pair, up to max_per_image = 100
times per image; here that is done once per selected query. The results are bitwise mmdet's
(tests/test_mmdet_postprocess.py and tests/test_mmdet_backend.py compare them with
`model.test_step`), which takes the care described below.

Nothing heavy is imported at module import (no torch, no mmdet).
"""

from __future__ import annotations

import functools
from typing import Any

# mmdet 3.x computes a MaskFormer's instances in three steps, which `predict_instances` mirrors
# call for call (same ops, same arguments, same order):
#   MaskFormer.predict            extract_feat, panoptic_head.predict, panoptic_fusion_head.predict
#   MaskFormerHead.predict        the head's forward, last decoder layer, and the masks of ALL queries
#                                 upsampled to batch_input_shape
#   MaskFormerFusionHead.predict  per image: crop to img_shape, upsample to ori_shape (rescale=True,
#                                 as test_step predicts), then instance_postprocess: softmax, top-k over
#                                 (query, class) pairs, things only, and per pair: binarise (logit > 0),
#                                 mask score, mask2bbox
# Ours takes the top-k from the class logits first, then upsamples, scores and boxes each selected
# query once. Every value comes from the same torch kernel on the same input as in mmdet; two of
# torch's CPU kernels give results that depend on the tensor's shape, not only on its values:
#   * bilinear upsampling takes a channels-last kernel, vectorised over channels (a channel's result
#     then depends on its place among them), for outputs with H + W <= 128, channels-last inputs with
#     C > 3, or C == 3 on one thread (upsample_bilinear2d_kernel_impl_float in ATen's
#     UpSampleKernel.cpp); otherwise a per-element kernel, where it does not. We upsample only the
#     selected queries when mmdet's call and ours both get the per-element kernel, else all of them.
#   * sigmoid of a contiguous tensor runs in SIMD blocks and the rest of each thread's chunk by the
#     scalar formula, which rounds differently for a few % of inputs. Which elements of mmdet's
#     (pairs, H, W) tensor took the scalar formula depends on its size and the thread count only: we
#     find them by probing torch with a value on which the two formulas disagree, and recompute the
#     few rows they touch. Row sums are computed row by row, except in a one-row tensor.

# What MaskFormerFusionHead reads from its test_cfg. panoptic_on and the last three shape panoptic
# results only, which this backend does not read; the others are mirrored or refused.
_FUSION_TEST_CFG_KEYS = frozenset({"instance_on", "semantic_on", "panoptic_on", "max_per_image",
                                   "object_mask_thr", "iou_thr", "filter_low_score"})
# Elements per block in the sigmoid probe: below ATen's GRAIN_SIZE (one thread runs it) and a
# multiple of every SIMD width, so a contiguous block of this size is computed by SIMD alone.
_SIGMOID_BLOCK = 4096


class UnsupportedPostprocessError(RuntimeError):
    """The model or its test_cfg asks for post-processing that `predict_instances` does not mirror."""


def check_fast_postprocess_supported(model: Any) -> None:
    """Raise unless `predict_instances(model, ...)` gives exactly `model.test_step(...)`'s instances."""
    from mmdet.models.dense_heads import MaskFormerHead
    from mmdet.models.detectors import MaskFormer
    from mmdet.models.detectors.base import BaseDetector
    from mmdet.models.seg_heads.panoptic_fusion_heads import MaskFormerFusionHead
    from mmengine.model import BaseModel

    def fail(why: str) -> UnsupportedPostprocessError:
        return UnsupportedPostprocessError(f"stepwise's instance post-processing mirrors mmdet's MaskFormer/"
                                           f"Mask2Former code only, but {why}; use fast_postprocess=False")

    overridden = [f"{type(obj).__name__}.{name}" for obj, base, name in (
        (model, BaseModel, "test_step"), (model, BaseDetector, "forward"), (model, MaskFormer, "predict"),
        (getattr(model, "panoptic_head", None), MaskFormerHead, "predict"),
        (getattr(model, "panoptic_fusion_head", None), MaskFormerFusionHead, "predict"),
        (getattr(model, "panoptic_fusion_head", None), MaskFormerFusionHead, "instance_postprocess"),
    ) if not isinstance(obj, base) or getattr(type(obj), name) is not getattr(base, name)]
    if overridden:
        raise fail(f"the model is not one, or overrides {', '.join(overridden)}")
    if model._forward_hooks or model._forward_pre_hooks:
        raise fail("the model has forward hooks, which test_step would run")
    test_cfg = dict(model.panoptic_fusion_head.test_cfg or {})
    unknown = sorted(set(test_cfg) - _FUSION_TEST_CFG_KEYS)
    if unknown:
        raise fail(f"its test_cfg has keys this mirror does not know: {unknown}")
    if test_cfg.get("semantic_on", False):
        raise fail("test_cfg.semantic_on is set (mmdet 3.x does not support it either)")
    if not test_cfg.get("instance_on", False):
        raise fail("test_cfg.instance_on is not set, so mmdet returns no instances")
    max_per_image = test_cfg.get("max_per_image", 100)
    if not isinstance(max_per_image, int) or isinstance(max_per_image, bool) or max_per_image < 1:
        raise fail(f"test_cfg.max_per_image is {max_per_image!r}, not a positive int")


def predict_instances(model: Any, data: dict) -> list[Any]:
    """`[s.pred_instances for s in model.test_step(data)]`, bitwise, upsampling selected queries only.

    `model` must pass `check_fast_postprocess_supported` and run on CPU.
    """
    import torch

    data = model.data_preprocessor(data, False)  # BaseModel.test_step
    data_samples = data["data_samples"]
    feats = model.extract_feat(data["inputs"])  # MaskFormer.predict
    all_cls_scores, all_mask_preds = model.panoptic_head(feats, data_samples)  # MaskFormerHead.predict
    mask_cls_results, mask_pred_results = all_cls_scores[-1], all_mask_preds[-1]
    metas = [sample.metainfo for sample in data_samples]
    padded_hw = (metas[0]["batch_input_shape"][0], metas[0]["batch_input_shape"][1])

    fusion = model.panoptic_fusion_head
    max_per_image = (fusion.test_cfg or {}).get("max_per_image", 100)
    # mmdet upsamples all images' masks in one call; if that call takes the channels-last kernel,
    # a query's result depends on the others, so we make the very same call.
    batch_upsampled: list[torch.Tensor] = []

    def padded_masks(image: int, queries: torch.Tensor) -> torch.Tensor:
        if not batch_upsampled:
            subset = bilinear_channels(mask_pred_results[image:image + 1], queries, padded_hw,
                                       reference=mask_pred_results)
            if subset is not None:
                return subset[0]
            batch_upsampled.append(_bilinear(mask_pred_results, padded_hw))
        return batch_upsampled[0][image, queries]

    return [
        instance_postprocess(mask_cls, lambda queries, i=i: padded_masks(i, queries),
                             img_hw=tuple(meta["img_shape"][:2]), ori_hw=tuple(meta["ori_shape"][:2]),
                             num_classes=fusion.num_classes, num_things_classes=fusion.num_things_classes,
                             max_per_image=max_per_image)
        for i, (mask_cls, meta) in enumerate(zip(mask_cls_results, metas, strict=True))
    ]


def instance_postprocess(mask_cls: Any, padded_masks: Any, *, img_hw: tuple[int, int], ori_hw: tuple[int, int],
                         num_classes: int, num_things_classes: int, max_per_image: int) -> Any:
    """MaskFormerFusionHead's `instance_postprocess` after its `predict`'s crop and rescale, per query.

    mask_cls: (num_queries, num_classes + 1) class logits of one image; padded_masks(queries): the
    mask logits of those queries, (len(queries), H, W) at batch_input_shape, as mmdet's head
    upsamples them. Instances come in mmdet's order (top-k's, things only), bitwise equal.
    """
    import torch
    import torch.nn.functional as F
    from mmdet.structures.mask import mask2bbox
    from mmengine.structures import InstanceData

    num_queries = mask_cls.shape[0]
    scores = F.softmax(mask_cls, dim=-1)[:, :-1]
    labels = torch.arange(num_classes, device=mask_cls.device).unsqueeze(0).repeat(num_queries, 1).flatten(0, 1)
    scores_per_image, top_indices = scores.flatten(0, 1).topk(max_per_image, sorted=False)
    labels_per_image = labels[top_indices]
    query_indices = top_indices // num_classes
    is_thing = labels_per_image < num_things_classes
    scores_per_image = scores_per_image[is_thing]
    labels_per_image = labels_per_image[is_thing]
    query_indices = query_indices[is_thing]

    # Each selected query once; pair_query[k] is the row of pair k's query.
    queries, pair_query = torch.unique(query_indices, return_inverse=True)
    if len(queries):
        logits = padded_masks(queries)[:, :img_hw[0], :img_hw[1]]
        logits = _bilinear(logits[:, None], ori_hw)[:, 0]
    else:
        logits = mask_cls.new_zeros((0, *ori_hw))
    binary = logits > 0
    binary_f = binary.float()
    n_pairs = len(pair_query)
    areas = _row_sums(binary_f.flatten(1), n_pairs)[pair_query]
    mask_scores = _masked_sigmoid_sums(logits, binary_f, pair_query) / (areas + 1e-6)

    results = InstanceData()
    results.bboxes = mask2bbox(binary)[pair_query]
    results.labels = labels_per_image
    results.scores = scores_per_image * mask_scores
    results.masks = binary[pair_query]
    return results


def _bilinear(x: Any, size: tuple[int, int]) -> Any:
    import torch.nn.functional as F

    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _takes_channels_last_kernel(x: Any, size: tuple[int, int]) -> bool:
    """Whether torch's CPU bilinear upsampling of float `x` (N, C, H, W) to `size` takes the
    channels-last kernel (vectorised over C), as `upsample_bilinear2d_kernel_impl_float` decides."""
    import torch

    return ((x.is_contiguous(memory_format=torch.channels_last) and x.shape[1] > 3)
            or size[0] + size[1] <= 128
            or (torch.get_num_threads() == 1 and x.shape[1] == 3))


def bilinear_channels(x: Any, channels: Any, size: tuple[int, int], reference: Any = None) -> Any:
    """`_bilinear(x, size)[:, channels]` bitwise, upsampling those channels only; None where we cannot.

    Holds when torch's per-element kernel serves both the call on all channels (of `reference`, the
    tensor mmdet upsamples, when `x` is a slice of it) and ours.
    """
    import torch

    if _takes_channels_last_kernel(x if reference is None else reference, size):
        return None
    subset = x[:, channels]
    if not _takes_channels_last_kernel(subset, size):
        return _bilinear(subset, size)
    # Three channels on one thread: a fourth keeps the per-element kernel.
    subset = x[:, torch.cat([channels, channels[:1]])]
    if _takes_channels_last_kernel(subset, size):
        return None
    return _bilinear(subset, size)[:, :-1]


def _row_sums(rows: Any, n_pairs: int) -> Any:
    """`rows.sum(1)` as mmdet's sum over n_pairs rows gives it: row by row, unless it has one row
    (a one-row sum may be split across threads), so one row of several pairs is summed as two."""
    import torch

    if rows.shape[0] == 1 and n_pairs > 1:
        return torch.cat([rows, rows]).sum(1)[:1]
    return rows.sum(1)


def _masked_sigmoid_sums(logits: Any, binary_f: Any, pair_query: Any) -> Any:
    """mmdet's `(mask_pred.sigmoid() * mask_pred_binary).flatten(1).sum(1)` over the pairs' rows
    `logits[pair_query]`, bitwise, computing the sigmoid once per query."""
    import torch

    n_pairs, hw = len(pair_query), logits.shape[-2] * logits.shape[-1]
    ours = _scalar_sigmoid_positions(logits.numel())
    theirs = _scalar_sigmoid_positions(n_pairs * hw)
    if ours is None or theirs is None:  # no way to tell the formulas apart: mmdet's layout, verbatim
        return (logits[pair_query].sigmoid() * binary_f[pair_query]).flatten(1).sum(1)
    sigmoid = logits.sigmoid()
    if len(ours):  # our own tensor's scalar-formula elements, back to the SIMD formula
        sigmoid.view(-1)[ours] = _simd_sigmoid(logits.reshape(-1)[ours])
    sums = _row_sums((sigmoid * binary_f).flatten(1), n_pairs)[pair_query]
    if len(theirs):  # the rows of mmdet's tensor with scalar-formula elements, recomputed
        rows, cols = theirs // hw, theirs % hw
        patched_rows = rows.unique()
        patched = sigmoid.flatten(1)[pair_query[patched_rows]]
        scalar = _scalar_sigmoid(logits.flatten(1)[pair_query[rows], cols])
        patched[torch.searchsorted(patched_rows, rows), cols] = scalar
        sums[patched_rows] = _row_sums(patched * binary_f.flatten(1)[pair_query[patched_rows]], n_pairs)
    return sums


def _scalar_sigmoid(values: Any) -> Any:
    """Sigmoid by ATen's scalar formula: a strided input leaves the elementwise loop no SIMD path."""
    strided = values.new_zeros((len(values), 2))
    strided[:, 0] = values
    return strided[:, 0].sigmoid()


def _simd_sigmoid(values: Any) -> Any:
    """Sigmoid by ATen's SIMD formula: whole blocks of _SIGMOID_BLOCK, which the probe checked."""
    out = values.new_empty(values.shape)
    block = values.new_zeros(_SIGMOID_BLOCK)
    for start in range(0, len(values), _SIGMOID_BLOCK):
        chunk = values[start:start + _SIGMOID_BLOCK]
        block[:len(chunk)] = chunk
        out[start:start + len(chunk)] = block.sigmoid()[:len(chunk)]
    return out


@functools.lru_cache(maxsize=1)
def _sigmoid_probe() -> tuple[float, float, float] | None:
    """(x, SIMD sigmoid(x), scalar sigmoid(x)) for a float32 x on which ATen's two formulas differ;
    None if none is found or a contiguous block is not all SIMD (then nothing can be told apart)."""
    import torch

    candidates = torch.linspace(-16.0, 16.0, _SIGMOID_BLOCK)
    simd, scalar = candidates.sigmoid(), _scalar_sigmoid(candidates)
    differ = (simd != scalar).nonzero().flatten()
    if not len(differ):
        return None
    i = int(differ[0])
    x, simd_x, scalar_x = float(candidates[i]), float(simd[i]), float(scalar[i])
    if not bool((torch.full((_SIGMOID_BLOCK,), x).sigmoid() == simd_x).all()):
        return None
    return x, simd_x, scalar_x


def _scalar_sigmoid_positions(numel: int) -> Any:
    """Where `t.sigmoid()` of a contiguous float32 `t` of `numel` elements takes the scalar formula,
    on this many threads (a 1-d index tensor, often empty); None if that cannot be told."""
    import torch

    return _scalar_sigmoid_positions_cached(numel, torch.get_num_threads())


@functools.lru_cache(maxsize=64)
def _scalar_sigmoid_positions_cached(numel: int, threads: int) -> Any:
    import torch

    probe = _sigmoid_probe()
    if probe is None:
        return None
    x, simd_x, scalar_x = probe
    out = torch.full((numel,), x).sigmoid()
    positions = (out != simd_x).nonzero().flatten()
    if not bool((out[positions] == scalar_x).all()):  # a third formula: nothing we can mirror
        return None
    return positions
