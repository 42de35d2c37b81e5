"""The Siamese U-Net of the learned detector (FC-Siam-diff, Daudt, Le Saux & Boulch, ICIP 2018), small.

Both dates go through one encoder (shared weights); at every scale the decoder receives the absolute
difference of the two dates' features, so the network is symmetric in the order of the dates (OSCD labels
are undirected).  Widths (16, 32, 64, 64) give about 0.2 M parameters.
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
    """``forward(x1, x2) -> logits`` of change, ``(N, 1, H, W)``; H and W multiples of 8."""

    def __init__(self, in_bands: int = 10, widths: tuple[int, int, int, int] = (16, 32, 64, 64)) -> None:
        super().__init__()
        w1, w2, w3, w4 = widths
        self.enc = nn.ModuleList([_block(in_bands, w1), _block(w1, w2), _block(w2, w3), _block(w3, w4)])
        self.dec3 = _block(w4 + w3, w3)
        self.dec2 = _block(w3 + w2, w2)
        self.dec1 = _block(w2 + w1, w1)
        self.head = nn.Conv2d(w1, 1, 1)

    def _encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for k, block in enumerate(self.enc):
            if k:
                x = F.max_pool2d(x, 2)
            x = block(x)
            feats.append(x)
        return feats

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        d = [torch.abs(a - b) for a, b in zip(self._encode(x1), self._encode(x2), strict=True)]
        x = d[3]
        for skip, block in ((d[2], self.dec3), (d[1], self.dec2), (d[0], self.dec1)):
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        out: torch.Tensor = self.head(x)
        return out


class _Probability(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x1, x2))


def export_onnx(net: SiamDiff, path: Path, in_bands: int) -> None:
    """Write ``net`` (in eval mode) as ONNX: inputs ``before``/``after`` ``(N, bands, H, W)``, output
    ``probability`` ``(N, 1, H, W)``, batch and size dynamic."""
    net.eval()
    dummy = torch.zeros(1, in_bands, 64, 64)
    axes = {0: "n", 2: "h", 3: "w"}
    torch.onnx.export(
        _Probability(net),
        (dummy, dummy),
        str(path),
        input_names=["before", "after"],
        output_names=["probability"],
        dynamic_axes={"before": axes, "after": axes, "probability": axes},
        opset_version=17,
        dynamo=False,
    )
