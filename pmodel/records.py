"""Typed records that travel between the flow's steps (and across Prefect's task boundary).

Small, frozen and picklable: paths, digests, dicts of floats and strings, never
arrays or fitted models (those stay in files, passed by path).

::

    ingest  -> Ingested       a dataset's files and their digests
    fit/sample/score/log -> RunResult   one (dataset, family) pair: scores or the error
    the flow -> Outcome       everything a run produced, for the CLI and tests
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Ingested:
    """A dataset located and digested (the ``ingest`` step's result).

    Attributes
    ----------
    name : the experiment's name for the dataset
    kind : data kind ("categorical", "image", "points")
    builtin : the registry name of a built-in dataset, or None for users' files
    spec : the dataset's config entry, as JSON
    files : role ("train", "heldout", "schema_file") -> path
    digests : role -> sha256 of the file or folder
    digest : one digest over all of them (what caches key on)
    """

    name: str
    kind: str
    builtin: str | None
    spec: dict
    files: dict[str, str]
    digests: dict[str, str]
    digest: str


@dataclass(frozen=True)
class RunResult:
    """One (dataset, family entry) of a run: what was fitted, and its scores or its error.

    ``metrics`` are the scores (``pmodel.scores``) plus timings and parameter
    counts; ``skipped`` maps each score that could not apply to the reason;
    ``log_prob_kind`` is the family's ("exact", "lower_bound", "none"), ``taxonomy`` its
    place in the chapter's taxonomy ("counting", "autoregressive", "flow", ...).
    ``skip`` says why the family was not fitted to the dataset at all (it cannot hold it:
    ``Family.cannot_hold``); such a pair is neither a success nor a failure, and has no
    child run.
    """

    dataset: str
    family: str
    label: str
    entry: str
    params: dict
    metrics: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    log_prob_kind: str | None = None
    taxonomy: str | None = None         # the family's place in the chapter's taxonomy
    tags: dict = field(default_factory=dict)  # e.g. where a deep family trained (device, torch, CUDA)
    error: str | None = None
    run_id: str | None = None
    problem_path: str | None = None
    model_path: str | None = None
    samples_path: str | None = None
    skip: str | None = None
    seed: int | None = None             # the seed of one repeat, in a run over several seeds

    def with_(self, **changes) -> "RunResult":
        return replace(self, **changes)


@dataclass(frozen=True)
class Outcome:
    """What one run of an experiment produced.

    ``failures`` maps a dataset, or ``dataset/label``, to its error message;
    ``fit_states`` maps ``dataset/label`` to the fit task's final state name
    ("Completed", "Cached", ...); ``timings`` the flow's phases in seconds. Over several
    seeds the keys of ``failures`` and ``fit_states`` start with ``seed<S>/``.
    """

    experiment: str
    experiment_id: str
    parent_run_id: str
    tracking_uri: str
    results: tuple[RunResult, ...] = ()
    failures: dict[str, str] = field(default_factory=dict)
    fit_states: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    #: a run over several seeds: one row per (dataset, family), mean and ``<metric>_sd`` over
    #: the seeds (``results`` holds every seed's own)
    over_seeds: tuple[RunResult, ...] = ()
    seeds: tuple[int, ...] = ()
