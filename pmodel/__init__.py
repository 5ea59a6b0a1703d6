"""pmodel: fit, sample and score generative models (pure library layer).

This package imports no prefect, mlflow or great_expectations: orchestration
lives in ``flows/``, adapters (validation, tracking) in ``tasks/``.
"""

__version__ = "0.1.0"


def load_model(path):
    """A fitted model back from the folder its ``save`` wrote (see ``pmodel.families.base``).

    For a model recorded in MLflow, ``tasks.tracking.load_model_from_run`` fetches
    the folder first (this package never imports MLflow).
    """
    from pmodel.families.base import load_model as _load

    return _load(path)
