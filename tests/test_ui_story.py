"""The MLflow UI tells the chapter's story (issue 11) and `pmodel ui` behaves (issue 12, item 4).

Against a real MLflow SQLite store, after a real flow run (Prefect test
harness) on tiny data; `pmodel ui` as a real subprocess on a free port.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tasks import tracking

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "experiments" / "tiny.yaml"


def _client(uri):
    return tracking._mlflow().tracking.MlflowClient(tracking_uri=uri)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmp: Path) -> dict:
    env = {**os.environ, "PMODEL_HOME": str(tmp / "home"), "PREFECT_HOME": str(tmp / "prefect")}
    env.pop("PREFECT_API_URL", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


# ---------------------------------------------------------------------------
# Metrics: infinity is never a huge number, and sorting puts the right run first
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def store(tmp_path_factory):
    uri = "sqlite:///" + str(tmp_path_factory.mktemp("story-store") / "mlflow.db")
    tracking.prepare_store(uri)
    return uri


def test_infinite_values_are_left_out_flagged_and_read_back_exactly(store):
    eid = tracking.get_or_create_experiment(store, "infinities")
    run = tracking.start_run(store, eid, "r")
    tracking.log_metrics(store, run, {"kl_to_truth": math.inf, "heldout_loglik": -math.inf,
                                      "odd": math.nan, "novelty_rate": 0.25, "n_parameters": 7.0},
                         flag_infinite=["kl_to_truth", "heldout_loglik", "n_parameters"])
    got = _client(store).get_run(run)
    metrics, tags = got.data.metrics, got.data.tags
    assert set(metrics) == {"kl_to_truth_is_infinite", "heldout_loglik_is_infinite", "novelty_rate",
                            "n_parameters", "n_parameters_is_infinite"}
    assert metrics["kl_to_truth_is_infinite"] == 1 == metrics["heldout_loglik_is_infinite"]
    assert metrics["n_parameters_is_infinite"] == 0 and metrics["n_parameters"] == 7
    assert (tags["metric.kl_to_truth"], tags["metric.heldout_loglik"], tags["metric.odd"]) == (
        "inf", "-inf", "nan")
    assert tracking.read_metric(got, "kl_to_truth") == math.inf
    assert tracking.read_metric(got, "heldout_loglik") == -math.inf
    assert math.isnan(tracking.read_metric(got, "odd"))
    assert tracking.read_metric(got, "novelty_rate") == 0.25
    exact = tracking.read_metrics(got)
    assert set(exact) == {"kl_to_truth", "heldout_loglik", "odd", "novelty_rate", "n_parameters"}
    assert exact["heldout_loglik"] == -math.inf


# Three families on two datasets, with the scores the lead's definitions give:
# the copying model (alpha=0) has p = 0 on held-out data, so KL = inf and
# heldout_loglik = -inf, while its in-support mean is the best of all.
RUNS = {
    "fashion": {"multinomial a=0": (math.inf, -math.inf, -2.0), "multinomial a=1": (0.9, -8.1, -8.1),
                "NB a=1": (0.4, -7.6, -7.6)},
    "land": {"box": (math.inf, -math.inf, -6.0), "multinomial a=1": (0.2, -9.0, -9.0),
             "NB a=1": (0.5, -9.3, -9.3)},
}


def test_sorting_by_kl_or_by_heldout_loglik_puts_the_same_run_first(store):
    eid = tracking.get_or_create_experiment(store, "sorting")
    for dataset, runs in RUNS.items():
        for label, (kl, ll, ll_in) in runs.items():
            rid = tracking.start_run(store, eid, f"{label} | {dataset}", tags={"dataset": dataset})
            tracking.log_metrics(store, rid, {"kl_to_truth": kl, "heldout_loglik": ll,
                                              "heldout_loglik_in_support": ll_in},
                                 flag_infinite=["kl_to_truth", "heldout_loglik"])
    client = _client(store)
    for dataset, runs in RUNS.items():
        where = f"tags.dataset = '{dataset}'"
        by_kl = client.search_runs([eid], where, order_by=["metrics.kl_to_truth ASC"])
        by_ll = client.search_runs([eid], where, order_by=["metrics.heldout_loglik DESC"])
        expected = min(runs, key=lambda k: runs[k][0])
        assert by_kl[0].info.run_name == by_ll[0].info.run_name == f"{expected} | {dataset}"
        # the infinite ones sort last both ways, whatever the direction
        assert by_kl[-1].info.run_name == by_ll[-1].info.run_name
        assert tracking.read_metric(by_kl[-1], "kl_to_truth") == math.inf
        assert by_kl[-1].data.metrics["kl_to_truth_is_infinite"] == 1


def test_leaderboard_ranks_by_kl_and_says_exact_bound_or_none():
    from pmodel.leaderboard import as_text, loglik_text, ranked
    from pmodel.records import RunResult

    def row(dataset, label, metrics=None, error=None):
        return RunResult(dataset, "f", label, label, {}, metrics=metrics or {}, error=error)

    rows = [
        row("fashion", "copy", {"kl_to_truth": math.inf, "heldout_loglik": -math.inf,
                                "heldout_loglik_in_support": -2.0}),
        row("fashion", "nb", {"kl_to_truth": 0.4, "heldout_loglik": -7.6}),
        row("fashion", "broken", error="ValueError: x"),
        row("mine", "gan", {"novelty_rate": 1.0}),
        row("mine", "vae", {"heldout_loglik_bound": -3.0}),
        row("mine", "exact-bad", {"heldout_loglik": -9.0}),
        row("mine", "exact-good", {"heldout_loglik": -5.0}),
    ]
    order = {d: [r.label for r in rs] for d, rs in ranked(rows).items()}
    assert order == {"fashion": ["nb", "copy", "broken"],
                     "mine": ["exact-good", "exact-bad", "vae", "gan"]}
    assert [loglik_text(r) for r in rows[3:6]] == ["none", ">= -3", "-9"]
    text = as_text(rows)
    assert "by KL to the truth, lower first" in text and "by held-out log-likelihood" in text
    assert "-inf" in text and ">= -3" in text and "FAILED" in text


def test_leaderboard_groups_by_the_taxonomy_and_never_ranks_a_bound_against_an_exact_value():
    from pmodel.leaderboard import as_markdown, as_text, kl_text, ranked
    from pmodel.records import RunResult

    def row(label, kind, metrics, taxonomy=""):
        return RunResult("pixels", "f", label, label, {}, metrics=metrics, log_prob_kind=kind,
                         taxonomy=taxonomy)

    rows = [row("gan-good", "none", {"valid_rate": 0.6}, "implicit"),
            row("vae", "lower_bound", {"kl_to_truth_bound": 10.0, "heldout_loglik_bound": -900.0}),
            row("nb", "exact", {"kl_to_truth": 1032.0, "heldout_loglik": -1500.0}, "counting"),
            row("diffusion", "lower_bound", {"kl_to_truth_bound": 5000.0, "heldout_loglik_bound": -5000.0}),
            row("gan-bad", "none", {"valid_rate": 0.1}),
            row("pixelcnn", "exact", {"kl_to_truth": 574.0, "heldout_loglik": -850.0})]
    # the VAE's KL bound (10) is below every exact KL, but it is a bound: it stays in its group
    assert [r.label for r in ranked(rows)["pixels"]] == [
        "pixelcnn", "nb", "vae", "diffusion", "gan-good", "gan-bad"]
    assert kl_text(rows[1]) == "<= 10" and kl_text(rows[2]) == "1032" and kl_text(rows[0]) == "-"
    text = as_text(rows)
    headings = [line.strip() for line in text.splitlines() if line.strip().startswith("-- ")]
    assert headings == ["-- explicit density, exact likelihood (tractable)",
                        "-- explicit density, a lower bound on the likelihood (approximate)",
                        "-- implicit density: samples only, no likelihood"]
    assert text.index("pixelcnn") < text.index("approximate") < text.index("<= 10") < text.index("implicit")
    assert "*explicit density, a lower bound on the likelihood (approximate)*" in as_markdown(rows)
    # one group only (chapter 1's counting families): no headings
    assert "-- " not in as_text([rows[2], rows[5]])
    # columns stay aligned whatever the labels' lengths (too long ones end in "...")
    long = [row("x" * 45, "exact", {"kl_to_truth": 1.0}, "flow"),
            row("y" * 90, "exact", {"kl_to_truth": 2.0}, "counting"), rows[5]]
    lines = [line for line in as_text(long).splitlines() if line.startswith("  ") and "--" not in line]
    assert len(lines) == 4 and len({len(line) for line in lines}) == 1
    assert "y" * 57 + "..." in as_text(long) and "y" * 58 not in as_text(long)


def test_leaderboard_shows_standard_errors_and_rows_the_data_cannot_tell_apart():
    from pmodel.leaderboard import CLOSE, CLOSE_NOTE, as_markdown, as_text, indistinct_from_above, ranked
    from pmodel.records import RunResult

    def row(label, kind, metrics):
        return RunResult("jars", "f", label, label, {}, metrics=metrics, log_prob_kind=kind)

    rows = [row("pca", "lower_bound", {"kl_to_truth_bound": 4444.0, "heldout_loglik_bound": -4500.0}),
            row("diffusion", "lower_bound", {"kl_to_truth_bound": 4438.0, "kl_to_truth_bound_se": 4.0,
                                             "heldout_loglik_bound": -4490.0, "heldout_loglik_bound_se": 13.0}),
            row("vae", "lower_bound", {"kl_to_truth_bound": 3000.0, "kl_to_truth_bound_se": 4.0}),
            row("nb", "exact", {"kl_to_truth": 5000.0, "heldout_loglik": -5100.0, "heldout_loglik_se": 10.0}),
            row("nb2", "exact", {"kl_to_truth": 5000.5, "heldout_loglik": -5100.0, "heldout_loglik_se": 10.0})]
    ranked_rows = ranked(rows)["jars"]
    assert [r.label for r in ranked_rows] == ["nb", "nb2", "vae", "diffusion", "pca"]
    # |4444 - 4438| = 6 < 2 sqrt(4^2 + 0^2); 3000 vs 4438 is far; an exact KL is never judged by noise
    assert indistinct_from_above(ranked_rows, True) == {4}
    text = as_text(rows)
    lines = text.splitlines()
    assert next(x for x in lines if x.strip().startswith("diffusion")).split()[2:8] == [
        "<=", "4438", "±", "4", ">=", "-4490"]
    assert next(x for x in lines if x.strip().startswith("pca")).rstrip().endswith(CLOSE)
    assert sum(CLOSE in x for x in lines) == 2 and f"({CLOSE_NOTE})" in text  # the row, the legend
    nb = next(x for x in lines if x.strip().startswith("nb "))
    assert "5000 " in nb and "-5100 ± 10" in nb and CLOSE not in nb
    md = as_markdown(rows)
    assert "| <= 4438 ± 4 | >= -4490 ± 13 |" in md and f"| pca {CLOSE} |" in md
    # without standard errors the table is as it was: no ± column, no mark, no legend
    plain = [row("a", "exact", {"kl_to_truth": 1.0, "heldout_loglik": -2.0}),
             row("b", "exact", {"kl_to_truth": 1.0, "heldout_loglik": -2.0})]
    assert "±" not in as_text(plain) and CLOSE not in as_text(plain)
    # a spread of 0 (a share of 1: sqrt(p (1 - p) / n) = 0) is shown as none, not "1 ± 0"
    from pmodel.leaderboard import pm_text

    assert pm_text({"x": 1.0, "x_se": 0.0}, "x") == "" and pm_text({"x": 0.5, "x_se": 0.02}, "x") == "± 0.02"
    share = [row("a", "exact", {"kl_to_truth": 1.0, "novelty_rate": 1.0, "novelty_rate_se": 0.0}),
             row("b", "exact", {"kl_to_truth": 2.0, "novelty_rate": 0.5, "novelty_rate_se": 0.05})]
    assert "± 0 " not in as_text(share) + " " and "0.5 ± 0.05" in as_text(share)


def _rendered_tables(markdown: str) -> list[list[list[str]]]:
    """Every table of ``markdown`` as a Markdown renderer reads it (markdown-it, GFM tables):
    per table, its rows (header first), each a list of its cells' text."""
    from markdown_it import MarkdownIt

    tables, row, cell = [], None, None
    for tok in MarkdownIt("commonmark").enable("table").parse(markdown):
        if tok.type == "table_open":
            tables.append([])
        elif tok.type == "tr_open":
            row = []
            tables[-1].append(row)
        elif tok.type in ("th_open", "td_open"):
            cell = []
        elif tok.type == "inline" and cell is not None:
            cell.append("".join(c.content for c in tok.children or []))
        elif tok.type in ("th_close", "td_close"):
            row.append("".join(cell))
            cell = None
    return tables


