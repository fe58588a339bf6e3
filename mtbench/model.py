"""The multi-task network: a shared torchvision ResNet backbone, a classification and a segmentation head."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from .config import BACKBONES
from .errors import ConfigError


class Backbone(nn.Module):
    """A ResNet without its pooling and classifier, returning the stride 8, 16 and 32 feature maps."""

    def __init__(self, name: str):
        super().__init__()
        if name not in BACKBONES:
            raise ConfigError(f"unknown backbone {name!r}: expected one of {', '.join(BACKBONES)}")
        net = torchvision.models.get_model(name, weights=None)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1)
        self.layer2, self.layer3, self.layer4 = net.layer2, net.layer3, net.layer4
        self.channels = tuple(_out_channels(layer) for layer in (net.layer2, net.layer3, net.layer4))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c2 = self.layer2(self.stem(x))
        c3 = self.layer3(c2)
        return [c2, c3, self.layer4(c3)]


def _out_channels(layer: nn.Sequential) -> int:
    block = layer[-1]
    return (block.bn3 if hasattr(block, "bn3") else block.bn2).num_features


class SegmentationHead(nn.Module):
    """FCN-8s style: per-stride class scores summed coarse to fine, upsampled to the input size."""

    def __init__(self, channels: tuple[int, int, int], num_classes: int):
        super().__init__()
        mid = channels[-1] // 2
        self.context = nn.Sequential(
            nn.Conv2d(channels[-1], mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True)
        )
        self.score32 = nn.Conv2d(mid, num_classes, 1)
        self.score16 = nn.Conv2d(channels[1], num_classes, 1)
        self.score8 = nn.Conv2d(channels[0], num_classes, 1)

    def forward(self, feats: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        c8, c16, c32 = feats
        out = self.score32(self.context(c32))
        out = self.score16(c16) + F.interpolate(out, size=c16.shape[-2:], mode="bilinear", align_corners=False)
        out = self.score8(c8) + F.interpolate(out, size=c8.shape[-2:], mode="bilinear", align_corners=False)
        return F.interpolate(out, size=size, mode="bilinear", align_corners=False)


class MultiTaskNet(nn.Module):
    """One backbone, two heads. ``forward(x_cls, x_seg)`` runs each given batch through its head.

    Both tasks go through one call so that DistributedDataParallel sees one forward per backward.
    """

    def __init__(self, backbone: str = "resnet18", num_classes: int = 1000, num_seg_classes: int = 21):
        super().__init__()
        self.backbone = Backbone(backbone)
        self.cls_head = nn.Linear(self.backbone.channels[-1], num_classes)
        self.seg_head = SegmentationHead(self.backbone.channels, num_seg_classes)

    def forward(
        self, x_cls: torch.Tensor | None, x_seg: torch.Tensor | None = None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        cls_out = seg_out = None
        if x_cls is not None:
            cls_out = self.cls_head(torch.flatten(F.adaptive_avg_pool2d(self.backbone(x_cls)[-1], 1), 1))
        if x_seg is not None:
            seg_out = self.seg_head(self.backbone(x_seg), x_seg.shape[-2:])
        return cls_out, seg_out

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """The parameters of the backbone's last stage, the last layer both tasks share (GradNorm reads there)."""
        return list(self.backbone.layer4[-1].parameters())


# A plain torchvision ResNet checkpoint maps onto the backbone (and its fc onto the 1000-class head).
_TORCHVISION_PREFIXES = {
    "conv1.": "backbone.stem.0.",
    "bn1.": "backbone.stem.1.",
    "layer1.": "backbone.stem.4.",
    "layer2.": "backbone.layer2.",
    "layer3.": "backbone.layer3.",
    "layer4.": "backbone.layer4.",
    "fc.": "cls_head.",
}


def _from_torchvision(key: str) -> str:
    for old, new in _TORCHVISION_PREFIXES.items():
        if key.startswith(old):
            return new + key[len(old):]
    return key


def load_weights(model: nn.Module, path: str) -> str | None:
    """Load a local checkpoint (a state dict, or a dict with ``model``) with ``weights_only=True``.

    Returns None when every tensor of the model was loaded, else a warning naming how many were and
    which parts of the model keep their initial values.
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"--weights {path}: no such file")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"--weights {path}: not a loadable checkpoint ({type(exc).__name__})") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ConfigError(f"--weights {path}: expected a state dict, got {type(state).__name__}")
    bad = next(((k, v) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise ConfigError(f"--weights {path}: expected a state dict of name -> tensor, found key {bad[0]!r} "
                          f"holding a {type(bad[1]).__name__}")
    if not any(k.startswith("backbone.") for k in state):
        state = {_from_torchvision(k): v for k, v in state.items()}
        if not any(k.startswith("cls_head.") for k in model.state_dict()):
            # Another workload's network (no 1000-way head) takes the torchvision backbone alone.
            state = {k: v for k, v in state.items() if not k.startswith("cls_head.")}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        detail = str(exc).strip().splitlines()[-1].strip()
        raise ConfigError(f"--weights {path}: does not fit the model: {detail}") from None
    keys = model.state_dict().keys()
    if unexpected or len(missing) == len(keys):
        raise ConfigError(
            f"--weights {path}: does not match the model ({len(unexpected)} unexpected keys, "
            f"{len(missing)} missing), expected a checkpoint of this backbone"
        )
    # Counted here rather than from `missing`, which leaves out BatchNorm's num_batches_tracked.
    absent = [key for key in keys if key not in state]
    if not absent:
        return None
    parts: dict[str, int] = {}
    for key in absent:
        part = key.split(".")[0]
        parts[part] = parts.get(part, 0) + 1
    where = ", ".join(f"{part} ({n} tensors)" for part, n in parts.items())
    return f"--weights {path}: loaded {len(keys) - len(absent)} of {len(keys)} tensors; kept initial values for {where}"
