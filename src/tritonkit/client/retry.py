"""Retries with exponential backoff, for the only failures where sending again cannot run a request twice.

Off by default. When on, two cases are retried: the connection was refused before anything was sent, and
``Rejected`` (the server turned the request away from its queue, so the model never ran it). A timeout, a
connection that broke mid-request, or any answer about the request itself is raised at once: the server may
have run the request, or would refuse it again.
"""

from __future__ import annotations

from dataclasses import dataclass

from tritonkit.client.errors import refused_before_sending
from tritonkit.errors import Rejected, TritonkitError

__all__ = ["RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    """``retries`` further attempts after the first; waits ``backoff_s``, doubling up to ``max_backoff_s``."""

    retries: int = 0
    backoff_s: float = 0.05
    max_backoff_s: float = 2.0

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if self.backoff_s < 0 or self.max_backoff_s < 0:
            raise ValueError("backoff_s and max_backoff_s must be >= 0")

    def delay_s(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s))

    @staticmethod
    def safe_to_retry(original: BaseException, classified: TritonkitError) -> bool:
        return isinstance(classified, Rejected) or refused_before_sending(original)

    @staticmethod
    def gave_up(classified: TritonkitError, attempts: int) -> TritonkitError:
        """The error to raise after the last attempt: the same class and message, saying how often it was tried."""
        if attempts <= 1:
            return classified
        return type(classified)(f"{classified} (gave up after {attempts} attempts)")
