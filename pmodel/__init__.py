"""pmodel: fit, sample and score generative models (pure library layer).

This package imports no prefect, mlflow or great_expectations: orchestration
lives in ``flows/``, adapters (validation, tracking) in ``tasks/``.
"""

__version__ = "0.1.0"
