"""Checkpoint loading (three formats, refusal of malicious pickles), key checks, summary and converter CLI."""

import os
import pickle
from pathlib import Path

import pytest
import torch
from external import shared_file
from torch import nn

from sparsedrive_ros.model.checkpoint import (
    CheckpointLoadError,
    CheckpointMismatchError,
    check_state_dict,
    detect_stage,
    load_checkpoint,
    read_key_list,
    save_safetensors,
    summarize_state_dict,
)
from sparsedrive_ros.tools import convert_checkpoint


@pytest.fixture
def key_list() -> Path:
    return shared_file("docs/state-dict-stage2.txt")


def _small_state_dict():
    gen = torch.Generator().manual_seed(0)
    return {
        "img_backbone.conv1.weight": torch.randn(4, 3, 3, 3, generator=gen),
        "img_backbone.bn1.num_batches_tracked": torch.tensor(7, dtype=torch.int64),
        "head.det_head.layers.0.kps_generator.fix_scale": torch.tensor([[0.0, 0.0, 0.0], [0.45, 0.0, 0.0]]),
        "head.motion_plan_head.plan_anchor": torch.randn(3, 6, 6, 2, generator=gen),
    }


def _assert_same(got, want):
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name].dtype == want[name].dtype
        assert torch.equal(got[name], want[name]), name


def test_round_trip_mmcv_format(tmp_path):
    sd = _small_state_dict()
    path = tmp_path / "mmcv.pth"
    optimizer = {"state": {0: {"exp_avg": torch.ones(3)}}, "param_groups": [{"lr": 1e-4, "params": [0]}]}
    meta = {"epoch": 10, "iter": 1234, "mmcv_version": "1.7.1", "CLASSES": ("car", "truck"), "config": "x = 1"}
    torch.save({"meta": meta, "state_dict": sd, "optimizer": optimizer}, path)
    _assert_same(load_checkpoint(path), sd)


def test_round_trip_plain_state_dict_strips_module_prefix(tmp_path):
    sd = _small_state_dict()
    path = tmp_path / "plain.pt"
    torch.save({f"module.{k}": v for k, v in sd.items()}, path)
    _assert_same(load_checkpoint(path), sd)
    module = nn.Linear(3, 2)
    torch.save(module.state_dict(), path)  # OrderedDict with _metadata
    _assert_same(load_checkpoint(path), module.state_dict())


def test_round_trip_safetensors_detected_by_content(tmp_path):
    sd = _small_state_dict()
    path = tmp_path / "weights.bin"  # suffix deliberately not .safetensors
    save_safetensors(sd, path, {"stage": "2"})
    _assert_same(load_checkpoint(path), sd)


