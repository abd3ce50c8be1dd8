"""The embedded Triton server (the real tritonserver 2.51 from the nvidia-pytriton wheel) and its backends."""

from tritonkit.server.backend_dir import PYTHON_BASED_BACKENDS, lay_out_backend_dir
from tritonkit.server.distribution import TritonDistribution, find_distribution
from tritonkit.server.embedded import EmbeddedServer, free_port

__all__ = [
    "PYTHON_BASED_BACKENDS",
    "EmbeddedServer",
    "TritonDistribution",
    "find_distribution",
    "free_port",
    "lay_out_backend_dir",
]
