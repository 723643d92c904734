"""Hand-built checks of the SparseDrive components' math (small tensors, known answers)."""

from __future__ import annotations

import math

import pytest
import torch

from sparsedrive_ros.model.box3d import SparseBox3DDecoder, SparseBox3DKeyPointsGenerator, decode_box
from sparsedrive_ros.model.config import MotionPlanConfig
from sparsedrive_ros.model.deformable_layer import DeformableFeatureAggregation, project_points
from sparsedrive_ros.model.instance_bank import InstanceBank, InstanceBankState
from sparsedrive_ros.model.layers import AsymmetricFFN, MultiheadAttention, sine_position_embedding
from sparsedrive_ros.model.motion import InstanceQueue, InstanceQueueState, MotionPlanningHead
from sparsedrive_ros.model.motion_decoders import HierarchicalPlanningDecoder, check_collision
from sparsedrive_ros.model.point3d import SparsePoint3DDecoder, SparsePoint3DKeyPointsGenerator
from sparsedrive_ros.model.sparse4d_head import HeadOutput

LN = math.log


@pytest.fixture(autouse=True)
def _float64_default():
    """Hand-computed answers are checked in float64; restore the default for other test modules."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def box(x, y, z, length, width, height, yaw, vx=0.0, vy=0.0, vz=0.0):
    return [x, y, z, LN(length), LN(width), LN(height), math.sin(yaw), math.cos(yaw), vx, vy, vz]


# ----------------------------------------------------------------------------------------------- key points


def test_key_points_of_a_rotated_box() -> None:
    gen = SparseBox3DKeyPointsGenerator(embed_dims=4, num_learnable_pts=1,
                                        fix_scale=[[0, 0, 0], [0.5, 0, 0], [0, 0.5, 0], [0, 0, -0.5]]).double()
    torch.nn.init.zeros_(gen.learnable_fc.weight)
    torch.nn.init.zeros_(gen.learnable_fc.bias)  # sigmoid(0) - 0.5 = 0: learnable point at the centre
    anchor = torch.tensor([[box(10.0, 20.0, -1.0, 4.0, 2.0, 1.5, math.pi / 2)]])
    points = gen(anchor, torch.zeros(1, 1, 4))[0, 0]
    # heading +y: the length axis (2 m half) maps to +y, the width axis (1 m half) to -x
    expected = torch.tensor([[10, 20, -1], [10, 22, -1], [9, 20, -1], [10, 20, -1.75], [10, 20, -1]])
    torch.testing.assert_close(points, expected.double(), atol=1e-12, rtol=0)


def test_map_key_points_layout_and_heights() -> None:
    gen = SparsePoint3DKeyPointsGenerator(embed_dims=4, num_sample=2, num_learnable_pts=1, fix_height=(0.0, 1.0),
                                          ground_height=-1.8).double()
    torch.nn.init.zeros_(gen.learnable_fc.weight)
    with torch.no_grad():
        gen.learnable_fc.bias.copy_(torch.tensor([0.1, 0.2, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]))
    anchor = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]])  # two points (1, 2), (3, 4)
    points = gen(anchor, torch.zeros(1, 1, 4))[0, 0]  # [S * heights * learnable, 3]
    expected = torch.tensor([[1.1, 2.2, -1.8], [1.0, 2.0, -0.8], [3.0, 4.0, -1.8], [3.0, 4.0, -0.8]])
    torch.testing.assert_close(points, expected, atol=1e-12, rtol=0)


# ----------------------------------------------------------------------------------------------- instance bank


def _bank(num_anchor: int = 4, num_temp: int = 2) -> InstanceBank:
    return InstanceBank(num_anchor, 3, torch.zeros(num_anchor, 11), SparseBox3DKeyPointsGenerator(),
                        num_temp_instances=num_temp, feat_grad=False).double()


QUARTER_TURN = torch.tensor([[[0.0, -1.0, 0.0, 1.0], [1.0, 0.0, 0.0, 2.0], [0.0, 0.0, 1.0, 0.0],
                              [0.0, 0.0, 0.0, 1.0]]])
T0 = 1533151603.5  # nuScenes-like epoch seconds: a float32 timestamp would lose the 0.5 s
                   # (docs/model-notes.md#numeric-precision)


def _cached_state(timestamp: float = T0) -> InstanceBankState:
    anchor = torch.tensor([[box(10.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0, vx=2.0), box(0.0, 5.0, 0.0, 1, 1, 1, 0.0)]])
    return InstanceBankState(cached_feature=torch.ones(1, 2, 3), cached_anchor=anchor,
                             confidence=torch.tensor([[0.9, 0.5]]), instance_id=torch.tensor([[7, 3, -1, -1]]),
                             prev_id=8, timestamp=torch.tensor([timestamp], dtype=torch.float64),
                             T_global=torch.eye(4, dtype=torch.float64)[None])


def test_anchor_projection_across_frames_with_velocity() -> None:
    bank, state = _bank(), _cached_state()
    frame = bank.get(state, 1, torch.tensor([T0 + 0.5], dtype=torch.float64), QUARTER_TURN)
    # centre moves by v * dt = (1, 0, 0) first, then T = rotate +90 deg about z and translate (1, 2, 0)
    expected = torch.tensor(box(1.0, 13.0, 0.0, 4.0, 2.0, 1.5, math.pi / 2, vy=2.0))
    torch.testing.assert_close(frame.temp_anchor[0, 0], expected, atol=1e-12, rtol=0)
    assert frame.time_interval.tolist() == [0.5]
    assert state.mask.tolist() == [True]


@pytest.mark.parametrize("dt,valid,interval", [(3.0, False, 0.5), (-1.0, True, -1.0), (0.0, True, 0.5)])
def test_time_gap_rules(dt: float, valid: bool, interval: float) -> None:
    """> 2 s masks the history; going back within 2 s is accepted with a negative interval (as the original);
    dt = 0 uses the default interval."""
    bank, state = _bank(), _cached_state()
    frame = bank.get(state, 1, torch.tensor([T0 + dt], dtype=torch.float64), torch.eye(4)[None])
    assert state.mask.tolist() == [valid]
    assert frame.time_interval.tolist() == [interval]
    assert frame.temp_feature is not None  # the stale cache is still returned (docs/model-notes.md#temporal-rules)
    fresh_feature, fresh_anchor = torch.zeros(1, 4, 3), torch.zeros(1, 4, 11)
    feature, _ = bank.update(state, fresh_feature, fresh_anchor, torch.randn(1, 4, 10))
    assert torch.equal(feature[:, :2], torch.ones(1, 2, 3)) == valid
    assert state.instance_id[0, :2].tolist() == ([7, 3] if valid else [-1, -1])


def test_batch_size_change_resets_the_cache() -> None:
    bank, state = _bank(), _cached_state()
    frame = bank.get(state, 2, torch.full((2,), T0 + 0.5, dtype=torch.float64), torch.eye(4).expand(2, 4, 4))
    assert frame.temp_feature is None and state.prev_id == 0 and state.mask is None


def _logits(confidences) -> torch.Tensor:
    """[N] sigmoid confidences -> [1, N, 10] logits whose max class has that confidence."""
    p = torch.tensor(confidences)
    logits = torch.full((1, len(confidences), 10), -20.0)
    logits[0, :, 3] = torch.log(p / (1 - p))
    return logits


def _frame(bank: InstanceBank, state: InstanceBankState, t: float, confidences) -> torch.Tensor:
    frame = bank.get(state, 1, torch.tensor([t], dtype=torch.float64), torch.eye(4)[None])
    feature, anchor = bank.update(state, frame.instance_feature, frame.anchor, _logits(confidences))
    bank.cache(state, feature, anchor, _logits(confidences), torch.tensor([t], dtype=torch.float64),
               torch.eye(4)[None])
    return bank.get_instance_id(state, _logits(confidences))


def test_instance_ids_follow_the_carried_instances() -> None:
    bank, state = _bank(), InstanceBankState()
    assert _frame(bank, state, T0, [0.9, 0.1, 0.8, 0.3]).tolist() == [[0, 1, 2, 3]]
    assert state.instance_id.tolist() == [[0, 2, -1, -1]]  # top-2 by confidence, in that order
    assert state.confidence[0].tolist() == pytest.approx([0.9, 0.8])
    # next frame: carried instances sit at 0..1 and keep their ids, the 2 fresh ones get 4, 5
    ids = _frame(bank, state, T0 + 0.5, [0.2, 0.7, 0.1, 0.6])
    assert ids.tolist() == [[0, 2, 4, 5]]
    # confidence fusion max(prev * 0.6, now) on the carried slots: 0.54 / 0.48 vs 0.2 / 0.7
    assert state.temp_confidence[0].tolist() == pytest.approx([0.54, 0.7, 0.1, 0.6])
    assert state.instance_id.tolist() == [[2, 5, -1, -1]]
    # after a > 2 s gap nothing is carried: every instance gets a new id
    assert _frame(bank, state, T0 + 4.0, [0.2, 0.7, 0.1, 0.6]).tolist() == [[6, 7, 8, 9]]


# ----------------------------------------------------------------------------------------------- DFA


def _camera_rig() -> tuple[torch.Tensor, torch.Tensor]:
    """Camera 0 looks along +y (depth = y), cameras 1 and 2 along -y: a point ahead is seen by camera 0 only."""
    ahead = torch.tensor([[100.0, 352.0, 0.0, 0.0], [0.0, 128.0, -100.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0, 0, 0, 1]])
    behind = ahead.clone()
    behind[:3] *= -1
    projection = torch.stack([ahead, behind, behind])[None]  # [1, 3, 4, 4]
    return projection, torch.tensor([[[704.0, 256.0]] * 3])


def _dfa() -> DeformableFeatureAggregation:
    gen = SparseBox3DKeyPointsGenerator(embed_dims=16, num_learnable_pts=2, fix_scale=[[0, 0, 0]])
    dfa = DeformableFeatureAggregation(gen, embed_dims=16, num_groups=2, num_levels=2, num_cams=3).double().eval()
    torch.nn.init.normal_(dfa.weights_fc.weight)
    return dfa


def test_dfa_softmax_is_joint_over_cameras_levels_points_per_group() -> None:
    torch.manual_seed(0)
    dfa, (projection, _) = _dfa(), _camera_rig()
    feature, embed = torch.randn(1, 5, 16), torch.randn(1, 5, 16)
    weights = dfa._weights(feature, embed, projection)  # [B, N, cam, L, P, G]
    assert weights.shape == (1, 5, 3, 2, 3, 2)
    torch.testing.assert_close(weights.sum(dim=(2, 3, 4)), torch.ones(1, 5, 2))
    assert not torch.allclose(weights.sum(dim=(3, 4)), torch.ones(1, 5, 3, 2))  # not per camera
    camera_embed = dfa.camera_encoder(projection[:, :, :3].reshape(1, 3, 12))
    logits = dfa.weights_fc((feature + embed)[:, :, None] + camera_embed[:, None])  # [B, N, cam, L*P*G]
    reference = logits.reshape(1, 5, -1, 2).softmax(dim=-2).reshape(1, 5, 3, 2, 3, 2)
    torch.testing.assert_close(weights, reference, atol=1e-12, rtol=0)


def test_dfa_samples_only_cameras_that_see_the_points() -> None:
    torch.manual_seed(0)
    dfa, (projection, image_wh) = _dfa(), _camera_rig()
    torch.nn.init.zeros_(dfa.kps_generator.learnable_fc.weight)
    torch.nn.init.zeros_(dfa.kps_generator.learnable_fc.bias)
    anchor = torch.tensor([[box(0.0, 10.0, 0.0, 1.0, 1.0, 1.0, 0.0)]])
    points = project_points(dfa.kps_generator(anchor, torch.zeros(1, 1, 16)), projection, image_wh)
    torch.testing.assert_close(points[0, 0, 0], torch.full((3, 2), 0.5))  # image centre of camera 0
    assert (points[0, 1:].abs() > 1e3).all()  # behind cameras 1, 2: depth clamped, far outside
    feature, embed = torch.randn(1, 1, 16), torch.randn(1, 1, 16)
    maps = [torch.full((1, 3, 16, 8, 22), 2.0), torch.full((1, 3, 16, 4, 11), 2.0)]  # constant features
    out = dfa(feature, anchor, embed, maps, projection, image_wh)
    weights = dfa._weights(feature, embed, projection)
    per_group = weights[0, 0, 0].sum(dim=(0, 1))  # camera 0 only, all levels and points: [G]
    aggregated = 2.0 * per_group.repeat_interleave(8)[None, None]
    torch.testing.assert_close(out, torch.cat([dfa.output_proj(aggregated), feature], dim=-1))


# ----------------------------------------------------------------------------------------------- attention / ffn


def test_attention_defaults_and_padding_mask() -> None:
    torch.manual_seed(0)
    attn = MultiheadAttention(8, num_heads=2, dropout=0.0).double().eval()
    torch_mha = torch.nn.MultiheadAttention(8, 2, batch_first=True).double().eval()
    torch_mha.load_state_dict(attn.attn.state_dict())  # same parameter names
    query, pos = torch.randn(3, 1, 8), torch.randn(3, 1, 8)
    key, key_pos = torch.randn(3, 4, 8), torch.randn(3, 4, 8)
    pad = torch.tensor([[True, False, False, False], [False] * 4, [True, True, True, False]])
    out = attn(query, key, query_pos=pos, key_pos=key_pos, key_padding_mask=pad)
    expected = query + torch_mha(query + pos, key + key_pos, key, key_padding_mask=pad)[0]
    torch.testing.assert_close(out, expected)
    # self-attention: key = query and key_pos = query_pos when not given
    self_out = attn(query, query_pos=pos)
    torch.testing.assert_close(self_out, query + torch_mha(query + pos, query + pos, query)[0])


def test_asymmetric_ffn_identity_after_pre_norm() -> None:
    torch.manual_seed(0)
    ffn = AsymmetricFFN(6, 4, 12, ffn_drop=0.0).double().eval()
    x = torch.randn(2, 6)
    normed = ffn.pre_norm(x)
    torch.testing.assert_close(ffn(x), ffn.identity_fc(normed) + ffn.layers(normed))


def test_sine_embedding_uses_a_float32_frequency_table() -> None:
    pos = torch.tensor([[50.123456789, -7.5]])
    emb = sine_position_embedding(pos)
    dim_t = (10000 ** (2 * (torch.arange(128, dtype=torch.float32) // 2) / 128)).double()
    assert emb.shape == (1, 256)
    torch.testing.assert_close(emb[0, 128], torch.sin(pos[0, 0] * 2 * math.pi / dim_t[0]), atol=0, rtol=0)
    torch.testing.assert_close(emb[0, 131], torch.cos(pos[0, 0] * 2 * math.pi / dim_t[3]), atol=0, rtol=0)
    torch.testing.assert_close(emb[0, 2], torch.sin(pos[0, 1] * 2 * math.pi / dim_t[2]), atol=0, rtol=0)


# ----------------------------------------------------------------------------------------------- decoders


def test_det_decoder_topk_rescored_by_centerness() -> None:
    cls = _logits([0.9, 0.8, 0.7, 0.6, 0.1])
    cls[0, 1, 3], cls[0, 1, 5] = -20.0, math.log(0.8 / 0.2)  # instance 1 is class 5
    cns = torch.tensor([0.1, 0.9, 0.9, 0.9, 0.9])
    quality = torch.stack([torch.log(cns / (1 - cns)), torch.zeros(5)], dim=-1)[None]
    boxes = torch.tensor([[box(float(i), 0.0, 0.0, 4.0, 2.0, 1.0, 0.3 * i) for i in range(5)]])
    ids = torch.tensor([[10, 11, 12, 13, 14]])
    det = SparseBox3DDecoder(num_output=3).decode(cls, boxes, quality, ids)
    # top-3 by class score: 0, 1, 2; times centerness 0.09, 0.72, 0.63 -> order 1, 2, 0
    assert det.index.tolist() == [[1, 2, 0]]
    assert det.scores[0].tolist() == pytest.approx([0.72, 0.63, 0.09])
    assert det.cls_scores[0].tolist() == pytest.approx([0.8, 0.7, 0.9])
    assert det.labels.tolist() == [[5, 3, 3]] and det.instance_ids.tolist() == [[11, 12, 10]]
    torch.testing.assert_close(det.boxes[0, 0], torch.tensor([1.0, 0, 0, 4, 2, 1, 0.3, 0, 0, 0]))
    torch.testing.assert_close(decode_box(boxes[0, 2])[6], torch.tensor(0.6))


def test_map_decoder_ranks_instance_class_pairs() -> None:
    p = torch.tensor([[[0.9, 0.8, 0.1], [0.2, 0.3, 0.85]]])
    polylines = torch.arange(8.0).reshape(1, 2, 4)  # two 2-point polylines
    out = SparsePoint3DDecoder(num_output=3).decode(torch.log(p / (1 - p)), polylines)
    assert out.index.tolist() == [[0, 1, 0]] and out.labels.tolist() == [[0, 2, 1]]
    assert out.scores[0].tolist() == pytest.approx([0.9, 0.85, 0.8])
    torch.testing.assert_close(out.polylines[0, 1], torch.tensor([[4.0, 5.0], [6.0, 7.0]]))


# ----------------------------------------------------------------------------------------------- planning


def _plan_inputs(agents, confidences):
    """Command 2 (straight) modes: 0 and 2-5 drive straight (+y, 2 m/step), mode 1 swerves right (x += 1.5)."""
    cfg = MotionPlanConfig()
    plan_cls = torch.zeros(1, 1, 18)
    plan_cls[0, 0, 12:] = torch.tensor([2.0, 1.0, -1.0, -1.0, -1.0, -1.0])
    plan_reg = torch.zeros(1, 1, 18, 6, 2)
    plan_reg[..., 1] = 2.0
    plan_reg[0, 0, 13] = torch.tensor([1.5, 0.5])
    det_anchor = torch.tensor([agents])
    num_agents = len(agents)
    return dict(plan_cls=plan_cls, plan_reg=plan_reg, plan_status=torch.zeros(1, 1, 10),
                ego_period=torch.ones(1, 1, dtype=torch.long), ego_anchor_queue=[torch.zeros(1, 1, 11)],
                command=torch.tensor([2]), det_cls_logits=_logits(confidences), det_anchor=det_anchor,
                motion_cls=torch.zeros(1, num_agents, 6), motion_reg=torch.zeros(1, num_agents, 6, 12, 2)), cfg


def test_planning_rescore_avoids_a_blocking_agent() -> None:
    # a confident static car 6 m ahead blocks every straight mode; a low-confidence one blocks the swerve
    inputs, cfg = _plan_inputs([box(0.0, 6.0, -1.0, 4.0, 2.0, 1.5, math.pi / 2),
                                box(9.0, 3.0, -1.0, 4.0, 2.0, 1.5, 0.0)], [0.95, 0.3])
    plan = HierarchicalPlanningDecoder(cfg).decode(**inputs)
    assert plan.mode.tolist() == [1]
    torch.testing.assert_close(plan.final[0, -1], torch.tensor([9.0, 3.0]))
    scores = plan.scores[0, 2]
    assert scores[1] == pytest.approx(torch.sigmoid(torch.tensor(1.0)).item())
    assert (scores[[0, 2, 3, 4, 5]] < 1e-300).all()  # logit - 999
    assert plan.scores[0, 0].tolist() == pytest.approx([0.5] * 6)  # other commands untouched


def test_planning_rescore_leaves_scores_when_every_mode_collides() -> None:
    inputs, cfg = _plan_inputs([box(0.5, 1.0, -1.0, 1.0, 1.0, 1.0, 0.0)], [0.95])  # at the ego's first step
    plan = HierarchicalPlanningDecoder(cfg).decode(**inputs)
    assert plan.mode.tolist() == [0]
    torch.testing.assert_close(plan.scores[0, 2], torch.sigmoid(inputs["plan_cls"][0, 0, 12:]))


def test_collision_check_is_symmetric_in_the_other_box_frame() -> None:
    ego = torch.tensor([[0.0, 0.0, 0.0, 4.0, 2.0, 1.5, math.pi / 2]] * 3)
    other = torch.tensor([[0.0, 2.4, 0.0, 1.0, 1.0, 1.0, 0.0],      # corner at y = 1.9 < 2 - inside
                          [1.6, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0],      # beside the ego (half width 1) - outside
                          [0.0, 0.0, 0.0, 0.2, 0.2, 0.2, 0.0]])     # fully inside: only ego-in-other fails
    assert check_collision(ego, other).tolist() == [True, False, True]


# ----------------------------------------------------------------------------------------------- motion queue


def _det_output(ids, confidences, feature_value: float) -> HeadOutput:
    n = len(ids)
    anchor = torch.tensor([[box(float(i), 0.0, 0.0, 1.0, 1.0, 1.0, 0.0) for i in range(n)]])
    return HeadOutput(classification=[_logits(confidences)], prediction=[anchor], quality=[None],
                      instance_feature=torch.full((1, n, 8), feature_value) + torch.arange(n)[None, :, None],
                      anchor_embed=torch.zeros(1, n, 8), instance_id=torch.tensor([ids]),
                      time_interval=torch.tensor([0.5]))


def test_instance_queue_matches_history_by_id_and_confidence() -> None:
    queue = InstanceQueue(embed_dims=8, queue_length=4, tracking_threshold=0.2, feature_map_hw=(8, 22)).double()
    queue.eval()
    state, handler, eye = InstanceQueueState(), SparseBox3DKeyPointsGenerator(), torch.eye(4)[None]
    front = torch.randn(1, 8, 8, 22)
    first = _det_output([0, 1, 2, 3], [0.9, 0.1, 0.8, 0.3], 100.0)
    frame = queue.get(state, first, front, eye, None, handler)
    assert state.period.tolist() == [[1, 1, 1, 1]] and frame.temp_feature.shape == (1, 5, 1, 8)
    queue.cache(state, first, torch.zeros(1, 1, 8), torch.arange(10.0).reshape(1, 1, 10), eye)
    second = _det_output([0, 1, 7, 2], [0.5, 0.5, 0.5, 0.5], 200.0)
    frame = queue.get(state, second, front, eye, torch.tensor([True]), handler)
    # id 1 was not confident enough (0.1 <= 0.2) to carry its history; id 7 is new
    assert state.period.tolist() == [[2, 1, 1, 2]]
    assert frame.temp_feature[0, 3, 0].tolist() == [102.0] * 8  # history of id 2 was row 2 last frame
    assert frame.temp_feature[0, 1, 0].tolist() == [0.0] * 8
    assert frame.temp_mask[0, :4].tolist() == [[False, False], [True, False], [True, False], [False, False]]
    assert frame.ego_anchor[0, 0, 9].item() == 6.0  # previous predicted forward speed -> VY
                                                    # (docs/model-notes.md#trajectories-command-and-ego-status)
    assert state.ego_period.tolist() == [[2]]
    queue.cache(state, second, torch.zeros(1, 1, 8), torch.arange(10.0).reshape(1, 1, 10), eye)
    frame = queue.get(state, _det_output([0, 1, 7, 2], [0.5] * 4, 300.0), front, eye, torch.tensor([False]), handler)
    assert frame.ego_anchor[0, 0, 9].item() == 0.0 and state.ego_period.tolist() == [[1]]  # time gap


def test_packed_temporal_attention_equals_the_padded_one() -> None:
    """Projecting only the tracked history entries must not change the motion head's temp_gnn."""
    torch.manual_seed(0)
    head = MotionPlanningHead(MotionPlanConfig(ffn_dims=32, num_blocks=1), 16, 10, (8, 22)).double().eval()
    query, query_pos = torch.randn(5, 1, 16), torch.randn(5, 1, 16)
    history, history_embed = torch.randn(5, 4, 16), torch.randn(5, 4, 16)
    period = torch.tensor([1, 4, 2, 3, 1])
    padding = torch.arange(4, 0, -1)[None] > period[:, None]  # [S, Q] True = older than the period
    dense = head.graph_model(0, query, history, history, query_pos, history_embed, key_padding_mask=padding)
    valid = ~padding
    packed = head.temporal_attention(0, query, query_pos, history[valid], history_embed[valid], valid)
    torch.testing.assert_close(packed, dense, atol=1e-12, rtol=0)
