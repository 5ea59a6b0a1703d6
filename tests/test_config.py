"""Experiment files: validated config, errors that name the key, overrides; layering."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pmodel.config import ConfigError, apply_override, find_experiment, load_experiment

REPO = Path(__file__).resolve().parents[1]
CHAPTER1 = REPO / "experiments" / "chapter1.yaml"


def test_chapter1_runs_every_dataset_with_every_family_that_serves_it():
    config = load_experiment(CHAPTER1)
    assert config.build.n_train == 50
    runs = {(d, s.display(config.datasets[d].kind)) for d, s in config.runs()}
    assert len(runs) == 15
    assert ("land", "multinomial alpha=1.0 cell_deg=10.0") in runs
    assert ("fashion", "multinomial alpha=1.0") in runs  # the grid size applies to points only


def _write(tmp_path, text):
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


BASE = """
name: t
datasets:
  fashion: {builtin: fashion}
families:
  - family: naive_bayes
    params: {alpha: 1.0}
"""


@pytest.mark.parametrize("text,fragment", [
    (BASE + "colour: red\n", "colour: unknown key"),
    (BASE.replace("naive_bayes", "naive_bayess"), "unknown family 'naive_bayess'"),
    (BASE.replace("alpha: 1.0", "alpah: 1.0"), "unknown hyperparameter(s) ['alpah']"),
    (BASE.replace("{builtin: fashion}", "{builtin: fashon}"), "unknown built-in dataset 'fashon'"),
    (BASE.replace("{builtin: fashion}", "{kind: image, trian: x}"), "fashion.trian: unknown key"),
    (BASE + "seed: -1\n", "seed: Input should be greater than or equal to 0"),
    (BASE.replace("name: t", "name: 'a b'"), "name: String should match pattern"),
    (BASE + "    points: {cell_deg: 1}\n", "families[0].points (naive_bayes on points data): unknown "
                                          "hyperparameter(s) ['cell_deg']"),
    # hyperparameter values are checked against the family's declared bounds when the file loads
    (BASE.replace("alpha: 1.0", "alpha: -1"), "families[0].params (naive_bayes on categorical data): "
                                             "alpha: must be >= 0.0, got -1.0"),
    (BASE.replace("alpha: 1.0", "alpha: one"), "alpha: expected a number, got 'one'"),
    (BASE.replace("{builtin: fashion}", "{builtin: land}").replace("family: naive_bayes", "family: multinomial")
     + "    points: {cell_deg: 0}\n", "cell_deg: must be > 0.0, got 0.0"),
    (BASE.replace("{builtin: fashion}", "{builtin: land}").replace("family: naive_bayes", "family: multinomial")
     + "    points: {cell_deg: 0.0001}\n", "cell_deg: 0.0001 degrees makes 6.48e+12 cells over the map"),
    # the memory of the samples, and labels MLflow can hold
    (BASE.replace("{builtin: fashion}", "{builtin: pixels}") + "n_samples: 100000000\n",
     "n_samples: 100000000 samples of 'fashion' (1024 values each) would take 762.9 GiB"),
    (BASE + "    label: box (orange)\n", "families.0.label: String should match pattern"),
    (BASE.replace("{builtin: fashion}", "{kind: points, train: p.csv, schema: s.yaml}"),
     "'schema' applies to categorical data only"),
])
def test_errors_name_the_key_and_the_problem(tmp_path, text, fragment):
    with pytest.raises(ConfigError) as exc:
        load_experiment(_write(tmp_path, text))
    assert fragment in str(exc.value), str(exc.value)
    assert str(tmp_path / "exp.yaml") in str(exc.value)


def test_overrides_reach_nested_keys_and_list_items(tmp_path):
    path = _write(tmp_path, BASE)
    config = load_experiment(path, ["seed=7", "build.n_train=99", "families.0.params.alpha=0.5"])
    assert (config.seed, config.build.n_train, config.families[0].params["alpha"]) == (7, 99, 0.5)
    with pytest.raises(ConfigError, match="not an index"):
        load_experiment(path, ["families.3.params.alpha=1"])
    with pytest.raises(ConfigError, match="key=value"):
        apply_override({}, "seed")


def test_user_paths_resolve_next_to_the_experiment_file(tmp_path):
    path = _write(tmp_path, BASE.replace("{builtin: fashion}", "{kind: categorical, train: d/x.csv}"))
    config = load_experiment(path)
    assert config.datasets["fashion"].train == tmp_path / "d" / "x.csv"


def test_find_experiment_by_name_or_path(tmp_path):
    assert find_experiment("chapter1", REPO / "experiments") == REPO / "experiments" / "chapter1.yaml"
    with pytest.raises(ConfigError, match="known: chapter1"):
        find_experiment("chapter2", REPO / "experiments")
    with pytest.raises(ConfigError, match="does not exist"):
        find_experiment(str(tmp_path / "nope.yaml"), REPO / "experiments")


def test_the_pure_layer_imports_no_orchestration_tracking_or_validation():
    code = ("import sys, pmodel.config, pmodel.evaluate, pmodel.plots, pmodel.problems, "
            "pmodel.scores, pmodel.families, pmodel.datasets.build, pmodel.datasets.user, pmodel.sweeps\n"
            "bad = [m for m in ('prefect', 'mlflow', 'great_expectations', 'optuna') if m in sys.modules]\n"
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_running_local_prefect_server_is_reused_and_said_so(monkeypatch):
    import http.server
    import threading

    from flows.runtime import reuse_local_server

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = b"true" if self.path == "/api/health" else b"false"
            self.send_response(200 if self.path == "/api/health" else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api = f"http://127.0.0.1:{server.server_address[1]}/api"
    try:
        monkeypatch.delenv("PREFECT_API_URL", raising=False)
        monkeypatch.delenv("PMODEL_TEMPORARY_PREFECT", raising=False)
        monkeypatch.setenv("PMODEL_TEMPORARY_PREFECT", "1")
        assert reuse_local_server(api) is None  # asked for the temporary server
        monkeypatch.delenv("PMODEL_TEMPORARY_PREFECT")
        assert reuse_local_server(api) == api
        import os

        assert os.environ["PREFECT_API_URL"] == api
        monkeypatch.delenv("PREFECT_API_URL")
    finally:
        server.shutdown()
    assert reuse_local_server(api, timeout_s=0.2) is None  # nobody answers: the temporary server


def test_a_dataset_may_draw_its_own_number_of_samples_and_the_memory_limit_reads_it(tmp_path):
    import yaml

    from pmodel.config import ConfigError, load_experiment

    data = {"name": "n", "n_samples": 200,
            "datasets": {"pixels": {"builtin": "pixels"}, "land": {"builtin": "land", "n_samples": 5000}},
            "families": [{"family": "naive_bayes"}]}
    path = tmp_path / "n.yaml"
    path.write_text(yaml.safe_dump(data))
    config = load_experiment(path)
    assert (config.n_samples_for("pixels"), config.n_samples_for("land")) == (200, 5000)
    # 300,000 avatars of 1024 float64 values are over the 2 GiB limit; as many points are not
    data["datasets"]["pixels"]["n_samples"] = 300_000
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="300000 samples of 'pixels'"):
        load_experiment(path)
