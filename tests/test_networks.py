"""Published Bayesian networks as built-in datasets: reading, forward sampling and exact
probabilities against pgmpy, exact vs Monte-Carlo truths, skeleton scores, declaring them in
an experiment, and the bayes_net family that learns a network by hill climbing."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from pmodel.datasets import bn
from pmodel.families import CategoricalDomain, make_family

REPO = Path(__file__).resolve().parents[1]


def _pgmpy_model(name: str):
    """pgmpy's own reading of a shipped network: the oracle."""
    import gzip

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgmpy.readwrite import BIFReader

        text = gzip.decompress((bn.NETWORKS_DIR / f"{name}.bif.gz").read_bytes()).decode()
        return BIFReader(string=text).get_model()


@pytest.fixture(scope="module")
def asia():
    return bn.network_of("bn-asia")


@pytest.fixture(scope="module")
def alarm():
    return bn.network_of("bn-alarm")


# ---------------------------------------------------------------------------
# Reading the shipped networks
# ---------------------------------------------------------------------------

def test_every_shipped_network_reads_with_the_size_its_description_gives():
    for name, what in bn.SHIPPED.items():
        net = bn.network_of(f"bn-{name}")
        n_vars, n_arcs = (int(w.split()[0]) for w in what.split(", ")[:2])
        assert (len(net.shape), len(net.arcs)) == (n_vars, n_arcs), name
        assert net.enumerable == (net.n_states <= 10**7)
        for table in net.log_cpts:  # every row a distribution
            np.testing.assert_allclose(np.exp(table).sum(axis=1), 1.0, atol=1e-12)
        parent_pos = {j: i for i, j in enumerate(net.order)}
        assert all(parent_pos[p] < parent_pos[j] for j, ps in enumerate(net.parents) for p in ps)
    assert bn.network_of("bn-asia") is bn.network_of("bn-asia")  # read once per process


def test_log_prob_of_every_asia_state_is_pgmpys_probability(asia):
    model = _pgmpy_model("asia")
    states = list(itertools.product(*(range(k) for k in asia.shape)))
    X = np.array(states)
    names = asia.schema.names
    expected = [model.get_state_probability({names[j]: asia.schema.categories[j][c] for j, c in enumerate(row)})
                for row in states]
    np.testing.assert_allclose(np.exp(asia.log_prob(X)), expected, rtol=1e-12, atol=1e-15)
    assert np.exp(asia.log_prob(X)).sum() == pytest.approx(1.0, abs=1e-12)
    assert (asia.log_prob(X) == -np.inf).any()  # "either" is a deterministic OR: p = 0 cells


def test_log_prob_of_alarm_rows_is_pgmpys_probability(alarm):
    model = _pgmpy_model("alarm")
    X = alarm.sample_codes(12, rng=np.random.default_rng(4))
    names, cats = alarm.schema.names, alarm.schema.categories
    for row, lp in zip(X, alarm.log_prob(X)):
        p = model.get_state_probability({names[j]: cats[j][c] for j, c in enumerate(row)})
        assert math.exp(lp) == pytest.approx(p, rel=1e-6)  # the file's tables renormalised (1e-7)
    bad = X[:2].copy()
    bad[0, 3] = alarm.shape[3]  # a code past the last state
    assert alarm.log_prob(bad)[0] == -np.inf and np.isfinite(alarm.log_prob(bad)[1])


def test_forward_sampler_frequencies_match_exact_marginals(asia):
    """200,000 draws: each variable's and a pair's frequencies within 5 standard errors of the
    marginals pgmpy's variable elimination computes."""
    from pgmpy.inference import VariableElimination

    n = 200_000
    X = asia.sample_codes(n, rng=np.random.default_rng(0))
    infer = VariableElimination(_pgmpy_model("asia"))
    names, cats = asia.schema.names, asia.schema.categories
    for j, name in enumerate(names):
        factor = infer.query([name], show_progress=False)
        p = np.array([factor.get_value(**{name: s}) for s in cats[j]])
        freq = np.bincount(X[:, j], minlength=len(p)) / n
        assert np.all(np.abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / n) + 1e-12), name
    a, b = names.index("either"), names.index("xray")
    joint = infer.query(["either", "xray"], joint=True, show_progress=False)
    for i, j in itertools.product(range(2), range(2)):
        p = joint.get_value(either=cats[a][i], xray=cats[b][j])
        freq = np.mean((X[:, a] == i) & (X[:, b] == j))
        assert abs(freq - p) <= 5 * math.sqrt(p * (1 - p) / n)
    assert (asia.log_prob(X) > -np.inf).all()  # never a state the network calls impossible


