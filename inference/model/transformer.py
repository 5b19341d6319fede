"""LoFTR's linear-attention transformer, written with matmuls only (no einsum) so
that TensorRT's ONNX parser takes every op."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig


def elu_feature_map(x: torch.Tensor) -> torch.Tensor:
    """elu(x) + 1, written as relu(x) + exp(min(x, 0)): the same function and gradient,
    and faster in ONNX Runtime, whose vectorised Relu, Min and Exp beat its Elu kernel."""
    return F.relu(x) + torch.exp(torch.clamp(x, max=0.0))


def linear_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """Kernelised attention with the elu+1 feature map (Katharopoulos et al. 2020).

    query: (B, h, L, d), key / value: (B, h, S, d) -> (B, h, L, d). Cost is linear in
    L and S. Values are divided by S and the result multiplied back, as LoFTR does,
    to keep intermediate sums small in half precision.
    """
    q = elu_feature_map(query)
    k = elu_feature_map(key)
    length = value.shape[2]
    kv = k.transpose(2, 3) @ (value / length)  # (B, h, d, d)
    normaliser = 1.0 / (q @ k.sum(dim=2).unsqueeze(-1) + eps)  # (B, h, L, 1)
    return (q @ kv) * normaliser * length


class EncoderLayer(nn.Module):
    def __init__(self, d_model: int, nhead: int, norm_eps: float) -> None:
        super().__init__()
        self.nhead = nhead
        self.dim = d_model // nhead
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.merge = nn.Linear(d_model, d_model, bias=False)
        self.mlp = nn.Sequential(
            nn.Linear(d_model * 2, d_model * 2, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(d_model * 2, d_model, bias=False),
        )
        self.norm1 = nn.LayerNorm(d_model, eps=norm_eps)
        self.norm2 = nn.LayerNorm(d_model, eps=norm_eps)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.reshape(batch, length, self.nhead, self.dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """x: (B, L, d) attends to source: (B, S, d) -> (B, L, d)."""
        batch, length, d_model = x.shape
        message = linear_attention(
            self._heads(self.q_proj(x)), self._heads(self.k_proj(source)), self._heads(self.v_proj(source))
        )
        message = message.transpose(1, 2).reshape(batch, length, d_model)
        message = self.norm1(self.merge(message))
        message = self.norm2(self.mlp(torch.cat([x, message], dim=2)))
        return x + message


class LocalFeatureTransformer(nn.Module):
    """Alternating self- and cross-attention over the two images' coarse features."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.layer_names = config.layer_names
        self.layers = nn.ModuleList(
            EncoderLayer(config.d_model, config.nhead, config.layer_norm_eps) for _ in config.layer_names
        )

    def forward(self, feat0: torch.Tensor, feat1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feat0: (B, L, d), feat1: (B, S, d); returns both, updated."""
        for layer, name in zip(self.layers, self.layer_names):
            if name not in ("self", "cross"):
                raise ValueError(f"unknown transformer layer type {name!r}")
            if feat0.shape == feat1.shape:
                # One call on both images: bigger matmuls, half the kernel launches. Sliced
                # at a Python int, not chunked, so that the exported graph keeps static shapes.
                batch = feat0.shape[0]
                both = torch.cat([feat0, feat1], dim=0)
                source = both if name == "self" else torch.cat([feat1, feat0], dim=0)
                updated = layer(both, source)
                feat0, feat1 = updated[:batch], updated[batch:]
            elif name == "self":
                feat0, feat1 = layer(feat0, feat0), layer(feat1, feat1)
            else:
                feat0, feat1 = layer(feat0, feat1), layer(feat1, feat0)
        return feat0, feat1
