"""ROS-free training and evaluation of SparseDrive (pure PyTorch + scipy).

* :mod:`.losses`, :mod:`.targets`, :mod:`.criterion` — the original's losses, Hungarian targets and the
  per-layer objective (``SparseDriveCriterion(LossConfig())(raw_outputs, GroundTruth) -> {name: loss}``).
* :mod:`.metrics` — nuScenes detection mAP/NDS, map chamfer AP, motion minADE/minFDE/MR/EPA, planning L2 /
  collision.
* :mod:`.augment`, :mod:`.dataset` — training augmentations and sequence-streaming data on the nuScenes reader.
* :mod:`.config`, :mod:`.trainer`, :mod:`.evaluation` — recipes (stage1, stage2, tiny, micro), the DDP trainer
  and checkpoint format, evaluation of a checkpoint over a dataset split.
"""