def test_same_seed_same_rows_other_seed_other_rows(asia, tmp_path):
    from pmodel.datasets.build import BuildConfig, build_all

    for folder, seed in (("a", 3), ("b", 3), ("c", 4)):
        build_all(BuildConfig(seed=seed, n_train=200, n_heldout=100), out_dir=tmp_path / folder,
                  names=["bn-asia"], progress=False)
    read = {f: (tmp_path / f / "bn-asia-train.csv").read_bytes() for f in "abc"}
    assert read["a"] == read["b"] != read["c"]
    assert read["a"].splitlines()[0].decode() == ",".join(asia.schema.names)
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())["datasets"]["bn-asia"]
    assert manifest["build"]["sha256"] == asia.sha256
    np.testing.assert_array_equal(  # the same draws as the network's own sampler, from the stream
        asia.sample_codes(200, rng=np.random.default_rng([3, bn.STREAMS["train"]])),
        asia.schema.to_codes(__import__("pandas").read_csv(tmp_path / "a" / "bn-asia-train.csv", dtype=str)))


# ---------------------------------------------------------------------------
# Entropy and KL: exact where the states can be summed, Monte Carlo otherwise
# ---------------------------------------------------------------------------

def test_exact_entropy_is_the_brute_force_sum(asia):
    model = _pgmpy_model("asia")
    names, cats = asia.schema.names, asia.schema.categories
    p = np.array([model.get_state_probability(dict(zip(names, states)))
                  for states in itertools.product(*cats)])
    brute = -sum(x * math.log(x) for x in p if x > 0)
    assert asia.entropy() == pytest.approx(brute, rel=1e-12)


def test_monte_carlo_estimates_sit_within_a_few_standard_errors_of_the_exact_values(asia):
    from pmodel.truths import NetworkTruth

    truth = NetworkTruth(asia, n_draws=20_000)
    assert truth.enumerable
    est = truth.entropy_estimate()
    assert est.n == 20_000 and 0 < est.se < 0.05
    assert abs(est.value - truth.entropy()) < 4 * est.se
    X = asia.sample_codes(500, rng=np.random.default_rng(1))
    for family in ("naive_bayes", "chow_liu"):
        model = make_family(family, CategoricalDomain(asia.shape), alpha=1.0).fit(X)
        exact, mc = truth.kl(model), truth.kl_estimate(model)
        assert abs(mc.value - exact) < 4 * mc.se, (family, exact, mc)
    # the draws are fixed: the same estimate every time, for every model
    assert truth.entropy_estimate() == est


def test_a_model_that_misses_a_state_has_an_infinite_kl_both_ways(asia):
    from pmodel.truths import NetworkTruth

    X = asia.sample_codes(300, rng=np.random.default_rng(2))
    model = make_family("multinomial", CategoricalDomain(asia.shape), alpha=0.0).fit(X)
    truth = NetworkTruth(asia, n_draws=5_000)
    assert truth.kl(model) == math.inf
    mc = truth.kl_estimate(model)
    assert (mc.value, mc.se) == (math.inf, 0.0)  # a draw with q = 0 proves the KL infinite


def test_scores_are_exact_on_a_small_network_and_estimated_on_a_large_one(asia, alarm):
    from pmodel.problems import Problem
    from pmodel.scores import run_scores
    from pmodel.truths import NetworkTruth

    for net, exact in ((asia, True), (alarm, False)):
        X = net.sample_codes(400, rng=np.random.default_rng(0))
        problem = Problem(net.name, CategoricalDomain(net.shape), X[:300], X[300:],
                          NetworkTruth(net, n_draws=2_000), schema=net.schema)
        model = make_family("chow_liu", problem.domain).fit(problem.train)
        metrics, skipped = run_scores(model, problem, model.sample(50, rng=np.random.default_rng(0)))
        if exact:
            assert {"entropy_truth", "kl_to_truth"} <= set(metrics)
            assert not any(k.endswith("_estimate") for k in metrics)
            assert "exact value is recorded" in skipped["kl_to_truth_estimate"]
        else:
            assert {"entropy_truth_estimate", "entropy_truth_estimate_se", "kl_to_truth_estimate",
                    "kl_to_truth_estimate_se"} <= set(metrics)
            assert "kl_to_truth" not in metrics and "entropy_truth" not in metrics
            assert "10^16.2 joint states" in skipped["kl_to_truth"]
            assert metrics["kl_to_truth_estimate_se"] > 0
        assert 0 <= metrics["skeleton_recall"] <= 1 and 0 <= metrics["skeleton_precision"] <= 1
        nb = make_family("naive_bayes", problem.domain, alpha=1.0).fit(problem.train)
        _, skipped = run_scores(nb, problem, nb.sample(10, rng=np.random.default_rng(0)))
        assert "learns no graph" in skipped["skeleton"]


