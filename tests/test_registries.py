"""Room for the taxonomy: a dataset and families defined only here run through the
real flow with no edit elsewhere; scores declare what they need and say why they
are skipped; the registries stay lazy."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from pmodel.datasets.registry import (DatasetSpec, Loaded, Validation, register_dataset,
                                      unregister_dataset)
from pmodel.datasets.schema import CategoricalSchema
from pmodel.families import CategoricalDomain, register_family, unregister_family
from pmodel.families.base import Family

REPO = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------
# A toy dataset: two coins, the second copies the first 90% of the time
# ---------------------------------------------------------------------------

COINS = CategoricalSchema((("first", ("heads", "tails")), ("second", ("heads", "tails"))))
COINS_TABLE = np.array([0.45, 0.05, 0.05, 0.45])  # P(first, second) in C order


def coins_build(out, *, rng, sizes, progress=True, log=lambda m: None):
    import pandas as pd

    for split, n in sizes.items():
        cells = rng[split].choice(4, size=n, p=COINS_TABLE)
        codes = np.stack(np.unravel_index(cells, (2, 2)), axis=1)
        COINS.from_codes(codes).to_csv(Path(out) / f"coins-{split}.csv", index=False)
        assert isinstance(pd.read_csv(Path(out) / f"coins-{split}.csv"), pd.DataFrame)


def coins_load(files):
    import pandas as pd

    train, heldout = (COINS.to_codes(pd.read_csv(files[s], dtype=str)) for s in ("train", "heldout"))
    return Loaded(CategoricalDomain(COINS.shape), train, heldout, schema=COINS)


def coins_truth():
    from pmodel.truths import TableTruth

    return TableTruth(COINS_TABLE)


COINS_SPEC = DatasetSpec(
    name="coins", kind="categorical", description="two coins, the second copies the first",
    files={"train": "coins-train.csv", "heldout": "coins-heldout.csv"}, streams={"train": 71, "heldout": 72},
    build=coins_build, load=coins_load, truth=coins_truth,
    validation=Validation("categorical-csv", schema=COINS), values_per_example=2)


# ---------------------------------------------------------------------------
# Toy families: independent columns, with an exact likelihood, a bound, or none
# ---------------------------------------------------------------------------

class ToyIndependent(Family):
    """Independent columns, Laplace-smoothed (exact log-likelihood)."""

    name, kinds = "toy_exact", ("categorical",)
    assumes = "independent columns"

    def __init__(self, domain):
        super().__init__(domain)

    def fit(self, X, *, rng=None):
        X = self._check_train(X)
        self.log_theta_ = [np.log((np.bincount(X[:, j], minlength=k) + 1.0) / (len(X) + k))
                           for j, k in enumerate(self.domain.shape)]
        self.n_parameters_ = sum(k - 1 for k in self.domain.shape)
        self.history_ = {"loss": [3.0, 2.0, 1.5]}  # a training curve, logged as step metrics
        return self

    def _exact(self, X):
        X = np.asarray(X)
        return sum(lt[X[:, j]] for j, lt in enumerate(self.log_theta_))

    def log_prob(self, X):
        return self._exact(X)

    def sample(self, n_samples, *, rng):
        return np.stack([rng.choice(len(lt), size=n_samples, p=np.exp(lt)) for lt in self.log_theta_],
                        axis=1).astype(np.int64)


class ToyBound(ToyIndependent):
    """The same model, reporting log p - log 2: a valid lower bound on its log-likelihood."""

    name = "toy_bound"
    log_prob_kind = "lower_bound"

    def log_prob(self, X):
        return self._exact(X) - math.log(2.0)


class ToyImplicit(ToyIndependent):
    """The same sampler with no likelihood at all (as a GAN)."""

    name = "toy_none"
    log_prob_kind = "none"

    def log_prob(self, X):
        raise NotImplementedError("an implicit model has no likelihood")


@pytest.fixture(scope="module")
def toys():
    register_dataset(COINS_SPEC)
    for cls in (ToyIndependent, ToyBound, ToyImplicit):
        register_family(cls.name, cls.kinds, cls)
    yield
    unregister_dataset("coins")
    for cls in (ToyIndependent, ToyBound, ToyImplicit):
        unregister_family(cls.name)


TOY_EXPERIMENT = """
name: toys
seed: 2
n_samples: 300
build: {n_train: 200, n_heldout: 400}
datasets:
  coins: {builtin: coins}
