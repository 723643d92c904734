"""Convert a SparseDrive checkpoint (.pth, mmcv or plain) to safetensors and/or print a summary.

    python -m sparsedrive_ros.tools.convert_checkpoint IN.pth --out OUT.safetensors
    python -m sparsedrive_ros.tools.convert_checkpoint IN.pth --info [--keys docs/state-dict-stage2.txt]

The input is read without unpickling arbitrary objects (see sparsedrive_ros.model.checkpoint).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from sparsedrive_ros.model.checkpoint import (
    CheckpointLoadError,
    CheckpointMismatchError,
    check_state_dict,
    load_checkpoint,
    read_key_list,
    save_safetensors,
    summarize_state_dict,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sparsedrive_ros.tools.convert_checkpoint", description=__doc__.splitlines()[0]
    )
    parser.add_argument("checkpoint", type=Path, help="input .pth/.pt/.safetensors")
    parser.add_argument("--out", type=Path, help="output .safetensors path")
    parser.add_argument("--info", action="store_true", help="only print the summary, write nothing")
    parser.add_argument(
        "--keys", type=Path, help="key list (name<TAB>shape<TAB>dtype) to check keys and shapes against"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.info and args.out is None:
        print("error: give --out OUT.safetensors or --info", file=sys.stderr)
        return 2
    try:
        state_dict = load_checkpoint(args.checkpoint)
    except (FileNotFoundError, CheckpointLoadError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    summary = summarize_state_dict(state_dict)
    print(f"{args.checkpoint}:")
    print(summary.format())
    if args.keys is not None:
        try:
            check_state_dict(state_dict, read_key_list(args.keys))
        except CheckpointMismatchError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        print(f"keys and shapes match {args.keys}")
    if not args.info:
        metadata = {"source": str(args.checkpoint.name), "stage": str(summary.stage), "format": "pt"}
        save_safetensors(state_dict, args.out, metadata)
        print(f"wrote {args.out} ({summary.num_tensors} tensors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
