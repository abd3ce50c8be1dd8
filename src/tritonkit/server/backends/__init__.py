"""tritonkit's Python-based Triton backends, named after Triton's native ``onnxruntime`` and ``pytorch`` backends.

Each ``<name>/model.py`` is copied into the embedded server's backend directory, where Triton loads it as the
backend of every model whose config says ``backend: "<name>"``. They run inside the python-backend stub process,
which imports this package from the same environment as the launcher.
"""