def test_a_vaes_kl_bound_on_a_small_network_is_the_iwae_sum_over_every_state_with_its_se(asia, alarm):
    """On asia the KL sum runs over its 256 states, drawn twice for a standard error, with the
    VAE's importance-weighted bound (a single-draw ELBO per state made the sum negative)."""
    from pmodel.problems import Problem
    from pmodel.scores import run_scores
    from pmodel.scores.run import AGAIN_SEED
    from pmodel.scores.truth import kl_categorical, kl_monte_carlo_se
    from pmodel.truths import NetworkTruth

    truth = NetworkTruth(asia, n_draws=2_000)
    p, X = truth.kl_terms(None)
    assert len(X) == asia.n_states == 256 and len({tuple(r) for r in X}) == 256
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    train = asia.sample_codes(600, rng=np.random.default_rng(0))
    exact = make_family("chow_liu", CategoricalDomain(asia.shape)).fit(train)
    assert kl_categorical(p, exact.log_prob(X)) == pytest.approx(truth.kl(exact), rel=1e-10)
    assert NetworkTruth(alarm).kl_terms(None) is None  # 10^16.2 states: no such sum

    problem = Problem("asia", CategoricalDomain(asia.shape), train[:400], train[400:], truth, schema=asia.schema)
    vae = make_family("vae", problem.domain, epochs=3, patience=0, iwae_samples=16).fit(
        problem.train, rng=np.random.default_rng(1))
    m, _ = run_scores(vae, problem, vae.sample(50, rng=np.random.default_rng(2)))
    assert m["kl_to_truth_bound"] == kl_categorical(p, vae.log_prob_iwae(X))
    assert m["kl_to_truth_bound_se"] == pytest.approx(
        kl_monte_carlo_se(p, vae.log_prob_iwae(X), vae.log_prob_iwae(X, seed=AGAIN_SEED)), rel=1e-12)
    assert m["kl_to_truth_bound"] > -3 * m["kl_to_truth_bound_se"]  # an upper bound on a KL >= 0


# ---------------------------------------------------------------------------
# Skeleton scores
# ---------------------------------------------------------------------------

def test_skeleton_scores_on_a_known_case():
    from pmodel.scores.structure import skeleton_scores

    true = [(0, 1), (1, 2), (2, 3)]
    assert skeleton_scores(true, [(1, 0), (2, 1), (2, 3)]) == {"skeleton_recall": 1.0,
                                                               "skeleton_precision": 1.0}
    assert skeleton_scores(true, [(0, 1), (0, 3)]) == {"skeleton_recall": 1 / 3,
                                                      "skeleton_precision": 0.5}
    empty = skeleton_scores(true, np.zeros((0, 2), dtype=np.int64))
    assert empty["skeleton_recall"] == 0.0 and math.isnan(empty["skeleton_precision"])
    with pytest.raises(ValueError, match="itself"):
        skeleton_scores(true, [(2, 2)])


def test_chow_liu_on_asia_finds_part_of_the_skeleton(asia):
    from pmodel.scores.structure import skeleton_scores

    X = asia.sample_codes(20_000, rng=np.random.default_rng(0))
    tree = make_family("chow_liu", CategoricalDomain(asia.shape)).fit(X)
    s = skeleton_scores(asia.skeleton, tree.edges_)
    # 7 edges for 8 true ones: asia has a loop (smoke-lung-either-bronc-dysp), a tree cannot
    assert len(tree.edges_) == 7 and s["skeleton_recall"] <= 7 / 8
    assert s["skeleton_precision"] * 7 == pytest.approx(s["skeleton_recall"] * 8)


# ---------------------------------------------------------------------------
# The bayes_net family
# ---------------------------------------------------------------------------

def test_bayes_net_recovers_asias_skeleton_from_enough_rows(asia):
    from pmodel.scores.structure import skeleton_scores
    from pmodel.truths import NetworkTruth

    X = asia.sample_codes(20_000, rng=np.random.default_rng(1))
    model = make_family("bayes_net", CategoricalDomain(asia.shape)).fit(X)
    s = skeleton_scores(asia.skeleton, model.edges_)
    # every true edge; the extra ones link the parents of "either", a deterministic OR
    assert s["skeleton_recall"] == 1.0 and s["skeleton_precision"] >= 0.75
    kl = NetworkTruth(asia).kl(model)
    tree = make_family("chow_liu", CategoricalDomain(asia.shape)).fit(X)
    assert kl < 0.002 < NetworkTruth(asia).kl(tree)


