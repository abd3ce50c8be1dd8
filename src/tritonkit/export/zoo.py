"""Tiny built-in models, usable as MODEL references (``tritonkit.export.zoo:tiny_cnn``).

``tiny_cnn`` exports and verifies in about a second, for tests and smoke runs. ``no_work`` does
next to nothing per request, so serving it measures the transport ceiling (network, serialisation,
queueing) rather than compute; ``echo_head`` does the same with a classifier's output size.
``slow_matmul`` costs a known, adjustable amount of compute per sample, for
tests of what happens while requests are in flight or queued (shutdown, queue limits, timeouts).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "EchoHead",
    "NoWork",
    "NoWorkLike",
    "SlowMatmul",
    "echo_head",
    "no_work",
    "slow_matmul",
    "tiny_bert",
    "tiny_cnn",
]


def tiny_cnn(num_classes: int = 10) -> nn.Module:
    """Two strided convolutions, global pooling and a linear head; any input of 3 x H x W, H, W >= 4."""
    return nn.Sequential(
        nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(inplace=True),
        nn.Conv2d(8, 16, kernel_size=3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(1),
        nn.Linear(16, num_classes),
    )


class NoWork(nn.Module):
    """The mean of each sample, shape ``(N, 1)``: a real output for almost no compute."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).float().mean(dim=1, keepdim=True)


def no_work() -> nn.Module:
    return NoWork()


class EchoHead(nn.Module):
    """The first ``width`` values of each sample as fp32, shape ``(N, width)``: a classifier's output bytes, no compute.

    Served with the same input and output as a real classifier, it measures what the serving path alone carries
    (the transport ceiling) under exactly the load the classifier gets.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, : self.width].float()


def echo_head(width: int = 1000) -> nn.Module:
    """No-work stand-in for an ImageNet classifier: input of at least ``width`` values a sample, output (N, width)."""
    return EchoHead(width)


class SlowMatmul(nn.Module):
    """``depth`` chained ``tanh(x @ W)`` over the last axis, whose length must be ``width``.

    An input of (N, C, H, width) costs about ``2 * depth * C * H * width**2`` FLOP a sample.
    """

    def __init__(self, depth: int, width: int) -> None:
        super().__init__()
        self.depth = depth
        self.weight = nn.Parameter(torch.randn(width, width) / width**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for _ in range(self.depth):
            y = torch.tanh(y @ self.weight)
        return y.mean(dim=(1, 2, 3)).unsqueeze(1)


class NoWorkLike(nn.Module):
    """Outputs of given per-sample shapes and dtypes, each filled from the first value of its sample: no compute.

    The bench serves it with a model's own inputs, outputs and configuration to measure the serving path alone
    under the load the model gets (its no-work ceiling).
    """

    def __init__(self, outputs: list[tuple[tuple[int, ...], torch.dtype]]) -> None:
        super().__init__()
        self.outputs = [(tuple(dims), dtype) for dims, dtype in outputs]

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        first = x.reshape(x.shape[0], -1)[:, :1]
        results = tuple(
            first.to(dtype).expand(-1, max(1, _numel(dims))).reshape((-1, *dims)) for dims, dtype in self.outputs
        )
        return results[0] if len(results) == 1 else results


def _numel(dims: tuple[int, ...]) -> int:
    total = 1
    for dim in dims:
        total *= dim
    return total


def slow_matmul(depth: int = 256, width: int = 512) -> nn.Module:
    """Input (N, C, H, 512), output (N, 1); at 3,512,512 about 200 GFLOP a sample (about a second on two CPU cores)."""
    return SlowMatmul(depth, width)


def tiny_bert(vocab_size: int = 1000, max_length: int = 128) -> nn.Module:
    """A small BERT encoder from Hugging Face ``transformers``, built from a config with random weights.

    It takes ``input_ids``, ``attention_mask`` and ``token_type_ids`` (int64, variable length up to
    ``max_length``) and returns a dict (``last_hidden_state``, ``pooler_output``), as Hugging Face models do.
    Nothing is downloaded.
    """
    try:
        from transformers import BertConfig, BertModel
    except ImportError:
        raise ImportError("tiny_bert needs Hugging Face transformers: pip install transformers") from None
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=max_length,
        type_vocab_size=2,
    )
    model: nn.Module = BertModel(config).eval()
    return model
