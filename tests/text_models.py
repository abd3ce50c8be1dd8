"""Small models for the tests: two int64 inputs of variable length with dict outputs, and signatures that say
something about their inputs (optional ones, a number, a tabular MLP)."""

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


class OptionalInputs(nn.Module):
    """Every input optional, as in Hugging Face models: nothing says which to feed."""

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None) -> object:
        assert input_ids is not None
        return input_ids.float()


def optional_inputs() -> nn.Module:
    return OptionalInputs()


class Scaled(nn.Module):
    """A required parameter that is a number, not a tensor."""

    def forward(self, x: torch.Tensor, factor: int) -> torch.Tensor:
        return x * factor


def scaled() -> nn.Module:
    return Scaled()


def tabular() -> nn.Module:
    """A tabular MLP over 20 features: the image default does not fit it."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 3))
