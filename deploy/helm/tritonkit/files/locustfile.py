"""Locust's conventional path for tritonkit's locustfile, which ships in the package so that every install has it.

``locust -f loadtest/locustfile.py --host 127.0.0.1:8001 --model NAME ...``: tritonkit.loadtest.locustfile documents
the options. Importing it brings its options, gevent setup and listeners; only the names below become user classes.
"""

from tritonkit.loadtest.locustfile import InferUser, StepLoadShape, TritonUser

__all__ = ["InferUser", "StepLoadShape", "TritonUser"]
