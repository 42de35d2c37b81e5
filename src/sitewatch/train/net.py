"""The Siamese U-Net of the learned detector (FC-Siam-diff, Daudt, Le Saux & Boulch, ICIP 2018), small.

Both dates go through one encoder (shared weights); at every scale the decoder receives the absolute
difference of the two dates' features, so the network is symmetric in the order of the dates (OSCD labels
are undirected).  With ``pair`` channels, every decoder stage also receives the scene-normalised pair
features (:func:`sitewatch.detectors.learned.pair_features`) averaged down to its scale, as a third input.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

__all__ = ["SiamDiff", "export_onnx"]


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class SiamDiff(nn.Module):
    """``forward(x1, x2[, pair]) -> logits`` of change, ``(N, 1, H, W)``; H and W multiples of 8.

    ``pair`` ``(N, pair_channels, H, W)`` is required when ``pair_channels`` > 0 and ignored otherwise.
    """

    def __init__(
        self, in_bands: int = 10, widths: tuple[int, int, int, int] = (16, 32, 64, 64), pair_channels: int = 0
    ) -> None:
        super().__init__()
        w1, w2, w3, w4 = widths
        p = pair_channels
        self.pair_channels = p
        self.enc = nn.ModuleList([_block(in_bands, w1), _block(w1, w2), _block(w2, w3), _block(w3, w4)])
        self.dec3 = _block(w4 + w3 + p, w3)
        self.dec2 = _block(w3 + w2 + p, w2)
        self.dec1 = _block(w2 + w1 + p, w1)
        self.head = nn.Conv2d(w1, 1, 1)

    def _encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for k, block in enumerate(self.enc):
            if k:
                x = F.max_pool2d(x, 2)
            x = block(x)
            feats.append(x)
        return feats

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, pair: torch.Tensor | None = None) -> torch.Tensor:
        d = [torch.abs(a - b) for a, b in zip(self._encode(x1), self._encode(x2), strict=True)]
        x = d[3]
        for scale, skip, block in ((4, d[2], self.dec3), (2, d[1], self.dec2), (1, d[0], self.dec1)):
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            parts = [x, skip]
            if self.pair_channels:
                if pair is None:
                    raise ValueError("this network needs the pair features")
                parts.append(F.avg_pool2d(pair, scale) if scale > 1 else pair)
            x = block(torch.cat(parts, dim=1))
        out: torch.Tensor = self.head(x)
        return out


class _Probability(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, pair: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(self.net(x1, x2, pair))


def export_onnx(net: SiamDiff, path: Path, in_bands: int) -> None:
    """Write ``net`` (in eval mode) as ONNX: inputs ``before``/``after`` ``(N, bands, H, W)`` (and ``pair``
    ``(N, pair_channels, H, W)`` when the network has pair channels), output ``probability``
    ``(N, 1, H, W)``, batch and size dynamic."""
    net.eval()
    dummy = torch.zeros(1, in_bands, 64, 64)
    axes = {0: "n", 2: "h", 3: "w"}
    inputs: tuple[torch.Tensor, ...] = (dummy, dummy)
    names = ["before", "after"]
    if net.pair_channels:
        inputs = (dummy, dummy, torch.zeros(1, net.pair_channels, 64, 64))
        names.append("pair")
    torch.onnx.export(
        _Probability(net),
        inputs,
        str(path),
        input_names=names,
        output_names=["probability"],
        dynamic_axes={**{n: axes for n in names}, "probability": axes},
        opset_version=17,
        dynamo=False,
    )
