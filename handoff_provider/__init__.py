"""handoff-provider: run handoff projects from Apache Airflow, on the worker or on ECS Fargate.

The ``core`` subpackage (project model, runner, AWS stores, ``handoff`` CLI) never imports
Airflow; everything else is a thin Airflow layer over it.
"""

__version__ = "0.1.0"