def test_bayes_net_tables_are_the_smoothed_counts_and_sum_to_one():
    cancer = bn.network_of("bn-cancer")
    d = CategoricalDomain(cancer.shape)
    X = cancer.sample_codes(500, rng=np.random.default_rng(3))
    model = make_family("bayes_net", d, alpha=0.5).fit(X)
    assert np.exp(model.log_prob(d.all_cells())).sum() == pytest.approx(1.0, abs=1e-12)
    child = next(j for j, ps in enumerate(model.parents_) if len(ps) == 1)
    parent = int(model.parents_[child][0])
    K = d.shape[child]
    for a in range(d.shape[parent]):
        rows = X[X[:, parent] == a, child]
        expected = (np.bincount(rows, minlength=K) + 0.5) / (len(rows) + 0.5 * K)
        np.testing.assert_allclose(np.exp(model.log_cpt_[child][a]), expected)
    assert model.n_parameters_ == sum(
        int(np.prod([d.shape[p] for p in ps])) * (d.shape[j] - 1) for j, ps in enumerate(model.parents_))


def test_bayes_net_fits_the_same_graph_in_another_process():
    """The search visits candidates in the same order whatever Python's string-hash salt."""
    import os

    code = ("import numpy as np; from pmodel.datasets import bn; from pmodel.families import make_family,"
            " CategoricalDomain; n = bn.network_of('bn-survey'); X = n.sample_codes(3000, "
            "rng=np.random.default_rng(0)); m = make_family('bayes_net', CategoricalDomain(n.shape)).fit(X);"
            " print(m.edges_.tolist())")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO,
                              env={**os.environ, "PYTHONHASHSEED": str(seed)}) for seed in (1, 2)]
    outs = {p.communicate()[0].strip().splitlines()[-1] for p in procs}
    assert all(p.returncode == 0 for p in procs) and len(outs) == 1


# ---------------------------------------------------------------------------
# Declaring networks in an experiment; files of one's own
# ---------------------------------------------------------------------------

def test_a_network_is_declared_by_name_or_by_file(tmp_path):
    from pmodel.config import ConfigError, load_experiment

    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "mine.bif.gz").write_bytes((bn.NETWORKS_DIR / "cancer.bif.gz").read_bytes())
    exp = tmp_path / "exp.yaml"
    exp.write_text("name: nets\ndatasets:\n  alarm: {builtin: bn, network: alarm, n_train: 100}\n"
                   "  mine: {builtin: bn, bif: nets/mine.bif.gz}\n"
                   "families: [{family: chow_liu}]\n")
    config = load_experiment(exp)
    assert config.datasets["alarm"].builtin == "bn-alarm" and config.datasets["alarm"].kind == "categorical"
    mine = config.datasets["mine"]
    assert mine.builtin.startswith("bn-mine-") and mine.bif == tmp_path / "nets" / "mine.bif.gz"
    # the dump loads back unchanged (what the flow logs and a worker may read)
    from pmodel.config import ExperimentConfig

    again = ExperimentConfig.model_validate(config.model_dump(mode="json"))
    assert again.datasets == config.datasets
    exp.write_text("name: t\ndatasets: {f: {builtin: fashion}}\nfamilies: [{family: box}]\n")
    plain = load_experiment(exp)
    assert ExperimentConfig.model_validate(plain.model_dump(mode="json")).datasets == plain.datasets
    for text, fragment in [
        ("{builtin: bn, network: alarmm}", "unknown network 'alarmm'; pmodel ships asia, cancer"),
        ("{builtin: bn}", "names exactly one of 'network'"),
        ("{builtin: bn, network: asia, bif: x.bif}", "names exactly one of 'network'"),
        ("{builtin: fashion, network: asia}", "go with builtin: bn, not builtin: fashion"),
        ("{builtin: bn, bif: nowhere.bif}", "bif: cannot read"),
    ]:
        exp.write_text(f"name: bad\ndatasets:\n  d: {text}\nfamilies: [{{family: box}}]\n")
        with pytest.raises(ConfigError, match=__import__("re").escape(fragment)):
            load_experiment(exp)