def test_markdown_leaderboard_rows_have_the_headers_cells_though_run_names_hold_a_bar():
    """A run name holds '|' ("flow | land"): unescaped it split its cell, the row's numbers
    moved one column right and the on_land_rate column showed 0 where the flow had 0.895."""
    from pmodel.leaderboard import as_markdown
    from pmodel.records import RunResult

    rows = [RunResult("land", "flow", "flow", "flow", {}, log_prob_kind="exact",
                      metrics={"kl_to_truth": 0.31, "heldout_loglik": -5.2, "on_land_rate": 0.895}),
            RunResult("land", "gan", "gan", "gan", {}, log_prob_kind="none", metrics={"on_land_rate": 0.5}),
            RunResult("land", "box", "box", "box", {}, log_prob_kind="exact",
                      metrics={"kl_to_truth": math.inf, "heldout_loglik": -math.inf, "on_land_rate": 0.3}),
            RunResult("land", "grid", "grid", "grid", {}, skip="too big | really"),
            RunResult("land", "vae", "vae", "vae", {}, error="ValueError: x")]
    names = {("land", r.label): f"{r.label} a=1 | land" for r in rows}
    text = as_markdown(rows, names)
    # in the source: every table line has the header's number of unescaped bars (a renderer
    # drops the cells past the header's, so the excess would not show below)
    bars = [len(re.findall(r"(?<!\\)\|", line)) for line in text.splitlines() if line.startswith("|")]
    assert len(set(bars)) == 1, bars
    tables = _rendered_tables(text)
    assert len(tables) == 1
    header, *body = tables[0]
    assert sum(1 for r in body if r[0]) == 5  # five runs, and the taxonomy groups' headings
    assert all(len(r) == len(header) for r in body), [len(r) for r in body]
    by_run = {r[1]: dict(zip(header, r)) for r in body if r[0]}
    assert by_run["flow a=1 | land"]["on_land_rate"] == "0.895"
    assert by_run["flow a=1 | land"]["kl_to_truth"] == "0.31"
    assert by_run["box a=1 | land"]["kl_to_truth"] == "inf"
    assert by_run["grid a=1 | land"]["kl_to_truth"] == "SKIPPED: too big | really"


