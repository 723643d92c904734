"""The static frame (model/static_frame.py, docs/static-graph.md): same results as the eager stream, one graph
without breaks, no host synchronisation on CUDA.

The float64 golden parity of the static path is in test_parity.py; the ONNX graphs in test_onnx_export.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_model_stream import T0, frame, tiny_config

from sparsedrive_ros.model import FrameInputs, SparseDriveStream, build_sparsedrive
from sparsedrive_ros.model.static_frame import StaticHeads, StaticSparseDriveStream, empty_state

# (seconds after T0, metres forward, command): steady 0.5 s steps, a 3 s gap (history masked), time going
# backwards, a left turn.
SCHEDULE = [(0.0, 0.0, 2), (0.5, 1.0, 2), (1.0, 2.0, 2), (4.0, 8.0, 2), (4.5, 9.0, 1), (5.0, 10.0, 1),
            (4.8, 9.6, 1), (5.5, 11.0, 0)]


@pytest.fixture(scope="module")
def tiny64():
    torch.manual_seed(0)
    model = build_sparsedrive(2, config=tiny_config(2)).eval()
    with torch.no_grad():  # spread the anchors so that key points land in the images (as test_model_stream)
        model.head.det_head.instance_bank.anchor[:, :3].uniform_(-20, 20)
    return model.double()


def batched(frames: list[FrameInputs]) -> FrameInputs:
    return FrameInputs(*(torch.cat([getattr(f, name) for f in frames]) for name in (
        "images", "projection_mat", "image_wh", "timestamp", "T_global", "T_global_inv", "command")))


def assert_same(eager, static, where: str, batch: int = 1) -> None:
    for b in range(batch):
        a, s = eager.golden_arrays(b), static.golden_arrays(b)
        assert a.keys() == s.keys(), f"{where}: {sorted(set(a) ^ set(s))}"
        for name in a:
            assert a[name].shape == s[name].shape, f"{where} {name}: {a[name].shape} vs {s[name].shape}"
            if a[name].dtype.kind == "f":
                # float64 on both paths; only the summation order differs (attention over padded slots,
                # dense vs visible-sample aggregation): measured <= 1e-11.
                np.testing.assert_allclose(s[name], a[name], rtol=1e-9, atol=1e-9, err_msg=f"{where} {name}")
            else:
                assert np.array_equal(s[name], a[name]), f"{where} {name}: integers differ"
    assert (eager.temporal_valid is None) == (static.temporal_valid is None), where
    if eager.temporal_valid is not None:
        assert torch.equal(eager.temporal_valid, static.temporal_valid), where


def test_static_stream_equals_eager_over_gaps_backwards_time_and_reset(tiny64) -> None:
    eager, static = SparseDriveStream(tiny64), StaticSparseDriveStream(tiny64)
    for k, (t, forward, command) in enumerate(SCHEDULE):
        f = frame(T0 + t, forward=forward, command=command, seed=k)
        assert_same(eager.step(f, return_raw=True), static.step(f, return_raw=True), f"frame {k} (t={t})")
        if k == 5:
            eager.reset()
            static.reset()
    assert static.frames_seen == len(SCHEDULE) - 6


@pytest.mark.parametrize("max_time_gap", [None, 5.0])
def test_static_stream_equals_eager_for_a_batch_of_two(tiny64, max_time_gap) -> None:
    """Ids are numbered row-major across the batch on both paths; samples have different stamps (one gap). The
    optional gap reset compares each sample with its own previous stamp on both paths."""
    eager = SparseDriveStream(tiny64, max_time_gap=max_time_gap)
    static = StaticSparseDriveStream(tiny64, max_time_gap=max_time_gap)
    for k, (ta, tb) in enumerate([(0.0, 10.0), (0.5, 10.5), (1.0, 14.0)]):
        f = batched([frame(T0 + ta, forward=ta, seed=k), frame(T0 + tb, forward=-tb, command=0, seed=10 + k)])
        assert_same(eager.step(f, return_raw=True), static.step(f, return_raw=True), f"frame {k}", batch=2)


def test_static_heads_compile_as_one_graph_and_do_not_recompile(tiny64) -> None:
    """torch.compile(fullgraph=True) raises on any graph break (a data-dependent shape, .item(), a Python branch
    on a tensor). The aot_eager backend also traces through AOTAutograd (functionalisation) like inductor does,
    without the minutes of C++ code generation. After the first frame no recompilation may happen: the state a
    frame returns has the same kinds of tensors as the empty state."""
    model = tiny64.float()
    try:
        heads = StaticHeads(model)
        compiled = torch.compile(heads, fullgraph=True, backend="aot_eager")
        torch._dynamo.reset()
        frames = [frame(T0 + 0.5 * k, forward=float(k), seed=k) for k in range(3)]  # made as a caller would
        with torch.inference_mode():
            state = reference_state = empty_state(model)
            for k, f in enumerate(frames):
                levels = model.extract_feat(f.images)
                args = (levels, f.projection_mat, f.image_wh, f.timestamp, f.T_global, f.T_global_inv, f.command)
                with torch._dynamo.config.patch(error_on_recompile=k > 0):
                    out, state = compiled(*args, state)
                expected, reference_state = heads(*args, reference_state)
                assert out.keys() == expected.keys()
                for name in expected:
                    torch.testing.assert_close(out[name], expected[name], rtol=1e-5, atol=1e-5, msg=name)
    finally:
        tiny64.double()
        torch._dynamo.reset()


def test_relative_time_step_equals_the_absolute_one_in_float32(tiny64) -> None:
    """The float32-only interface (TensorRT): a caller computing dt and the pose change in float64 and passing them
    in float32 gets bit-identical outputs, because the absolute step casts the same float64 values the same way."""
    model = tiny64.float()
    try:
        heads = StaticHeads(model)
        frames = [frame(T0 + t, forward=f, seed=k) for k, (t, f, _) in enumerate(SCHEDULE[:5])]
        with torch.inference_mode():
            absolute, relative = empty_state(model), empty_state(model, relative_time=True)
            assert set(absolute) - set(relative) == {"prev_timestamp", "prev_T_global"}
            previous = None
            for k, f in enumerate(frames):
                levels = model.extract_feat(f.images)
                a, absolute = heads(levels, f.projection_mat, f.image_wh, f.timestamp, f.T_global, f.T_global_inv,
                                    f.command, absolute)
                if previous is None:
                    dt, pose_change = torch.zeros(1), torch.eye(4)[None]
                else:
                    dt = (f.timestamp - previous.timestamp).float()
                    pose_change = (f.T_global_inv @ previous.T_global).float()
                b, relative = heads.relative_step(levels, f.projection_mat, f.image_wh, dt, pose_change, f.command,
                                                  relative)
                previous = f
                assert a.keys() == b.keys()
                for name in a:
                    assert torch.equal(a[name], b[name]), f"frame {k} {name}"
    finally:
        tiny64.double()


def test_a_failing_compilation_falls_back_to_the_uncompiled_graph(tiny64) -> None:
    """A compiler (or CUDA-graph) failure on the first call is a documented degradation: a warning, the reason in
    ``compile_error``, and the same results uncompiled. Later failures are not swallowed."""
    stream, reference = StaticSparseDriveStream(tiny64, compile="default"), SparseDriveStream(tiny64)

    def broken(*args):
        raise RuntimeError("inductor: no C++ compiler")

    stream._run = broken
    f = frame(T0, seed=0)
    with pytest.warns(RuntimeWarning, match="running it uncompiled"):
        out = stream.step(f, return_raw=True)
    assert "no C++ compiler" in stream.compile_error and stream.compile_mode is None
    assert_same(reference.step(f, return_raw=True), out, "fallback frame")
    second = frame(T0 + 0.5, forward=1.0, seed=1)
    assert_same(reference.step(second, return_raw=True), stream.step(second, return_raw=True), "next frame")
    stream._run = broken
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
        stream.step(frame(T0 + 1.0, forward=2.0, seed=2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_static_frame_never_synchronises_on_cuda(tiny64) -> None:
    model = tiny64.float().cuda()
    try:
        stream = StaticSparseDriveStream(model)
        stream.step(frame(T0, seed=0))  # warm-up: allocations, cuDNN/cuBLAS handles
        frames = [frame(T0 + 0.5 * k, forward=float(k), seed=k).to("cuda", torch.float32) for k in (1, 2)]
        with torch.inference_mode():
            state = stream.state
            torch.cuda.set_sync_debug_mode("error")
            try:
                for f in frames:
                    levels = model.extract_feat(f.images)
                    _, state = stream.frame.heads(levels, f.projection_mat, f.image_wh, f.timestamp, f.T_global,
                                                  f.T_global_inv, f.command, state)
            finally:
                torch.cuda.set_sync_debug_mode("default")
    finally:
        tiny64.cpu().double()
