"""The thin Python client applications call (tritonclient underneath)."""

from tritonkit.client.client import Client, InputSpec
from tritonkit.client.stats import ModelStats

__all__ = ["Client", "InputSpec", "ModelStats"]
