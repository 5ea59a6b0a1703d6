"""A fitted pmodel model as an MLflow pyfunc ("models from code": this file is the model's code).

MLflow copies this file into every logged model and runs it when the model is loaded
(``mlflow.pyfunc.load_model``), so it imports only ``mlflow``, ``numpy``, ``pandas`` and the
pure ``pmodel`` library: never the flows, Prefect or the ``tasks`` package. The model's content
stays pmodel's own pickle-free folder (``model.json`` + ``arrays.npz``, and ``schema.json`` for
named categorical columns), logged as the pyfunc's artifact :data:`ARTIFACT_KEY`; nothing is
pickled.

``predict(None, params={"n": 16, "seed": 0})``
    ``n`` samples drawn with ``numpy.random.default_rng(seed)``: the draws ``pmodel sample -n N
    --seed SEED`` writes. Categorical rows come back as a DataFrame of category names when the
    model has a schema (the columns of ``samples.csv``), else as integer codes; images as
    ``(n, height, width)``; points as ``(n, 2)`` lon/lat.
``predict(rows, params={"score": "log_prob"})``
    ``(n,)`` float64, each row's log-probability in nats (-inf outside the support), where the
    family's likelihood is exact; ``"log_prob_lower_bound"`` where it is a lower bound (an ELBO,
    the diffusion bound). A family without a likelihood (a GAN) refuses both, and a name that
    does not say what the model has is refused, so a bound is never read as an exact value.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

#: The pyfunc artifact holding pmodel's saved folder (also its folder name under ``artifacts/``).
ARTIFACT_KEY = "pmodel-model"

#: ``params["score"]`` -> the ``log_prob_kind`` it asks for.
SCORES = {"log_prob": "exact", "log_prob_lower_bound": "lower_bound"}


class PModelPyfunc(mlflow.pyfunc.PythonModel):
    """Samples from, or scores rows under, one fitted pmodel model."""

    def load_context(self, context) -> None:
        from pmodel import load_model

        folder = Path(context.artifacts[ARTIFACT_KEY])
        self.model = load_model(folder)  # warns when another pmodel version saved it
        self.schema = None
        if (folder / "schema.json").exists():
            import json

            from pmodel.datasets.schema import CategoricalSchema

            self.schema = CategoricalSchema.from_dict(json.loads((folder / "schema.json").read_text()))

    def predict(self, context, model_input, params=None):
        params = params or {}
        score = params.get("score") or ""
        if score:
            return self._score(model_input, score)
        n, seed = int(params.get("n", 16)), int(params.get("seed", 0))
        samples = self.model.sample(n, rng=np.random.default_rng(seed))
        if self.schema is not None:
            return self.schema.from_codes(samples)
        return samples

    def _score(self, rows, score: str) -> np.ndarray:
        kind = self.model.log_prob_kind
        name = type(self.model).__name__
        if score not in SCORES:
            raise ValueError(f"params['score'] = {score!r}: expected one of {', '.join(SCORES)}, "
                             "or no score to sample")
        if kind == "none":
            raise ValueError(f"{name} ({self.model.name}) has no likelihood (log_prob_kind 'none'): "
                             "it can sample (predict without a score) but not score rows")
        if SCORES[score] != kind:
            right = next(k for k, v in SCORES.items() if v == kind)
            raise ValueError(f"{name} ({self.model.name}) has log_prob_kind {kind!r}, so "
                             f"score={score!r} is refused: ask for score={right!r}")
        if rows is None:
            raise ValueError("score: no rows given (pass the examples to score as model_input)")
        if self.schema is not None and isinstance(rows, pd.DataFrame) and rows.dtypes.map(
                lambda d: not pd.api.types.is_numeric_dtype(d)).any():
            rows = self.schema.to_codes(rows)  # category names -> codes, naming a bad value
        X = rows.to_numpy() if isinstance(rows, pd.DataFrame) else np.asarray(rows)
        return np.asarray(self.model.log_prob(X), dtype=np.float64)


mlflow.models.set_model(PModelPyfunc())
