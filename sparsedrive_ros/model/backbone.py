"""Image encoder: torchvision ResNet trunk + FPN, and the training-only DenseDepthNet
(docs/model-notes.md#backbone-and-neck).

Parameter names follow the original (mmdet ResNet = torchvision names without ``fc``; mmdet FPN with
``lateral_convs.{i}.conv`` / ``fpn_convs.{i}.conv``).
"""

from __future__ import annotations

from typing import List, Sequence, cast

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
import torchvision
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck

__all__ = ["DenseDepthNet", "FPN", "ResNetTrunk"]

_RESNETS = {
    18: torchvision.models.resnet18,
    34: torchvision.models.resnet34,
    50: torchvision.models.resnet50,
    101: torchvision.models.resnet101,
}


_BLOCKS = {18: (BasicBlock, (2, 2, 2, 2)), 34: (BasicBlock, (3, 4, 6, 3)),
           50: (Bottleneck, (3, 4, 6, 3)), 101: (Bottleneck, (3, 4, 23, 3))}


def _narrow_resnet(depth: int, width: int) -> nn.Module:
    """A torchvision-layout ResNet whose stages have ``width * (1, 2, 4, 8)`` planes instead of 64 * (...).

    torchvision fixes the planes at 64; the small demo model uses 32 (a quarter of ResNet-18's parameters and
    multiply-adds), which is plenty for the flat-shaded synthetic world. Same module names, so the same state
    dict layout as the full-width trunk, and torchvision's initialisation (He normal, BN weight 1, bias 0).
    """
    block, counts = _BLOCKS[depth]
    net = nn.Module()
    net.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
    net.bn1, net.relu = nn.BatchNorm2d(width), nn.ReLU(inplace=True)
    net.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    inplanes = width
    for i, count in enumerate(counts):
        planes, stride = width * 2 ** i, 1 if i == 0 else 2
        blocks = []
        for j in range(count):
            downsample = None
            if j == 0 and (stride != 1 or inplanes != planes * block.expansion):
                downsample = nn.Sequential(nn.Conv2d(inplanes, planes * block.expansion, 1, stride, bias=False),
                                           nn.BatchNorm2d(planes * block.expansion))
            blocks.append(block(inplanes, planes, stride if j == 0 else 1, downsample))
            inplanes = planes * block.expansion
        setattr(net, f"layer{i + 1}", nn.Sequential(*blocks))
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return net


class ResNetTrunk(nn.Module):
    """torchvision ResNet up to layer4, returning the four stage outputs C2..C5 (strides 4, 8, 16, 32)."""

    def __init__(self, depth: int = 50, width: int = 64) -> None:
        super().__init__()
        if depth not in _RESNETS:
            raise ValueError(f"ResNet depth must be one of {sorted(_RESNETS)}, got {depth}")
        net = _RESNETS[depth](weights=None) if width == 64 else _narrow_resnet(depth, width)
        parts = dict(net.named_children())
        self.conv1, self.bn1, self.relu, self.maxpool = parts["conv1"], parts["bn1"], parts["relu"], parts["maxpool"]
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            cast(nn.Sequential, parts[f"layer{i}"]) for i in (1, 2, 3, 4))
        # Training option (mmdet's with_cp): keep only each residual block's input and recompute the block in
        # the backward pass, trading ~30 % more backbone time for most of its activation memory. The recompute
        # runs training-mode BatchNorm a second time, so running statistics take two momentum updates per
        # step (as in mmdet); gradients and outputs are unchanged.
        self.grad_checkpoint = False

    @torch.no_grad()
    def fuse_batchnorm(self) -> None:
        """Fold every eval-mode BatchNorm into the convolution before it (inference only, after loading weights).

        Saves the BN passes (10-25 % of the trunk's CPU time); outputs change only by float rounding. The state
        dict no longer has the BN keys afterwards, so do this on a model that will not load checkpoints again.
        """
        if self.training:
            raise RuntimeError("fuse_batchnorm() needs eval mode: training BatchNorm uses batch statistics")
        fuse = torch.nn.utils.fusion.fuse_conv_bn_eval
        if isinstance(self.conv1, nn.Conv2d) and isinstance(self.bn1, nn.BatchNorm2d):
            self.conv1, self.bn1 = fuse(self.conv1, self.bn1), nn.Identity()
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in layer:
                for i in (1, 2, 3):
                    conv, bn = getattr(block, f"conv{i}", None), getattr(block, f"bn{i}", None)
                    if conv is not None and isinstance(bn, nn.BatchNorm2d):
                        setattr(block, f"conv{i}", fuse(conv, bn))
                        setattr(block, f"bn{i}", nn.Identity())
                down = getattr(block, "downsample", None)
                if isinstance(down, nn.Sequential) and len(down) == 2 and isinstance(down[0], nn.Conv2d) \
                        and isinstance(down[1], nn.BatchNorm2d):
                    block.downsample = nn.Sequential(fuse(down[0], down[1]))

    def forward(self, x: Tensor) -> List[Tensor]:
        """[N, 3, H, W] -> [C2 [N, c2, H/4, W/4], C3, C4, C5 [N, c5, H/32, W/32]]."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        checkpointed = self.grad_checkpoint and self.training and torch.is_grad_enabled()
        outs = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in layer:
                x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False) if checkpointed else block(x)
            outs.append(x)
        return outs


class _ConvModule(nn.Module):
    """Holds a conv under the name ``conv`` (mmcv ConvModule without norm/activation)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class FPN(nn.Module):
    """mmdet FPN with as many outputs as inputs: lateral 1x1, nearest top-down sum, 3x3 output conv."""

    def __init__(self, in_channels: Sequence[int], out_channels: int = 256) -> None:
        super().__init__()
        self.lateral_convs = nn.ModuleList([_ConvModule(c, out_channels, 1) for c in in_channels])
        self.fpn_convs = nn.ModuleList([_ConvModule(out_channels, out_channels, 3) for _ in in_channels])

    def forward(self, inputs: Sequence[Tensor]) -> List[Tensor]:
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs)]
        for i in range(len(laterals) - 1, 0, -1):
            upsampled = F.interpolate(laterals[i], size=laterals[i - 1].shape[2:], mode="nearest")
            laterals[i - 1] = laterals[i - 1] + upsampled
        return [conv(x) for conv, x in zip(self.fpn_convs, laterals)]


class DenseDepthNet(nn.Module):
    """Auxiliary per-pixel depth on the first ``num_depth_layers`` levels (training only,
    docs/model-notes.md#backbone-and-neck)."""

    def __init__(self, embed_dims: int = 256, num_depth_layers: int = 3, equal_focal: float = 100.0,
                 max_depth: float = 60.0) -> None:
        super().__init__()
        self.equal_focal = equal_focal
        self.max_depth = max_depth
        self.depth_layers = nn.ModuleList([nn.Conv2d(embed_dims, 1, 1) for _ in range(num_depth_layers)])

    def forward(self, feature_maps: Sequence[Tensor], focal: Tensor) -> List[Tensor]:
        """feature_maps: levels [B*N_cam, C, h, w]; focal: [B*N_cam] fx of the augmented images (pixels).

        Returns per level depth in metres [B*N_cam, 1, h, w].
        """
        scale = (focal / self.equal_focal).reshape(-1, 1, 1, 1)
        return [torch.exp(layer(feat)) * scale for layer, feat in zip(self.depth_layers, feature_maps)]
