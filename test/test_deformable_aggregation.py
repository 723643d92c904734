"""Fast deformable aggregation vs the grid_sample oracle, hand-computed values and gradients."""

import pytest
import torch

from sparsedrive_ros.model.deformable_op import (
    channels_last_feature_maps,
    deformable_aggregation,
    deformable_aggregation_reference,
    valid_sample_mask,
)

LEVEL_SHAPES = [(8, 12), (4, 6), (2, 3)]


def _random_case(seed, batch=2, cams=3, channels=16, anchors=7, points=5, groups=4, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    maps = [torch.randn(batch, cams, channels, h, w, generator=gen, dtype=dtype) for h, w in LEVEL_SHAPES]
    # Mostly inside, some outside the image, some exactly on the borders, some behind the camera / NaN.
    pts = torch.rand(batch, cams, anchors, points, 2, generator=gen, dtype=dtype) * 1.3 - 0.15
    pts[0, 0, 0, 0] = torch.tensor([0.0, 0.5])
    pts[0, 0, 0, 1] = torch.tensor([0.5, 1.0])
    pts[0, 1, 1, 0] = torch.tensor([1.0, 0.0])
    pts[0, 1, 1, 1] = torch.tensor([float("nan"), 0.5])
    pts[1, 0, 2, 0] = torch.tensor([0.5, float("nan")])
    pts[1, 2, 3, 0] = torch.tensor([-3.0e7, 5.0e6])  # behind-camera projections explode
    pts[1, 2, 3, 1] = torch.tensor([float("inf"), 0.3])
    pts[1, 1, 4, 2] = torch.tensor([1e-9, 1 - 1e-9])  # just inside: partial bilinear weight off the map
    logits = torch.randn(batch, anchors, cams, len(LEVEL_SHAPES), points, groups, generator=gen, dtype=dtype)
    weights = logits.flatten(2, 4).softmax(dim=2).view_as(logits)
    return maps, pts, weights


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("chunk_size", [3, 8192])
def test_fast_matches_reference_float64(seed, chunk_size):
    maps, pts, weights = _random_case(seed)
    fast = deformable_aggregation(maps, pts, weights, chunk_size=chunk_size)
    ref = deformable_aggregation_reference(maps, pts, weights)
    assert fast.shape == (2, 7, 16) and fast.dtype == torch.float64
    assert torch.isfinite(fast).all()
    torch.testing.assert_close(fast, ref, rtol=0, atol=1e-12)


def test_fast_matches_reference_float32_and_channels_last():
    maps, pts, weights = _random_case(3, dtype=torch.float32)
    ref = deformable_aggregation_reference(maps, pts, weights)
    fast = deformable_aggregation(channels_last_feature_maps(maps), pts, weights)
    assert fast.dtype == torch.float32
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)


