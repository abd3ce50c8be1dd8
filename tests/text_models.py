"""Small text models for the tests: two int64 inputs of variable length, outputs as a dict."""

from __future__ import annotations

import torch
from torch import nn

VOCABULARY = 1000


class TinyText(nn.Module):
    """Token ids and a 0/1 mask in; ``logits`` (N, 3) and ``hidden`` (N, length, 8) out."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCABULARY, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = self.embedding(input_ids)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return {"logits": self.head(pooled), "hidden": hidden}


def tiny_text() -> nn.Module:
    torch.manual_seed(0)
    return TinyText()
