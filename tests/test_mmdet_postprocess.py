"""The shape-dependent torch CPU kernels that the mmdet backend's own post-processing works around.

`harness.geneval.backends.mmdet_postprocess.instance_postprocess` computes per selected query what mmdet
computes per selected (query, class) pair, and must give bitwise mmdet's numbers. That holds only
if a query's values do not depend on which other queries share the tensor; these tests pin down
where torch's kernels break that, that the naive per-query computation would then differ, and that
ours does not. Model-level equality with mmdet is tested in test_mmdet_backend.py.
"""

from __future__ import annotations

import pytest
import torch
from helpers import torch_threads

from harness.geneval.backends import mmdet_postprocess

pytestmark = pytest.mark.mmdet
F = torch.nn.functional




def _bilinear(x, size):
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


# --------------------------------------------------------------------------- bilinear upsampling

# (batch, channels, input size, output size, threads, selected channels). Outputs with H + W <= 128
# and three channels on one thread take torch's channels-last kernel; the rest its per-element one.
UPSAMPLE_CASES = [
    (2, 8, (24, 24), (96, 96), 1, [6, 1, 3]),  # per-element for 8, but 3 selected: channels-last
    (2, 8, (24, 24), (96, 96), 2, [6, 1, 3]),
    (1, 9, (16, 24), (64, 96), 1, [0]),
    (1, 9, (16, 24), (64, 96), 1, [8, 2]),
    (3, 9, (32, 25), (128, 100), 2, [4, 5, 6, 7, 8]),
    (2, 9, (16, 16), (64, 64), 1, [3, 1]),  # H + W = 128: mmdet's call is channels-last
    (1, 3, (24, 24), (96, 96), 1, [2, 0]),  # mmdet's call has three channels on one thread
    (1, 100, (24, 20), (96, 80), 1, [99, 0, 50]),
]


@pytest.mark.parametrize(("batch", "channels", "in_hw", "out_hw", "threads", "selected"), UPSAMPLE_CASES)
def test_bilinear_channels_is_a_bitwise_subset(batch, channels, in_hw, out_hw, threads, selected) -> None:
    generator = torch.Generator().manual_seed(channels * 100 + len(selected))
    x = torch.randn(batch, channels, *in_hw, generator=generator) * 5
    index = torch.tensor(selected)
    with torch_threads(threads):
        everything = _bilinear(x, out_hw)
        for image in range(batch):
            subset = mmdet_postprocess.bilinear_channels(x[image:image + 1], index, out_hw, reference=x)
            if subset is None:  # the caller then upsamples all channels, as mmdet does
                assert mmdet_postprocess._takes_channels_last_kernel(x, out_hw)
            else:
                assert torch.equal(subset, everything[image:image + 1, index])


def test_naive_channel_subset_differs_where_kernels_differ() -> None:
    # Why bilinear_channels exists: upsampling only some channels is not bitwise the same
    # when either call takes the channels-last kernel.
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, 9, 16, 16, generator=generator) * 5
    with torch_threads(1):
        small = _bilinear(x, (64, 64))
        assert not torch.equal(_bilinear(x[:, [3, 1]], (64, 64)), small[:, [3, 1]])
        x = torch.randn(1, 9, 24, 24, generator=generator) * 5
        large = _bilinear(x, (96, 96))
        assert torch.equal(_bilinear(x[:, [8, 2]], (96, 96)), large[:, [8, 2]])
        assert not torch.equal(_bilinear(x[:, [8, 2, 5]], (96, 96)), large[:, [8, 2, 5]])


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(("padded", "crop", "out_hw"), [
    ((96, 96), (96, 96), (256, 256)),
    ((96, 96), (90, 72), (61, 47)),  # H + W <= 128: channels-last kernel, one channel
    ((64, 96), (60, 96), (80, 130)),
])
def test_rescale_of_selected_queries_is_bitwise(threads, padded, crop, out_hw) -> None:
    # MaskFormerFusionHead.predict: crop to img_shape, then each query's mask as one channel.
    x = torch.randn(8, *padded, generator=torch.Generator().manual_seed(1)) * 5
    index = torch.tensor([5, 0, 7])
    with torch_threads(threads):
        everything = _bilinear(x[:, :crop[0], :crop[1]][:, None], out_hw)[:, 0]
        ours = _bilinear(x[index][:, :crop[0], :crop[1]][:, None], out_hw)[:, 0]
    assert torch.equal(ours, everything[index])


# --------------------------------------------------------------------------- sigmoid and sums


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("numel", [15, 16, 100, 4096, 70001, 286700])
def test_scalar_sigmoid_positions_tell_the_formulas_apart(threads, numel) -> None:
    x = torch.randn(numel, generator=torch.Generator().manual_seed(numel)) * 4
    with torch_threads(threads):
        positions = mmdet_postprocess._scalar_sigmoid_positions(numel)
        assert positions is not None, "this torch has one sigmoid formula on CPU: revisit the probe"
        got = x.sigmoid()
        want = mmdet_postprocess._simd_sigmoid(x)
        want[positions] = mmdet_postprocess._scalar_sigmoid(x[positions])
    assert torch.equal(got, want)


def test_sigmoid_formulas_differ() -> None:
    # Why the positions matter: SIMD and scalar sigmoid round differently for some inputs.
    x = torch.linspace(-8, 8, 4096)
    assert not torch.equal(mmdet_postprocess._simd_sigmoid(x), mmdet_postprocess._scalar_sigmoid(x))