class _Payload:
    """Unpickling this would create the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["torch", "raw_pickle"])
def test_malicious_pickle_is_refused_without_running(tmp_path, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    payload = {"state_dict": _small_state_dict(), "meta": _Payload(marker)}
    if writer == "torch":
        torch.save(payload, path)
    else:
        with path.open("wb") as handle:
            pickle.dump(payload, handle, protocol=2)
    with pytest.raises(CheckpointLoadError, match="refusing"):
        load_checkpoint(path)
    assert not marker.exists()


def test_non_tensor_entries_and_missing_file_are_rejected(tmp_path):
    path = tmp_path / "odd.pth"
    torch.save({"a.weight": torch.ones(1), "b": [1, 2]}, path)
    with pytest.raises(CheckpointLoadError, match="b"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "absent.pth")


def test_mismatch_error_names_keys_and_shapes():
    sd = _small_state_dict()
    expected = {name: tuple(t.shape) for name, t in sd.items()}
    del expected["head.motion_plan_head.plan_anchor"]
    expected["head.map_head.instance_bank.anchor"] = (100, 40)
    expected["img_backbone.conv1.weight"] = (64, 3, 7, 7)
    with pytest.raises(CheckpointMismatchError) as info:
        check_state_dict(sd, expected)
    message = str(info.value)
    assert "1 missing key(s): head.map_head.instance_bank.anchor" in message
    assert "1 unexpected key(s): head.motion_plan_head.plan_anchor" in message
    assert "img_backbone.conv1.weight (checkpoint [4, 3, 3, 3] vs expected [64, 3, 7, 7])" in message
    assert info.value.missing == ["head.map_head.instance_bank.anchor"]
    assert isinstance(info.value, ValueError)


def test_mismatch_listing_is_truncated_with_counts():
    expected = {f"layer.{i}.weight": (2,) for i in range(25)}
    with pytest.raises(CheckpointMismatchError, match=r"25 missing key\(s\): .*\.\.\. \(15 more\)"):
        check_state_dict({}, expected, max_listed=10)


def test_check_against_module_passes_and_fails():
    module = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    check_state_dict(module.state_dict(), module)
    with pytest.raises(CheckpointMismatchError, match="1.bias"):
        check_state_dict({k: v for k, v in module.state_dict().items() if k != "1.bias"}, module)


def test_key_list_matches_the_original_counts_and_detects_stage(key_list: Path):
    specs = read_key_list(key_list)
    assert len(specs) == 1324
    assert specs["img_backbone.conv1.weight"] == ((64, 3, 7, 7), "float32")
    assert specs["img_backbone.bn1.num_batches_tracked"] == ((), "int64")
    meta = {name: torch.empty(spec.shape, device="meta") for name, spec in specs.items()}
    check_state_dict(meta, specs)
    summary = summarize_state_dict(meta)
    # the original stage-2 model has 86 196 509 numbers besides the 55 0-d BatchNorm num_batches_tracked counters
    counters = [name for name in specs if name.endswith("num_batches_tracked")]
    assert summary.num_tensors == 1324 and len(counters) == 55
    assert summary.total_numel == 86_196_509 + 55
    assert summary.stage == 2 and summary.per_module["head.motion_plan_head"][0] == 145
    stage1 = {k: v for k, v in meta.items() if not k.startswith("head.motion_plan_head.")}
    assert detect_stage(stage1) == 1 and len(stage1) == 1179


def test_convert_cli_writes_safetensors_and_prints_summary(tmp_path, capsys):
    sd = _small_state_dict()
    src, out = tmp_path / "in.pth", tmp_path / "out.safetensors"
    torch.save({"state_dict": sd, "meta": {"epoch": 1}}, src)
    assert convert_checkpoint.main([str(src), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "tensors: 4" in printed and "detected stage: 2" in printed
    assert "[[0.0, 0.0, 0.0], [0.45, 0.0, 0.0]]" in printed  # fix_scale values, rounded
    _assert_same(load_checkpoint(out), sd)
    assert convert_checkpoint.main([str(src), "--info"]) == 0
    assert convert_checkpoint.main([str(tmp_path / "absent.pth"), "--info"]) == 1


def test_numpy_values_in_mmcv_meta_are_accepted(tmp_path):
    import numpy as np

    sd = _small_state_dict()
    path = tmp_path / "numpy_meta.pth"
    meta = {"seed": np.int64(1234), "mean": np.array([1.0, 2.0], dtype=np.float32), "lr": np.float64(2e-4)}
    torch.save({"meta": meta, "state_dict": sd}, path)
    _assert_same(load_checkpoint(path), sd)


def test_numpy_1x_pickle_names_are_accepted(tmp_path):
    import zipfile

    import numpy as np

    sd = _small_state_dict()
    modern, path = tmp_path / "numpy2.pth", tmp_path / "numpy1.pth"
    torch.save({"state_dict": sd, "meta": {"seed": np.int64(7), "a": np.arange(3)}}, modern)
    # Rewrite the pickle with the module names numpy 1.x writes (numpy.core instead of numpy._core).
    with zipfile.ZipFile(modern) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in data
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            dst.writestr(info.filename, data)
    _assert_same(load_checkpoint(path), sd)