def test_parent_description_keeps_the_glossary_it_can_and_links_the_rest():
    """The README promises the glossary in the parent's description: it said "see glossary.md"
    as soon as the whole glossary did not fit MLflow's 8,000 characters."""
    from pmodel.glossary import glossary_markdown
    from pmodel.records import RunResult
    from tasks.record import parent_description

    metrics = {"kl_to_truth": 0.4, "heldout_loglik": -7.6, "heldout_loglik_in_support": -7.6,
               "out_of_support_rate": 0.0, "novelty_rate": 0.9, "fit_seconds": 0.1,
               "unique_rate": 1.0, "train_seconds": 1.0, "latent_r2": 0.5, "latent_r2_width": 0.5}
    rows = [RunResult("fashion", "f", f"f{i}", f"f{i}", {}, metrics=metrics) for i in range(3)]
    config, link = {"name": "x"}, "#/experiments/1/runs/r/artifacts/glossary.md"
    whole = parent_description(config, rows, {}, limit=10**6, glossary_link=link)
    assert glossary_markdown(list(metrics)) in whole and link not in whole
    short = parent_description(config, rows, {}, limit=len(whole) - 1, glossary_link=link)
    assert len(short) <= len(whole) - 1
    shown = glossary_markdown(["kl_to_truth", "heldout_loglik", "heldout_loglik_in_support",
                               "out_of_support_rate", "novelty_rate"])
    assert shown in short and "`latent_r2_width`" not in short.split("What the scores mean")[1]
    assert f"[`glossary.md`]({link})" in short
    bare = parent_description(config, rows, {}, limit=len(short) - 1, glossary_link=link)
    assert f"[`glossary.md`]({link})" in bare and "| `kl_to_truth` |" not in bare
    # "<factor>" survives Markdown: escaped, not read as an HTML tag
    assert "latent_r2_&lt;factor>" in whole


