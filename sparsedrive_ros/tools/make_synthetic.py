"""Write a synthetic nuScenes dataset (v1.0-mini schema, images, maps, CAN bus).

    python -m sparsedrive_ros.tools.make_synthetic --out DIR [--seconds S] [--seed N] [--scenes K]
"""
from __future__ import annotations

import argparse
import time

from sparsedrive_ros.data.synthetic import SyntheticConfig, generate_dataset
from sparsedrive_ros.data.synthetic_world import RoadShape


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = SyntheticConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="dataroot to create")
    p.add_argument("--seconds", type=float, default=defaults.seconds, help="scene length (key frames every 0.5 s)")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--scenes", type=int, default=defaults.num_scenes)
    p.add_argument("--width", type=int, default=defaults.width)
    p.add_argument("--height", type=int, default=defaults.height)
    p.add_argument("--noise", type=float, default=defaults.noise, help="Gaussian pixel noise std (0..255 scale)")
    p.add_argument("--road", choices=[r.value for r in RoadShape], default=None,
                   help="road shape (default: scene k gets left/straight/right by seed + k)")
    p.add_argument("--curve-radius", type=float, default=defaults.curve_radius)
    p.add_argument("--turn-start", type=float, default=defaults.turn_start, help="metres before the curve starts")
    p.add_argument("--ego-speed", type=float, default=defaults.ego_speed)
    p.add_argument("--extra-objects", type=int, default=defaults.extra_objects)
    p.add_argument("--jpeg-quality", type=int, default=defaults.jpeg_quality)
    p.add_argument("--no-can-bus", action="store_true")
    p.add_argument("--no-images", action="store_true", help="tables and maps only")
    p.add_argument("--version", default=defaults.version)
    p.add_argument("--location", default=defaults.location)
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> SyntheticConfig:
    return SyntheticConfig(
        seconds=args.seconds, seed=args.seed, num_scenes=args.scenes, width=args.width, height=args.height,
        noise=args.noise, road=RoadShape(args.road) if args.road else None, curve_radius=args.curve_radius,
        turn_start=args.turn_start, ego_speed=args.ego_speed, extra_objects=args.extra_objects,
        jpeg_quality=args.jpeg_quality, can_bus=not args.no_can_bus, render_images=not args.no_images,
        version=args.version, location=args.location,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    ds = generate_dataset(args.out, config_from_args(args))
    print(f"wrote {ds.dataroot} ({ds.version}, scenes {', '.join(ds.scene_names)}, location {ds.location}): "
          f"{ds.num_samples} key frames, {ds.num_images} images in {time.perf_counter() - start:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
