"""Export a model as two plugin-free ONNX graphs: the image encoder and one temporal step of the heads.

    python -m sparsedrive_ros.tools.export_onnx --checkpoint FILE --out DIR [--opset 18] [--no-check]
                                                [--float32-time]

``--checkpoint`` takes what the node takes: "" = the bundled demo model, "random" = the original architecture
with seeded random weights, or a file (official .pth, training checkpoint, model file). DIR receives:

* ``image_encoder.onnx``: ``images`` [1, N_cam, 3, H, W] float32 -> ``feature_0..3``;
* ``heads_step.onnx``: ``feature_0..3``, the frame inputs, ``state_*`` -> decoded outputs, ``next_state_*``;
* ``empty_state.npz``: the ``state_*`` inputs of a stream's first frame (also after any reset);
* ``manifest.json``: every input and output with shape and dtype, the model configuration and the opset.

``--float32-time`` replaces the float64 inputs (``timestamp``, ``T_global``, ``T_global_inv`` and the state's
previous stamp and pose) by float32 ``dt`` and ``T_prev2cur``, which the caller computes in float64 from the stamps
and poses it keeps: a graph without float64, as TensorRT needs, with the same results.

Weights are stored next to each graph (``*.onnx.data``, ONNX external data) when the graph is large. Only
standard ONNX operators are used (no custom domain); the check after export runs one frame through onnxruntime
(when installed) and compares it with PyTorch. TensorRT notes: docs/static-graph.md#tensorrt.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from sparsedrive_ros.model import SparseDrive
from sparsedrive_ros.model.model_file import load_model
from sparsedrive_ros.model.onnx_graphs import (
    FRAME_INPUTS,
    HeadsStep,
    ImageEncoder,
    example_heads_inputs,
    export_names,
    frame_inputs,
)
from sparsedrive_ros.model.static_frame import empty_state, state_spec

DEFAULT_OPSET = 18  # GridSample (16+) and LayerNormalization (17+) are standard operators from here on


def _export(module: torch.nn.Module, args: tuple, path: Path, input_names: list, output_names: list,
            opset: int) -> None:
    with torch.no_grad():
        program = torch.onnx.export(module, args, dynamo=True, opset_version=opset, input_names=input_names,
                                    output_names=output_names, optimize=True, verbose=False)
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    # A protobuf holds at most 2 GB; weights above 200 MB go to a side file (*.onnx.data) well before that.
    program.save(str(path), external_data=_weight_bytes(module) > 200e6)


def _weight_bytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def _onnx_ops(path: Path) -> tuple[list[str], list[str]]:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return sorted({n.op_type for n in graph.node}), sorted({n.domain or "ai.onnx" for n in graph.node})


def export(model: SparseDrive, out: Path, opset: int = DEFAULT_OPSET, check: bool = True,
           description: str = "", relative_time: bool = False) -> dict:
    """Write the two graphs, the empty state and the manifest into ``out``; returns the manifest."""
    model = model.to(torch.float32).eval()
    model.img_backbone.fuse_batchnorm()  # inference graph: BatchNorm folded into the convolutions
    out.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    h, w = cfg.image_hw
    images = torch.zeros(1, cfg.num_cams, 3, h, w)
    encoder_outputs = [f"feature_{i}" for i in range(4)]
    start = time.perf_counter()
    _export(ImageEncoder(model).eval(), (images,), out / "image_encoder.onnx", ["images"], encoder_outputs, opset)
    heads = HeadsStep(model, relative_time).eval()
    input_names, output_names = export_names(model, relative_time)
    example = example_heads_inputs(model, relative_time=relative_time)
    _export(heads, example, out / "heads_step.onnx", input_names, output_names, opset)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        example_outputs = heads(*example)
    state = empty_state(model, relative_time=relative_time)
    np.savez(out / "empty_state.npz", **{f"state_{n}": t.numpy() for n, t in state.items()})

    def describe(names, tensors):
        return [{"name": n, "shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", "")}
                for n, t in zip(names, tensors)]

    with torch.no_grad():
        levels = model.extract_feat(images)
    manifest = {
        "model": description,
        "config": json.loads(json.dumps(cfg.__dict__, default=lambda o: getattr(o, "__dict__", str(o)))),
        "opset": opset,
        "relative_time": relative_time,
        "image_encoder": {"inputs": describe(["images"], [images]), "outputs": describe(encoder_outputs, levels)},
        "heads_step": {"inputs": describe(input_names, example), "outputs": describe(output_names, example_outputs),
                       "frame_inputs": dict(frame_inputs(relative_time)),
                       "state": {n: {"shape": list(s), "kind": k}
                                 for n, (s, k) in state_spec(model, relative_time=relative_time).items()}},
        "export_seconds": round(seconds, 1),
    }
    try:
        for name in ("image_encoder", "heads_step"):
            ops, domains = _onnx_ops(out / f"{name}.onnx")
            manifest[name]["operators"], manifest[name]["domains"] = ops, domains
    except ImportError:
        pass
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")  # OnnxStream reads it in the check
    if check:
        manifest["check"] = check_with_onnxruntime(model, out)
        (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def check_with_onnxruntime(model: SparseDrive, out: Path) -> dict:
    """One random-image frame from the empty state through both graphs in onnxruntime and in PyTorch: the
    largest differences of the feature levels and of the sorted detection scores (a quick sanity check; the
    golden-case parity test is test/test_onnx_export.py)."""
    try:
        from sparsedrive_ros.runtime.onnx_runner import OnnxStream
    except ImportError as err:
        return {"skipped": f"onnxruntime not installed ({err})"}
    cfg = model.config
    h, w = cfg.image_hw
    images = torch.randn(1, cfg.num_cams, 3, h, w, generator=torch.Generator().manual_seed(0))
    frame = example_heads_inputs(model)[4:]  # calibration, stamp, pose, command, empty state
    with torch.no_grad():
        ref_levels = model.extract_feat(images)
        reference = HeadsStep(model)(*ref_levels, *frame)
    _, output_names = export_names(model)
    ref = dict(zip(output_names, (t.numpy() for t in reference)))
    stream = OnnxStream(out)
    features = stream.encode(images.numpy())
    outputs = stream.heads(features, *(t.numpy() for t in frame[:len(FRAME_INPUTS)]))
    return {"feature_max_abs_diff": max(float(np.abs(a - b.numpy()).max()) for a, b in zip(features, ref_levels)),
            "det_scores_max_abs_diff": float(np.abs(np.sort(outputs["det_scores"]) - np.sort(ref["det_scores"])).max())}


def main(argv: Optional[list] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="", help='"" = demo model, "random", or a checkpoint / model file')
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (>= 18; default {DEFAULT_OPSET})")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime check after export")
    p.add_argument("--float32-time", action="store_true",
                   help="dt / T_prev2cur float32 inputs instead of float64 stamps and poses (for TensorRT)")
    args = p.parse_args(argv)
    if args.opset < 18:
        p.error("--opset must be >= 18 (GridSample and LayerNormalization as standard operators)")
    try:
        import onnxscript  # noqa: F401  (what torch.onnx.export(dynamo=True) builds graphs with)
    except ImportError:
        print("export_onnx: needs the onnx extra: `make setup-onnx` (requirements/onnx.txt)", file=sys.stderr)
        return 2
    try:
        model, source = load_model(args.checkpoint)
    except (OSError, ValueError) as err:
        print(f"export_onnx: {err}", file=sys.stderr)
        return 2
    manifest = export(model, Path(args.out), args.opset, not args.no_check, source.describe(), args.float32_time)
    print(f"wrote {args.out}: image_encoder.onnx, heads_step.onnx, empty_state.npz, manifest.json "
          f"({manifest['export_seconds']} s, opset {args.opset}, model {source.describe()})")
    for name in ("image_encoder", "heads_step"):
        if "domains" in manifest[name]:
            print(f"  {name}: {len(manifest[name]['operators'])} operator types, domains {manifest[name]['domains']}")
    if "check" in manifest:
        print(f"  onnxruntime check: {manifest['check']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