def test_run_names_put_what_differs_first():
    from pmodel.records import RunResult
    from tasks.record import run_name

    def name(family, params, dataset, entry):
        return run_name(RunResult(dataset, family, entry, entry, params))

    assert name("naive_bayes", {"alpha": 1.0}, "pixels", "naive_bayes alpha=1.0") == "NB a=1 | pixels"
    assert name("multinomial", {"alpha": 0.0, "cell_deg": 10.0}, "land",
                "multinomial alpha=0.0") == "multinomial a=0 | land"
    assert name("box", {}, "fashion", "box") == "box | fashion"
    assert name("naive_bayes", {"alpha": 0.5}, "fashion", "my NB") == "my NB | fashion"


def test_provenance_for_clean_dirty_and_missing_checkouts(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.email=t@example.org", "-c", "user.name=t"]
    subprocess.run(git + ["init", "-q"], check=True)
    (repo / "a.py").write_text("x = 1\n")
    subprocess.run(git + ["add", "a.py"], check=True)
    subprocess.run(git + ["commit", "-qm", "one"], check=True)
    head = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    tracking.provenance_tags.cache_clear()
    clean = tracking.provenance_tags(str(repo))
    assert clean["mlflow.source.git.commit"] == head
    assert clean["pmodel.git.state"] == "clean"
    assert clean["mlflow.user"] and clean["mlflow.source.name"] and clean["mlflow.source.type"] == "LOCAL"
    (repo / "a.py").write_text("x = 2\n")
    tracking.provenance_tags.cache_clear()
    dirty = tracking.provenance_tags(str(repo))
    assert dirty["mlflow.source.git.commit"] == head
    assert dirty["pmodel.git.state"].startswith("dirty: 1 tracked file")
    tracking.provenance_tags.cache_clear()
    none = tracking.provenance_tags(str(tmp_path / "plain"))
    assert "mlflow.source.git.commit" not in none
    assert none["pmodel.git.state"].startswith("no commit recorded")
    tracking.provenance_tags.cache_clear()


def test_glossary_covers_every_score_of_the_evaluate_table():
    from pmodel.glossary import describe
    from pmodel.scores import SCORES

    # every metric a registered score can record, and what evaluate adds beside them
    names = {m for spec in SCORES.values() for m in spec.metrics}
    names |= {"n_parameters", "log10_n_parameters", "fit_seconds", "sample_seconds"}
    missing = {n for n in names if describe(n) is None}
    assert not missing
    for n in names:
        entry = describe(n)
        assert entry.meaning and entry.unit


# ---------------------------------------------------------------------------
# After a real flow run on tiny data
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def flow_store(tmp_path_factory):
    return "sqlite:///" + str(tmp_path_factory.mktemp("story-flow") / "mlflow.db")


@pytest.fixture(scope="module")
def tiny_run(prefect_harness, flow_store, renders):
    from flows.experiment import run_experiment

    state = run_experiment(str(TINY), tracking_uri=flow_store, return_state=True)
    outcome = state.result(raise_on_failure=False)
    assert state.is_completed(), outcome
    client = _client(flow_store)
    parent = client.get_run(outcome.parent_run_id)
    children = client.search_runs([parent.info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{outcome.parent_run_id}'")
    return outcome, parent, children


def test_no_metric_is_a_huge_stand_in_for_infinity(tiny_run):
    _, parent, children = tiny_run
    for run in [parent, *children]:
        for key, value in run.data.metrics.items():
            assert -1e300 <= value <= 1e300 or math.isnan(value), (run.info.run_name, key, value)
    # the land box misses land: its KL is exactly inf, flagged and tagged, not a number
    box = next(c for c in children if c.info.run_name == "box | land")
    assert "kl_to_truth" not in box.data.metrics
    assert box.data.metrics["kl_to_truth_is_infinite"] == 1
    assert tracking.read_metric(box, "kl_to_truth") == math.inf
    finite = next(c for c in children if c.info.run_name == "NB a=1 | fashion")
    assert finite.data.metrics["kl_to_truth_is_infinite"] == 0


def test_the_store_sorts_the_same_best_model_first_by_kl_or_by_heldout_loglik(tiny_run, flow_store):
    """What a user does in the runs table, asked of the store itself: per dataset, the
    best by kl_to_truth ascending is the best by heldout_loglik descending, and runs
    with an infinite value (left out of the metrics) sort last either way."""
    _, parent, children = tiny_run
    client = _client(flow_store)
    for dataset in ("fashion", "pixels", "land"):
        where = f"tags.mlflow.parentRunId = '{parent.info.run_id}' and tags.dataset = '{dataset}'"
        by_kl = client.search_runs([parent.info.experiment_id], where, order_by=["metrics.kl_to_truth ASC"])
        by_ll = client.search_runs([parent.info.experiment_id], where,
                                   order_by=["metrics.heldout_loglik DESC"])
        assert by_kl[0].info.run_id == by_ll[0].info.run_id, dataset
        for ordered, key in ((by_kl, "kl_to_truth"), (by_ll, "heldout_loglik")):
            has = [key in r.data.metrics for r in ordered]
            assert has == sorted(has, reverse=True), (dataset, key)  # the infinite ones last


def test_experiment_is_model_training_and_described(tiny_run, flow_store):
    from pmodel.glossary import SCORES

    outcome, parent, children = tiny_run
    experiment = _client(flow_store).get_experiment(outcome.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    note = experiment.tags["mlflow.note.content"]
    assert "Leaderboard" in note and outcome.parent_run_id in note
    assert all(f"`{name}`" in note for name in SCORES)  # the whole glossary
    view = json.loads(experiment.tags["mlflow.sharedViewState.pmodel-runs"])
    assert (view["orderByKey"], view["orderByAsc"]) == ("metrics.`kl_to_truth`", True)
    # not grouped: MLflow's group rows aggregate every column with one function (min), which
    # paired the best KL with the worst log-likelihood; a view per dataset instead
    assert view["groupBy"] is None and view["searchFilter"] == ""
    assert view["selectedColumns"][0] == "tags.`dataset`"
    assert "metrics.`heldout_loglik`" in view["selectedColumns"]
    assert view["columnOrder"] == view["selectedColumns"]
    # every column wide enough for its whole name (MLflow cut "heldout_loglik_in_support" and
    # "heldout_loglik_bound" alike to "heldout_loglik_")
    assert all(view["columnWidths"][c] >= 7 * len(c.split("`")[1]) for c in view["selectedColumns"])
    parent_note = parent.data.tags["mlflow.note.content"]
    for dataset in ("fashion", "pixels", "land"):
        one = json.loads(experiment.tags[f"mlflow.sharedViewState.pmodel-runs-{dataset}"])
        assert one["searchFilter"] == f"tags.dataset = '{dataset}'" and one["groupBy"] is None
        runs = _client(flow_store).search_runs([outcome.experiment_id], one["searchFilter"])
        assert {r.data.tags["dataset"] for r in runs} == {dataset} and len(runs) == 3
        link = (f"[{dataset}](#/experiments/{outcome.experiment_id}/runs?workflowType=machine_learning"
                f"&viewStateShareKey=pmodel-runs-{dataset})")
        assert link in parent_note
    assert "A tiny experiment" not in parent_note  # tiny.yaml has no description: none invented
    assert "**fashion**, best first, by KL to the truth" in parent_note
    assert "`kl_to_truth`" in parent_note and "lower" in parent_note
    # the parent's parameters agree with its children's: sizes per dataset, no global
    params = parent.data.params
    assert "n_train" not in params and "n_heldout" not in params and "n_samples" not in params
    assert {k: params[k] for k in params if k.startswith(("n_train.", "n_heldout.", "n_samples."))} == {
        **{f"n_train.{d}": "20" for d in ("fashion", "pixels", "land")},
        **{f"n_heldout.{d}": "100" for d in ("fashion", "pixels", "land")},
        **{f"n_samples.{d}": "200" for d in ("fashion", "pixels", "land")}}
    for child in children:
        assert child.data.params["n_train"] == params[f"n_train.{child.data.tags['dataset']}"]


def test_run_names_descriptions_and_provenance(tiny_run):
    _, parent, children = tiny_run
    names = sorted(c.info.run_name for c in children)
    assert names == sorted(f"{f} | {d}" for d in ("fashion", "pixels", "land")
                           for f in ("box", "multinomial a=1", "NB a=1"))
    for run in [parent, *children]:
        tags = run.data.tags
        assert tags["mlflow.user"] and tags["mlflow.source.name"]
        assert "mlflow.source.git.commit" in tags or tags["pmodel.git.state"].startswith("no commit")
    for child in children:
        note = child.data.tags["mlflow.note.content"]
        assert "**Assumes**" in note and "**Pictures**" in note and "samples.png" in note
        assert "| `kl_to_truth` |" in note
        # every table row keeps its four cells ('||' in KL(P_data || P_model) is escaped)
        (table,) = _rendered_tables(note)
        assert all(len(row) == 4 for row in table), child.info.run_name
        meaning = dict((row[0], row[3]) for row in table)
        assert "KL(P_data || P_model)" in meaning["kl_to_truth"] and "//" not in note
        assert all(m.count("(") == m.count(")") for m in meaning.values()), meaning
    box = next(c for c in children if c.info.run_name == "box | land")
    assert "| `kl_to_truth` | inf |" in box.data.tags["mlflow.note.content"]
    # the exact parameter count, every digit (it was cut to 200): a multinomial over 32 x 32
    # pixels of L grey levels has L^1024 - 1 free cell probabilities
    grid = next(c for c in children if c.info.run_name == "multinomial a=1 | pixels")
    assert int(grid.data.params["n_parameters_exact"]) + 1 in {k**1024 for k in range(2, 257)}


def _artifact_files(client, run_id: str, folder: str | None = None) -> set[str]:
    out = set()
    for a in client.list_artifacts(run_id, folder):
        out |= _artifact_files(client, run_id, a.path) if a.is_dir else {a.path}
    return out


def test_pictures_side_by_side_and_training_grid_once(tiny_run, flow_store):
    _, parent, children = tiny_run
    client = _client(flow_store)
    parent_files = _artifact_files(client, parent.info.run_id)
    for child in children:
        root = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert "samples.png" in root, (child.info.run_name, root)
        assert not any(p.startswith("training") for p in root)
        # the description names the pictures that were logged, and only those
        note = child.data.tags["mlflow.note.content"]
        pictures = next(line for line in note.splitlines() if line.startswith("**Pictures**"))
        named = set(re.findall(r"`([^`]+\.(?:png|csv|md))`", pictures))
        files = _artifact_files(client, child.info.run_id)
        logged = {p for p in files if p.endswith((".png", ".csv", ".md")) and not p.startswith(("model/", "images/"))}
        on_parent = named - logged
        assert named & logged == logged, (child.info.run_name, logged - named)
        assert on_parent <= parent_files, (child.info.run_name, on_parent - parent_files)
        if child.data.tags["dataset"] == "pixels":
            assert "training-images-pixels.png" in on_parent
        # the main picture also as an image, for the chart view's image grid
        assert any(p.startswith("images/samples") for p in files), files
    parent_root = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"training-images-pixels.png", "comparison.json", "comparison.csv",
            "comparison.png", "glossary.md"} <= parent_root


def test_parent_holds_a_table_not_flattened_metrics(tiny_run, flow_store, tmp_path):
    outcome, parent, _ = tiny_run
    assert set(parent.data.metrics) <= {"n_runs", "n_failed", "n_skipped"} | {
        k for k in parent.data.metrics if k.startswith("time_") and k.endswith("_seconds")}
    path = _client(flow_store).download_artifacts(parent.info.run_id, "comparison.json", str(tmp_path))
    table = json.loads(Path(path).read_text())
    rows = [dict(zip(table["columns"], row)) for row in table["data"]]
    assert len(rows) == 9
    land_box = next(r for r in rows if r["run"] == "box | land")
    assert land_box["kl_to_truth"] == "inf"
    exact = {(r.dataset, r.label): r.metrics for r in outcome.results}
    for r in rows:
        value = exact[(r["dataset"], r["label"])]["out_of_support_rate"]
        assert r["out_of_support_rate"] == pytest.approx(value)


def test_parent_inputs_have_schema_rows_and_the_reports_digests(tiny_run, flow_store, tmp_path):
    from pmodel.datasets.digest import path_digest

    _, parent, _ = tiny_run
    inputs = {i.dataset.name: i.dataset for i in parent.inputs.dataset_inputs}
    assert set(inputs) == {f"{d}-{r}" for d in ("fashion", "pixels", "land") for r in ("train", "heldout")}
    for name, ds in inputs.items():
        source = json.loads(ds.source)["uri"]
        profile = json.loads(ds.profile)
        assert profile["sha256"] == path_digest(source)
        expected_rows = 20 if name.endswith("train") else 100
        assert profile["num_rows"] == expected_rows, name
        schema = json.loads(ds.schema)
        if name.startswith("pixels"):
            spec = json.loads(schema["mlflow_tensorspec"]["features"])
            assert spec[0]["tensor-spec"] == {"dtype": "uint8", "shape": [-1, 32, 32]}
        else:
            cols = [c["name"] for c in schema["mlflow_colspec"]]
            assert cols == (["lon", "lat"] if name.startswith("land") else
                            ["accessories_type", "clothing_color", "clothing_type", "hair_color",
                             "hair_type"])
    # the validation reports name the same digests as the inputs
    client = _client(flow_store)
    reports = client.download_artifacts(parent.info.run_id, "validation", str(tmp_path))
    by_path = {}
    for report in Path(reports).glob("*.json"):
        payload = json.loads(report.read_text())
        by_path[str(Path(payload["path"]).resolve())] = payload["input_sha256"]
    for ds in inputs.values():
        source = str(Path(json.loads(ds.source)["uri"]).resolve())
        assert by_path[source] == json.loads(ds.profile)["sha256"], source


def test_glossary_covers_every_recorded_metric(tiny_run):
    from pmodel.glossary import describe

    _, parent, children = tiny_run
    for run in [parent, *children]:
        for key in tracking.read_metrics(run):
            assert describe(key) is not None, key


# ---------------------------------------------------------------------------
# pmodel ui: answers, serves the runs, leaves nothing behind, refuses a taken port
# ---------------------------------------------------------------------------

def _start_ui(store: str, port: int, tmp: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "flows.cli", "ui", "--port", str(port),
                             "--tracking-uri", store], cwd=REPO, env=_env(tmp),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_ready(proc: subprocess.Popen, timeout: float = 180) -> list[str]:
    """The lines `pmodel ui` prints up to and including its links."""
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            pytest.fail("pmodel ui ended before it was ready:\n" + "".join(lines))
        lines.append(line)
        if "workflowType" in line:
            return lines
    pytest.fail("pmodel ui was not ready in time:\n" + "".join(lines))


def _descendants(pid: int) -> list:
    import psutil

    return psutil.Process(pid).children(recursive=True)


@pytest.mark.slow
def test_pmodel_ui_serves_the_runs_through_its_rest_api(tiny_run, flow_store, tmp_path):
    outcome, _, _ = tiny_run
    port = _free_port()
    proc = _start_ui(flow_store, port, tmp_path)
    try:
        lines = _wait_ready(proc)
        ready = next(line for line in lines if "ready on" in line)
        assert f"http://127.0.0.1:{port}" in ready
        link = next(line for line in lines if line.strip().startswith("tiny:"))
        assert link.strip().endswith(
            f"/#/experiments/{outcome.experiment_id}/runs?workflowType=machine_learning"
            "&viewStateShareKey=pmodel-runs")
        # printed only once the server answers: it answers at once
        body = json.dumps({"experiment_ids": [outcome.experiment_id], "max_results": 100}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/2.0/mlflow/runs/search",
                                         data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            runs = json.loads(response.read())["runs"]
        names = {r["info"]["run_name"] for r in runs}
        assert len(runs) == 10 and "NB a=1 | pixels" in names and "tiny" in names
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=180)  # a loaded machine stops MLflow slowly
    assert proc.returncode == 0


@pytest.mark.slow
def test_kill_9_of_pmodel_ui_leaves_no_process_behind(flow_store, tmp_path):
    import psutil

    tracking.prepare_store(flow_store)
    port = _free_port()
    proc = _start_ui(flow_store, port, tmp_path)
    try:
        _wait_ready(proc)
        family = _descendants(proc.pid)
        assert len(family) >= 2  # the server, its uvicorn, the guard ...
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        gone, alive = psutil.wait_procs(family, timeout=30)
        assert not alive, [(p.pid, p.cmdline()) for p in alive]
        with socket.socket() as s:  # nobody serves the port any more
            assert s.connect_ex(("127.0.0.1", port)) != 0
    finally:
        for p in _descendants(os.getpid()):
            if p.pid != proc.pid and "flows.cli" in " ".join(p.cmdline()):
                p.kill()


@pytest.mark.slow
def test_pmodel_ui_exits_1_when_its_port_is_taken(flow_store, tmp_path):
    tracking.prepare_store(flow_store)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _start_ui(flow_store, port, tmp_path)
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, out
    assert f"port {port} on 127.0.0.1 is already in use" in out and "--port" in out


def test_stop_group_reaps_a_server_that_stops_on_sigterm_instead_of_waiting_out_the_grace():
    import subprocess
    import sys

    from flows.ui import stop_group

    # a server that stops at once on SIGTERM, with a child of its own in its group
    code = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"
    server = subprocess.Popen([sys.executable, "-c", code], process_group=0)
    time.sleep(1.0)  # its child has started
    assert stop_group(server, grace=30.0) == "terminated"  # was "killed": its zombie counted
    assert server.returncode == -signal.SIGTERM
    with pytest.raises(ProcessLookupError):
        os.killpg(server.pid, 0)
    stubborn = subprocess.Popen([sys.executable, "-c", "import signal, time; "
                                 "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"],
                                process_group=0)
    time.sleep(1.0)
    assert stop_group(stubborn, grace=0.5) == "killed" and stubborn.wait(5) == -signal.SIGKILL