def test_known_bilinear_value_and_strict_border():
    # One camera, one level 2 x 3, channel 0 = [[1, 2, 3], [4, 5, 6]], channel 1 = 10 * channel 0.
    base = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=torch.float64)
    maps = [torch.stack([base, 10 * base])[None, None]]  # [1, 1, 2, 2, 3]
    # Pixel (x, y) = (u * 3 - 0.5, v * 2 - 0.5): (0.25, 0.5) -> 1.25 / 4.25 rows -> 2.75.
    # (-0.4, 0.0): only the x = 0 column lies on the map, weight 0.6 -> 0.6 * 1 (zero padding, not border).
    pts = torch.tensor([[0.25, 0.5], [0.1 / 3, 0.25], [0.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    pts = pts[None, None, :, None]  # [1, 1, A=4, P=1, 2]
    weights = torch.full((1, 4, 1, 1, 1, 2), 2.0, dtype=torch.float64)  # two groups of one channel
    weights[0, 0, 0, 0, 0, 1] = 0.5
    expected = torch.tensor([[2 * 2.75, 0.5 * 27.5], [2 * 0.6, 2 * 6.0], [0.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    for fn in (deformable_aggregation, deformable_aggregation_reference):
        torch.testing.assert_close(fn(maps, pts, weights)[0], expected, rtol=0, atol=1e-12)


def test_valid_mask_is_strict_and_rejects_nan():
    pts = torch.tensor([[0.5, 0.5], [0.0, 0.5], [1.0, 0.5], [0.5, 0.0], [float("nan"), 0.5], [1e-7, 0.9999999]])
    assert valid_sample_mask(pts).tolist() == [True, False, False, False, False, True]


def test_group_weights_only_touch_their_channels():
    maps, pts, weights = _random_case(4)
    weights = torch.zeros_like(weights)
    weights[..., 1] = 1.0  # only group 1 = channels 4..7 of 16
    out = deformable_aggregation(maps, pts, weights)
    assert out[..., 4:8].abs().sum() > 0
    assert out[..., :4].abs().sum() == 0 and out[..., 8:].abs().sum() == 0


def test_no_visible_sample_gives_zeros():
    maps, pts, weights = _random_case(5)
    out = deformable_aggregation(maps, torch.full_like(pts, 2.0), weights)
    assert out.shape == (2, 7, 16) and out.abs().sum() == 0


def test_gradcheck_features_points_weights():
    maps, _, weights = _random_case(6, channels=4, anchors=5, points=3, groups=2)
    # Fresh points: gradcheck needs samples off the validity border and off integer pixel positions (kinks).
    pts = torch.rand(2, 3, 5, 3, 2, generator=torch.Generator().manual_seed(60), dtype=torch.float64) * 0.9 + 0.05
    pts[0, 1, 0, 0, 0] = 1.5  # masked samples take part too
    pts[1, 0, 2, 0, 1] = float("nan")
    inputs = [t.clone().requires_grad_() for t in (*maps, pts, weights)]

    def fn(*args):
        return deformable_aggregation(list(args[:-2]), args[-2], args[-1], chunk_size=4)

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-8, fast_mode=True)
    tiny = [t.detach()[:1, :2, :2].clone().requires_grad_() for t in maps]  # B=1, 2 cams, C=2
    tiny_pts = pts[:1, :2, :2].detach().clone().requires_grad_()
    tiny_weights = weights[:1, :2, :2].detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(fn, [*tiny, tiny_pts, tiny_weights], eps=1e-6, atol=1e-8)


def test_gradients_match_reference_and_ignore_nan_points():
    maps, pts, weights = _random_case(7)
    inputs_fast = [t.clone().requires_grad_() for t in (*maps, pts, weights)]
    inputs_ref = [t.clone().requires_grad_() for t in (*maps, pts, weights)]
    out_fast = deformable_aggregation(inputs_fast[:-2], inputs_fast[-2], inputs_fast[-1], chunk_size=5)
    out_ref = deformable_aggregation_reference(inputs_ref[:-2], inputs_ref[-2], inputs_ref[-1])
    grad_out = torch.randn_like(out_fast)
    grads_fast = torch.autograd.grad(out_fast, inputs_fast, grad_out)
    grads_ref = torch.autograd.grad(out_ref, inputs_ref, grad_out)
    for got, want in zip(grads_fast, grads_ref):
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, want, rtol=0, atol=1e-11)
    assert grads_fast[-2][0, 1, 1, 1].abs().sum() == 0  # the NaN point


@pytest.mark.parametrize(
    "bad",
    [
        lambda m, p, w: ([], p, w),
        lambda m, p, w: (m, p[..., :1], w),
        lambda m, p, w: (m, p, w[:, :, :, :2]),
        lambda m, p, w: (m, p, w[..., :3]),  # 16 channels not divisible by 3 groups
        lambda m, p, w: ([m[0], m[1][:, :2]], p, w[:, :, :, :2]),
    ],
)
def test_bad_shapes_raise_value_error(bad):
    maps, pts, weights = _random_case(8)
    with pytest.raises(ValueError):
        deformable_aggregation(*bad(maps, pts, weights))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_reference():
    maps, pts, weights = _random_case(9)
    ref = deformable_aggregation_reference(maps, pts, weights)
    fast = deformable_aggregation([m.cuda() for m in maps], pts.cuda(), weights.cuda(), chunk_size=11)
    torch.testing.assert_close(fast.cpu(), ref, rtol=0, atol=1e-12)


def test_half_precision_maps_are_computed_in_float32_even_under_autocast():
    maps, pts, weights = _random_case(10, dtype=torch.float32)
    ref = deformable_aggregation_reference([m.bfloat16().float() for m in maps], pts, weights)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast = deformable_aggregation([m.bfloat16() for m in maps], pts, weights)
    assert fast.dtype == torch.float32
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)