def _tail_heavy_logits(queries: int, hw: tuple[int, int], generator) -> torch.Tensor:
    """Mask logits whose few positive pixels take values on which the sigmoid formulas disagree,
    most of them at the end of each row, where SIMD loops leave their scalar remainder."""
    grid = torch.linspace(0.5, 8, 4096)
    disagree = grid[mmdet_postprocess._simd_sigmoid(grid) != mmdet_postprocess._scalar_sigmoid(grid)]
    n = hw[0] * hw[1]
    pick = torch.randint(0, len(disagree), (queries, n), generator=generator)
    sign = torch.where(torch.rand(queries, n, generator=generator) < 0.02, 1.0, -1.0)
    logits = disagree[pick] * sign
    logits[:, -15:] = disagree[pick[:, -15:]]
    return logits.view(queries, *hw)


@pytest.mark.parametrize("threads", [1, 2])
def test_masked_sigmoid_sums_are_mmdets(threads: int) -> None:
    generator = torch.Generator().manual_seed(threads)
    naive_differs = 0
    for hw in [(7, 9), (61, 47), (181, 181), (5, 5)]:
        for queries, pairs in [(8, 100), (3, 7), (1, 5), (1, 1), (5, 5), (4, 9)]:
            logits = _tail_heavy_logits(queries, hw, generator)
            pair_query = torch.cat([torch.arange(queries), torch.randint(0, queries, (pairs - queries,),
                                                                         generator=generator)])
            pair_query = pair_query[torch.randperm(pairs, generator=generator)]
            binary_f = (logits > 0).float()
            with torch_threads(threads):
                # mmdet: one row per (query, class) pair
                want = (logits[pair_query].sigmoid() * binary_f[pair_query]).flatten(1).sum(1)
                got = mmdet_postprocess._masked_sigmoid_sums(logits, binary_f, pair_query)
                naive = (logits.sigmoid() * binary_f).flatten(1).sum(1)[pair_query]
            assert torch.equal(got, want), (hw, queries, pairs)
            naive_differs += not torch.equal(naive, want)
    assert naive_differs, "no case where the per-query sigmoid needs the correction: test data too easy"


def test_one_row_sums_differ_from_many_rows() -> None:
    # Why _row_sums pads one row to two: on several threads a one-row sum is split across them.
    rows = torch.rand(3, 300_000, generator=torch.Generator().manual_seed(0))
    with torch_threads(2):
        many = rows.sum(1)
        assert torch.equal(mmdet_postprocess._row_sums(rows[1:2], n_pairs=3), many[1:2])
        assert torch.equal(mmdet_postprocess._row_sums(rows[1:2], n_pairs=1), rows[1:2].sum(1))
        assert not torch.equal(rows[1:2].sum(1), many[1:2])


def test_instance_postprocess_with_no_thing_pairs() -> None:
    # Stuff classes only among the top-k: empty results shaped as mmdet's.
    mask_cls = torch.zeros(4, 3)
    mask_cls[:, 1] = 5.0  # class 1 (stuff when num_things_classes=1) dominates every query
    result = mmdet_postprocess.instance_postprocess(
        mask_cls, lambda queries: pytest.fail("no query should be upsampled"), img_hw=(8, 8), ori_hw=(10, 12),
        num_classes=2, num_things_classes=1, max_per_image=4)
    assert result.bboxes.shape == (0, 4) and result.bboxes.dtype == torch.float32
    assert result.masks.shape == (0, 10, 12) and result.masks.dtype == torch.bool
    assert result.scores.shape == (0,) and result.labels.shape == (0,)


@pytest.mark.parametrize(("num_things", "num_stuff"), [(80, 0), (5, 3), (1, 1)])
def test_instance_postprocess_is_the_fusion_heads(num_things: int, num_stuff: int) -> None:
    # Against MaskFormerFusionHead.predict itself, on random head outputs; with stuff classes the
    # things-only filter drops some of the top-k pairs.
    from mmdet.models.seg_heads.panoptic_fusion_heads import MaskFormerFusionHead
    from mmdet.structures import DetDataSample

    num_classes, num_queries, max_per_image = num_things + num_stuff, 6, min(20, 6 * (num_things + num_stuff))
    head = MaskFormerFusionHead(num_things_classes=num_things, num_stuff_classes=num_stuff,
                                test_cfg=dict(panoptic_on=False, instance_on=True, max_per_image=max_per_image))
    generator = torch.Generator().manual_seed(num_classes)
    padded_hw, img_hw, ori_hw = (64, 96), (60, 90), (45, 67)
    mask_cls = torch.randn(2, num_queries, num_classes + 1, generator=generator) * 3
    padded = torch.randn(2, num_queries, *padded_hw, generator=generator) * 4
    samples = [DetDataSample(metainfo=dict(img_shape=img_hw, ori_shape=ori_hw, batch_input_shape=padded_hw))
               for _ in range(2)]
    want = head.predict(mask_cls, padded, samples, rescale=True)
    for image in range(2):
        got = mmdet_postprocess.instance_postprocess(
            mask_cls[image], lambda queries, i=image: padded[i, queries], img_hw=img_hw, ori_hw=ori_hw,
            num_classes=num_classes, num_things_classes=num_things, max_per_image=max_per_image)
        theirs = want[image]["ins_results"]
        if num_stuff:
            assert len(got.labels) < max_per_image  # the filter did drop stuff pairs
        for field in ("bboxes", "labels", "scores", "masks"):
            a, b = getattr(got, field), getattr(theirs, field)
            assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), field
