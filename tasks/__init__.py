"""Adapters between pmodel and the outside: validation (Great Expectations),
tracking (MLflow), Prefect tasks."""