def test_a_users_file_is_read_by_name_in_a_process_that_never_saw_the_experiment(tmp_path):
    data = (bn.NETWORKS_DIR / "earthquake.bif.gz").read_bytes()
    (tmp_path / "quake.bif.gz").write_bytes(data)
    name = bn.dataset_name(bif=tmp_path / "quake.bif.gz")
    assert (bn.store_dir() / f"{name[-12:]}.bif").read_bytes() == data  # kept by digest
    code = (f"from pmodel.datasets.registry import get_dataset; s = get_dataset({name!r}); "
            "print(s.kind, s.values_per_example, s.files['train'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.split() == ["categorical", "5", f"{name}-train.csv"]


@pytest.mark.parametrize("text,fragment", [
    ("network x {}\nvariable a {\n  type discrete [ 2 ] { y, n };\n}\n"
     "probability ( a ) {\n  table 0.3, 0.3;\n}\n", "the table of 'a' sums to 0.6"),
    ("network x {}\nvariable a {\n  type discrete [ 2 ] { y, n };\n}\n"
     "variable b {\n  type discrete [ 2 ] { y, n };\n}\n"
     "probability ( a ) {\n  table 0.3, 0.7;\n}\n", "variable 'b' has no 'probability' block"),
    ("hello", "no 'variable' block"),
])
def test_a_broken_bif_file_is_refused_with_the_file_and_the_rule(tmp_path, text, fragment):
    path = tmp_path / "broken.bif"
    path.write_text(text)
    with pytest.raises(ValueError, match=__import__("re").escape(fragment)) as err:
        bn.read_bif(path.read_bytes(), source=str(path), name="broken")
    assert str(path) in str(err.value)


def test_validation_checks_a_network_csv_against_its_states(tmp_path):
    from tasks.validation import validate

    asia = bn.network_of("bn-asia")
    good = tmp_path / "good.csv"
    asia.schema.from_codes(asia.sample_codes(20, rng=np.random.default_rng(0))).to_csv(good, index=False)
    assert validate("bn-asia", good, report_dir=tmp_path).success
    bad = tmp_path / "bad.csv"
    bad.write_text(good.read_text().replace("yes", "maybe", 1))
    report = validate("bn-asia", bad, report_dir=tmp_path)
    assert not report.success and "maybe" in json.dumps(report.failures, default=str)
    assert "checked against the built-in bn-asia schema" in report.notes


def test_loading_chapter1_imports_no_pgmpy_nor_torch():
    code = ("from pmodel.config import load_experiment; import sys; "
            "load_experiment('experiments/chapter1.yaml'); "
            "print('pgmpy' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.split() == ["False", "False"]


# ---------------------------------------------------------------------------
# The leaderboard shows estimates as such
# ---------------------------------------------------------------------------

def test_the_leaderboard_ranks_by_the_estimate_and_shows_its_standard_error():
    from pmodel.leaderboard import as_markdown, as_text, ranked
    from pmodel.records import RunResult

    rows = [RunResult("alarm", "f", label, label, {}, metrics=m, log_prob_kind=kind) for label, kind, m in [
        ("nb", "exact", {"kl_to_truth_estimate": 9.97, "kl_to_truth_estimate_se": 0.021, "heldout_loglik": -20.1}),
        ("bn", "exact", {"kl_to_truth_estimate": 0.19, "kl_to_truth_estimate_se": 0.0021, "heldout_loglik": -10.6}),
        ("vae", "lower_bound", {"kl_to_truth_bound_estimate": 3.86, "kl_to_truth_bound_estimate_se": 0.01,
                                "heldout_loglik_bound": -14.3}),
    ]]
    assert [r.label for r in ranked(rows)["alarm"]] == ["bn", "nb", "vae"]
    text = as_text(rows)
    assert "0.19 ± 0.0021" in text and "<= 3.86 ± 0.01" in text and "Monte-Carlo estimate" in text
    assert "by KL to the truth" in text
    assert "0.19 ± 0.0021" in as_markdown(rows)


def test_the_networks_experiment_runs_the_categorical_families_on_three_networks():
    from pmodel.config import load_experiment

    config = load_experiment(REPO / "experiments" / "networks.yaml")
    sizes = {name: len(bn.network_of(ds.builtin).shape) for name, ds in config.datasets.items()}
    assert sizes == {"asia": 8, "insurance": 27, "alarm": 37}
    assert config.build.n_train == 2000
    runs = config.runs()
    families = {spec.family for _, spec in runs}
    assert families == {"multinomial", "naive_bayes", "chow_liu", "latent_class", "autoregressive", "vae",
                        "bayes_net"}
    # the full table only where it can be held: 256 cells, not 10^13 or 10^16
    assert {d for d, spec in runs if spec.family == "multinomial"} == {"asia"}
