"""The embedded Triton server (the real tritonserver 2.51 from the nvidia-pytriton wheel) and its backends."""

from tritonkit.server.backend_dir import PYTHON_BASED_BACKENDS, lay_out_backend_dir
from tritonkit.server.distribution import TritonDistribution, find_distribution
from tritonkit.server.embedded import API_KEY_HEADER, RESTRICTED_APIS, EmbeddedServer, api_key_headers, free_port
from tritonkit.server.processes import process_group_members

__all__ = [
    "API_KEY_HEADER",
    "PYTHON_BASED_BACKENDS",
    "RESTRICTED_APIS",
    "EmbeddedServer",
    "TritonDistribution",
    "api_key_headers",
    "find_distribution",
    "free_port",
    "lay_out_backend_dir",
    "process_group_members",
]
