"""The latent experiment's pieces through the real flow (Prefect harness, MLflow SQLite store):
jars at their own size, an encoder's latent scores and pictures, a family without one skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "experiments" / "latent-tiny.yaml"


def test_a_builtin_dataset_may_set_its_own_sizes(tmp_path):
    from pmodel.config import ConfigError, load_experiment

    exp = tmp_path / "two.yaml"
    exp.write_text("name: two\nbuild: {n_train: 50, n_heldout: 300}\n"
                   "datasets:\n  small: {builtin: fashion}\n  large: {builtin: fashion, n_train: 5000}\n"
                   "  jars: {builtin: jars, n_train: 5000, n_heldout: 100}\n"
                   "families: [{family: chow_liu}]\n")
    config = load_experiment(exp)
    assert config.build_config("small").n_train == 50 and config.build_config("large").n_train == 5000
    assert config.build_config("jars").n_heldout == 100
    groups = {(bc.n_train, bc.n_heldout): (b, n) for bc, b, n in config.builtin_builds()}
    assert groups == {(50, 300): (["fashion"], ["small"]), (5000, 300): (["fashion"], ["large"]),
                      (5000, 100): (["jars"], ["jars"])}
    exp.write_text("name: bad\ndatasets: {f: {builtin: fashion, n_train: 0}}\nfamilies: [{family: box}]\n")
    with pytest.raises(ConfigError, match="f.n_train"):
        load_experiment(exp)


@pytest.fixture(scope="module")
def latent_run(prefect_harness, tmp_path_factory):
    from flows.experiment import run_experiment

    store = "sqlite:///" + str(tmp_path_factory.mktemp("latent-mlflow") / "mlflow.db")
    state = run_experiment(str(TINY), tracking_uri=store, return_state=True)
    return state, state.result(raise_on_failure=False), store


def _children(store, parent):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store)
    runs = client.search_runs([client.get_run(parent).info.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    return {r.data.tags["family"]: r for r in runs}, client


def _artifacts(client, run_id, path=None):
    out = []
    for f in client.list_artifacts(run_id, path):
        out.extend(_artifacts(client, run_id, f.path) if f.is_dir else [f.path])
    return out


def test_latent_scores_and_pictures_are_recorded_for_encoders(latent_run):
    state, outcome, store = latent_run
    assert state.is_completed(), state.message
    children, client = _children(store, outcome.parent_run_id)
    assert set(children) == {"pca", "latent_class", "naive_bayes"}
    for family in ("pca", "latent_class"):
        run = children[family]
        m = run.data.metrics
        assert {"latent_r2", "latent_r2_height", "latent_r2_width", "latent_mig",
                "latent_mig_height", "latent_mig_width"} <= set(m), family
        assert -1.0 < m["latent_r2"] <= 1.0 and 0.0 <= m["latent_mig"] <= 1.0
        assert run.data.params["n_train"] == "120"  # the dataset's own size, not build.n_train
        assert "pictures/latent-space.png" in _artifacts(client, run.info.run_id)
    # 120 jars, 3 principal components: height and width are already well read out
    assert children["pca"].data.metrics["latent_r2"] > 0.8
    assert "pictures/latent-traversal.png" in _artifacts(client, children["pca"].info.run_id)
    # pca's likelihood is a dequantised bound; latent_class's is exact, with an EM curve
    assert "heldout_loglik_bound" in children["pca"].data.metrics
    assert "heldout_loglik" not in children["pca"].data.metrics
    assert "kl_to_truth_bound" in children["pca"].data.metrics
    assert "heldout_loglik" in children["latent_class"].data.metrics
    curve = client.get_metric_history(children["latent_class"].info.run_id, "objective")
    values = [h.value for h in sorted(curve, key=lambda h: h.step)]
    assert len(values) >= 2 and all(b >= a - 1e-9 for a, b in zip(values, values[1:]))


def test_a_family_without_a_latent_space_is_skipped_with_the_reason(latent_run):
    _, outcome, store = latent_run
    children, client = _children(store, outcome.parent_run_id)
    nb = children["naive_bayes"]
    assert not any(k.startswith("latent_") for k in nb.data.metrics)
    for score in ("latent_r2", "latent_mig"):
        assert "no latent space" in nb.data.tags[f"skipped.{score}"]
    assert "latent-space.png" not in " ".join(_artifacts(client, nb.info.run_id))
