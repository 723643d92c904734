"""Export a training checkpoint as a self-describing safetensors model file (the bundled demo model's format).

    python -m sparsedrive_ros.tools.export_model --checkpoint work_dirs/demo/train/latest.pt \
        --out demo_model.safetensors [--name NAME] [--note TEXT] [--float32]

The file holds the weights (large tensors in float16 unless --float32) and, in its metadata, the model
configuration, so that every loader (node, evaluate, infer tools) builds the right architecture from the file
alone. The optimizer state of the training checkpoint is dropped.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sparsedrive_ros.model.model_file import export_model_file, load_model

DEMO_NOTE = ("Trained only on the synthetic nuScenes world of sparsedrive_ros (scripts/train_demo_model.sh); "
             "a demonstration of the stack, not a model for real roads.")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="training checkpoint (.pt) or any loadable model file")
    p.add_argument("--out", required=True, help="output .safetensors file")
    p.add_argument("--name", default="demo model (synthetic world only)")
    p.add_argument("--note", default=DEMO_NOTE)
    p.add_argument("--float32", action="store_true", help="store every tensor in float32")
    args = p.parse_args(argv)
    try:
        model, source = load_model(args.checkpoint)
    except (OSError, ValueError) as err:
        print(f"export_model: {err}", file=sys.stderr)
        return 2
    step = source.step
    counts = export_model_file(model, args.out, args.name, args.note, step=step, half=not args.float32)
    size = Path(args.out).stat().st_size
    print(f"wrote {args.out}: {size / 1e6:.1f} MB, {counts['float16']} float16 + {counts['float32']} float32 "
          f"tensors, step {step}, from {source.describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