families:
  - family: toy_exact
  - family: toy_bound
  - family: toy_none
"""


@pytest.fixture(scope="module")
def toy_run(toys, prefect_harness, tmp_path_factory):
    from flows.experiment import run_experiment

    folder = tmp_path_factory.mktemp("toys")
    (folder / "toys.yaml").write_text(TOY_EXPERIMENT)
    store = "sqlite:///" + str(folder / "mlflow.db")
    state = run_experiment(str(folder / "toys.yaml"), tracking_uri=store, return_state=True)
    return state, state.result(raise_on_failure=False), store


def _children(store, parent):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store)
    runs = client.search_runs([client.get_run(parent).info.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    return {r.data.tags["family"]: r for r in runs}, client


def test_a_dataset_and_families_defined_in_a_test_file_run_through_the_flow(toy_run):
    state, outcome, store = toy_run
    assert state.is_completed(), state.message
    children, _ = _children(store, outcome.parent_run_id)
    assert set(children) == {"toy_exact", "toy_bound", "toy_none"}
    assert all(c.info.status == "FINISHED" for c in children.values())
    exact = children["toy_exact"].data
    # independent columns fitted to two copying coins: the exact KL is at least the
    # truth's mutual information between the coins (what independence cannot see)
    p = COINS_TABLE.reshape(2, 2)
    mi = float((p * np.log(p / np.outer(p.sum(1), p.sum(0)))).sum())
    assert exact.metrics["kl_to_truth"] >= mi - 1e-12
    assert exact.metrics["entropy_truth"] == pytest.approx(float(-(COINS_TABLE * np.log(COINS_TABLE)).sum()))
    assert exact.tags["log_prob_kind"] == "exact"
    assert "heldout_loglik_bound" not in exact.metrics


def test_a_bound_is_recorded_under_its_own_names_and_sits_below_the_exact_value(toy_run):
    _, outcome, store = toy_run
    children, _ = _children(store, outcome.parent_run_id)
    exact, bound = children["toy_exact"].data, children["toy_bound"].data
    assert bound.tags["log_prob_kind"] == "lower_bound"
    assert "heldout_loglik" not in bound.metrics and "kl_to_truth" not in bound.metrics
    assert bound.metrics["heldout_loglik_bound"] == pytest.approx(exact.metrics["heldout_loglik"] - math.log(2))
    assert bound.metrics["heldout_loglik_bound"] <= exact.metrics["heldout_loglik"]
    # KL computed with a lower bound on log q is an upper bound on the KL
    assert bound.metrics["kl_to_truth_bound"] >= exact.metrics["kl_to_truth"]
    assert "exact log-likelihood" in bound.tags["skipped.heldout_loglik"]


def test_a_family_without_likelihood_gets_sample_scores_and_the_reasons(toy_run):
    _, outcome, store = toy_run
    children, client = _children(store, outcome.parent_run_id)
    none = children["toy_none"]
    assert none.data.tags["log_prob_kind"] == "none"
    for absent in ("heldout_loglik", "heldout_loglik_bound", "kl_to_truth", "kl_to_truth_bound",
                   "out_of_support_rate"):
        assert absent not in none.data.metrics
    assert {"novelty_rate", "unique_rate", "entropy_truth"} <= set(none.data.metrics)
    for skipped in ("heldout_loglik", "heldout_loglik_bound", "kl_to_truth", "kl_to_truth_bound"):
        assert none.data.tags[f"skipped.{skipped}"]
    text = client.download_artifacts(none.info.run_id, "skipped-scores.txt")
    assert "heldout_loglik: skipped" in Path(text).read_text()


def test_training_history_is_logged_as_step_metrics(toy_run):
    _, outcome, store = toy_run
    children, client = _children(store, outcome.parent_run_id)
    history = client.get_metric_history(children["toy_exact"].info.run_id, "loss")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [(0, 3.0), (1, 2.0), (2, 1.5)]


def test_the_flow_and_run_family_give_the_same_numbers(toy_run, toys):
    from pmodel.evaluate import run_family
    from pmodel.problems import load_problem

    _, outcome, store = toy_run
    children, _ = _children(store, outcome.parent_run_id)
    result = next(r for r in outcome.results if r.family == "toy_exact")
    problem = load_problem(result.problem_path)
    direct = run_family("toy_exact", {}, problem, n_samples=300, seed=2).metrics
    for key in ("heldout_loglik", "kl_to_truth", "novelty_rate", "unique_rate"):
        assert direct[key] == result.metrics[key] == children["toy_exact"].data.metrics[key], key


def test_validating_a_toy_dataset_uses_its_registered_rules(toys, tmp_path):
    from tasks.validation import validate

    bad = tmp_path / "coins.csv"
    bad.write_text("first,second\nheads,tails\nheads,edge\n")
    report = validate("coins", bad, report_dir=tmp_path)
    assert not report.success
    assert "edge" in report.summary() and "line 3" in report.summary()


# ---------------------------------------------------------------------------
# Laziness: no family module is imported before a family is used
# ---------------------------------------------------------------------------

FAMILY_MODULES = ("pmodel.families.box", "pmodel.families.multinomial", "pmodel.families.naive_bayes")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code) + "\nimport sys, json\n"
                          "print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True, cwd=REPO)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_help_and_config_loading_import_no_family_they_do_not_use(tmp_path):
    mods = _modules_after("""
        import contextlib, io
        from flows.cli import main
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                main(["--help"])
            except SystemExit:
                pass
    """)
    assert not mods & set(FAMILY_MODULES), mods & set(FAMILY_MODULES)
    assert "torch" not in mods
    exp = tmp_path / "nb.yaml"
    exp.write_text("name: nb\ndatasets: {fashion: {builtin: fashion}}\n"
                   "families: [{family: naive_bayes, params: {alpha: 1.0}}]\n")
    mods = _modules_after(f"""
        from pmodel.config import load_experiment
        load_experiment({str(exp)!r})
    """)
    assert "pmodel.families.naive_bayes" in mods  # its declared hyperparameters were checked
    assert not mods & {"pmodel.families.box", "pmodel.families.multinomial", "torch"}


# ---------------------------------------------------------------------------
# Cache files: many writers of one key, and corrupt entries
# ---------------------------------------------------------------------------

WRITER = """
import sys, numpy as np
from pathlib import Path
from pmodel.families import make_family, CategoricalDomain, load_model
from pmodel.problems import Problem, save_problem, load_problem
X = np.random.default_rng(0).integers(0, 3, size=(50, 4))
model = make_family("naive_bayes", CategoricalDomain((3, 3, 3, 3)), alpha=1.0).fit(X)
problem = Problem("p", CategoricalDomain((3, 3, 3, 3)), X, X)
out = Path(sys.argv[1])
errors = 0
for i in range(150):
    try:
        model.save(out / "model")
        save_problem(problem, out / "problem.npz")
        load_model(out / "model").log_prob(X)
        load_problem(out / "problem.npz")
    except Exception as exc:
        errors += 1
        print(type(exc).__name__, exc, file=sys.stderr)
print(errors)
"""


def test_two_processes_writing_one_cache_key_never_clash(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [o[0].strip() for o in outs] == ["0", "0"], [o[1][-2000:] for o in outs]
    assert not list(tmp_path.rglob("*.partial"))  # no temporary file left behind


def test_a_corrupt_model_is_named_and_must_be_recomputed(tmp_path, monkeypatch):
    from tasks import steps

    monkeypatch.setenv("PMODEL_HOME", str(tmp_path))
    X = np.random.default_rng(0).integers(0, 3, size=(50, 2))
    from pmodel.families import load_model, make_family

    path = steps.output_path("fit", "k1")
    path.mkdir(parents=True)
    (path / "fit.json").write_text('{"fit_seconds": 0.1}')
    make_family("box", CategoricalDomain((3, 3))).fit(X).save(path)
    assert steps.must_recompute("fit", "k1") is False
    data = (path / "arrays.npz").read_bytes()
    (path / "arrays.npz").write_bytes(data[: len(data) // 2])  # truncated, as by a crash
    assert steps.must_recompute("fit", "k1") is True
    with pytest.raises(ValueError, match=str(path / "arrays.npz")):
        load_model(path)
    assert steps.must_recompute("sample", "never-written") is True
