"""``tritonkit plan``: from one server's measured bench to the pods, GPUs and autoscaling target a load needs.

:mod:`tritonkit.plan.results` reads a bench's results.json, :mod:`tritonkit.plan.capacity` holds the model and
:mod:`tritonkit.plan.text` states the answer, and the model, in sentences.
"""

from tritonkit.plan.capacity import Plan, PodOption, knee, operating_point, plan_capacity
from tritonkit.plan.results import BenchResults, MeasuredCell, PlanError, load_results
from tritonkit.plan.text import plan_text

__all__ = [
    "BenchResults",
    "MeasuredCell",
    "Plan",
    "PlanError",
    "PodOption",
    "knee",
    "load_results",
    "operating_point",
    "plan_capacity",
    "plan_text",
]
