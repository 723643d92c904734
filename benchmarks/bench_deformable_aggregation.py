"""Median time of deformable aggregation, reference (grid_sample) vs fast (visible samples only).

    python benchmarks/bench_deformable_aggregation.py [--device cpu|cuda] [--repeats 5] [--check] [--threads N]

Sizes are the SparseDrive small model's: B=1, 6 cameras, C=256, G=8, levels 64x176/32x88/16x44/8x22;
det A=900, P=13; map A=100, P=300. Each key point is visible in one camera, 30 % also in a neighbour.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sparsedrive_ros.model.deformable_op import (
    channels_last_feature_maps,
    deformable_aggregation,
    deformable_aggregation_reference,
)

LEVELS = [(64, 176), (32, 88), (16, 44), (8, 22)]
CAMS, CHANNELS, GROUPS = 6, 256, 8


def make_points(anchors: int, points: int, gen: torch.Generator) -> torch.Tensor:
    """[1, CAMS, A, P, 2]: every point inside one camera, 30 % also near the edge of the next one."""
    pts = torch.rand(1, CAMS, anchors, points, 2, generator=gen) * 2 + 1.05  # outside everywhere
    primary = torch.randint(0, CAMS, (anchors, points), generator=gen)
    inside = torch.rand(anchors, points, 2, generator=gen) * 0.98 + 0.01
    a_idx, p_idx = torch.meshgrid(torch.arange(anchors), torch.arange(points), indexing="ij")
    pts[0, primary, a_idx, p_idx] = inside
    overlap = torch.rand(anchors, points, generator=gen) < 0.3
    neighbour = (primary + 1) % CAMS
    edge = inside.clone()
    edge[..., 0] = torch.rand(anchors, points, generator=gen) * 0.1 + 0.001
    pts[0, neighbour[overlap], a_idx[overlap], p_idx[overlap]] = edge[overlap]
    return pts


def make_case(anchors: int, points: int, device: str, dtype: torch.dtype, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    maps = [torch.randn(1, CAMS, CHANNELS, h, w, generator=gen) for h, w in LEVELS]
    logits = torch.randn(1, anchors, CAMS, len(LEVELS), points, GROUPS, generator=gen)
    weights = logits.flatten(2, 4).softmax(dim=2).view_as(logits)
    pts = make_points(anchors, points, gen)
    return ([m.to(device, dtype) for m in maps], pts.to(device, dtype), weights.to(device, dtype))


def median_ms(fn, repeats: int, device: str) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--check", action="store_true", help="also print max |fast - reference|")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    print(f"device={args.device} dtype={args.dtype} threads={torch.get_num_threads()} repeats={args.repeats}")
    for name, anchors, points in (("det", 900, 13), ("map", 100, 300)):
        maps, pts, weights = make_case(anchors, points, args.device, dtype)
        maps_cl = channels_last_feature_maps(maps)
        visible = int(((pts > 0) & (pts < 1)).all(-1).sum())
        with torch.no_grad():
            fast = median_ms(lambda: deformable_aggregation(maps, pts, weights), args.repeats, args.device)
            fast_cl = median_ms(lambda: deformable_aggregation(maps_cl, pts, weights), args.repeats, args.device)
            line = f"{name}: A={anchors} P={points} visible samples={visible}  fast={fast:.1f} ms  "
            line += f"fast(channels-last maps)={fast_cl:.1f} ms"
            if not args.skip_reference:
                ref = median_ms(lambda: deformable_aggregation_reference(maps, pts, weights), args.repeats, args.device)
                line += f"  reference={ref:.1f} ms"
            if args.check:
                diff = deformable_aggregation(maps, pts, weights) - deformable_aggregation_reference(maps, pts, weights)
                line += f"  max|fast-ref|={diff.abs().max().item():.2e}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
