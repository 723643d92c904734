"""The network's state-dict keys, shapes and dtypes equal the original checkpoints'
(docs/model-notes.md#checkpoint-tensors; the key lists are parity material, docs/parity.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from external import shared_file

from sparsedrive_ros.model import SparseDriveConfig, build_sparsedrive, stage_config

REPO = Path(__file__).resolve().parents[1]


def _expected_keys(stage: int) -> dict:
    path = shared_file(f"docs/state-dict-stage{stage}.txt")
    keys = {}
    for line in path.read_text().splitlines():
        name, shape, dtype = line.split("\t")
        keys[name] = (tuple(ast.literal_eval(shape)), dtype)
    return keys


@pytest.mark.parametrize("stage,count", [(1, 1179), (2, 1324)])
def test_state_dict_matches_original(stage: int, count: int) -> None:
    expected = _expected_keys(stage)
    assert len(expected) == count
    model = build_sparsedrive(stage)
    actual = {k: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()}
    assert sorted(set(expected) - set(actual)) == []
    assert sorted(set(actual) - set(expected)) == []
    mismatched = {k: (expected[k], actual[k]) for k in expected if expected[k] != actual[k]}
    assert mismatched == {}


def test_strict_load_round_trip_and_non_trainable_tensors() -> None:
    """Non-trainable tensors (fix_scale, anchors, ego anchor) must be state-dict entries
    (docs/model-notes.md#checkpoint-tensors)."""
    source = build_sparsedrive(2)
    with torch.no_grad():
        source.head.det_head.layers[0].kps_generator.fix_scale.uniform_(-0.775, 0.775)
        source.head.motion_plan_head.plan_anchor.add_(1.0)
    target = build_sparsedrive(2)
    target.load_state_dict(source.state_dict(), strict=True)
    for name, value in source.state_dict().items():
        assert torch.equal(value, target.state_dict()[name]), name
    assert not target.head.det_head.layers[0].kps_generator.fix_scale.requires_grad
    assert not target.head.det_head.instance_bank.instance_feature.requires_grad
    assert target.head.map_head.instance_bank.instance_feature.requires_grad


def test_stage_configs_differ_only_where_the_original_does() -> None:
    one, two = stage_config(1), stage_config(2)
    assert one.map.num_temp_instances == 0 and two.map.num_temp_instances == 33
    assert one.motion_plan is None and two.motion_plan is not None
    assert one.det == two.det
    with pytest.raises(ValueError, match="stage"):
        build_sparsedrive(3)
    with pytest.raises(ValueError, match="stage-1"):
        build_sparsedrive(2, config=one)


@pytest.mark.parametrize("depth,channels", [(18, 512), (34, 512), (50, 2048)])
def test_backbone_depth_is_configurable(depth: int, channels: int) -> None:
    model = build_sparsedrive(1, config=stage_config(1, backbone_depth=depth))
    assert model.img_backbone.layer4[-1].conv1.in_channels == channels
    assert model.img_neck.lateral_convs[3].conv.in_channels == channels


def test_invalid_configs_raise_value_error_naming_the_value() -> None:
    with pytest.raises(ValueError, match="backbone_depth must be one of .* got 42"):
        SparseDriveConfig(backbone_depth=42)
    with pytest.raises(ValueError, match="image_hw=\\(250, 704\\)"):
        SparseDriveConfig(image_hw=(250, 704))
    with pytest.raises(ValueError, match="anchor_encoder_dims"):
        SparseDriveConfig(embed_dims=128)
