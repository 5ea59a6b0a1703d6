"""Experiments as files: a YAML loaded into a validated config.

::

    name: chapter1
    seed: 0                                    # or seeds: [0, 1, 2]: the whole experiment per seed
    n_samples: 5000
    build: {n_train: 50, n_heldout: 5000}      # how the built-in data is made
    datasets:
      fashion: {builtin: fashion}
      mine: {kind: categorical, train: my.csv, heldout: my-test.csv, schema: my.yaml}
      alarm: {builtin: bn, network: alarm}       # a published Bayesian network pmodel ships
      mynet: {builtin: bn, bif: my-network.bif}  # or a BIF file of your own
    families:
      - {family: box}
      - {family: multinomial, params: {alpha: 1.0}, points: {cell_deg: 10.0}}

A family entry's ``params`` apply on every kind it runs on; ``categorical``,
``image`` and ``points`` add hyperparameters for that kind only (a grid's cell
size means nothing to a table). ``datasets:`` in an entry restricts it to
some datasets. Every family is looked up in the registry, never imported from
a string; unknown keys are errors that name the key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from pmodel.datasets.build import BuildConfig
from pmodel.datasets.registry import dataset_names, get_dataset, is_dataset
from pmodel.datasets.schema import MAX_CATEGORIES, MISSING_POLICIES
from pmodel.families import check_hyperparameters, family_class, family_names, kinds_served
from pmodel.families.domains import DOMAINS

KINDS = tuple(DOMAINS)

#: Characters a family entry's label may use: MLflow keeps them in run names,
#: metric and parameter keys alike.
LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 _.=,:/+-]*$"

#: The most memory the samples of one run may take, as float64 values
#: (n_samples x values per example x 8 bytes): 2 GiB. Pixels (1024 values an
#: image) allow 262,144 samples; points (2) 134 million. Users' data too: their
#: values per example are read when the file loads (a CSV's header, a schema, one
#: image's size).
MAX_SAMPLE_BYTES = 2 * 1024**3


def sample_memory_error(dataset: str, n_samples: int, per_example: int, what: str = "") -> str | None:
    """Why ``n_samples`` samples of ``dataset`` (``per_example`` values each) break
    :data:`MAX_SAMPLE_BYTES`, or None when they fit. ``what`` says where the count comes from."""
    if n_samples * per_example * 8 <= MAX_SAMPLE_BYTES:
        return None
    return (f"n_samples: {n_samples} samples of {dataset!r} ({per_example} values each{what}) "
            f"would take {n_samples * per_example * 8 / 2**30:.1f} GiB as float64, over the "
            f"limit of {MAX_SAMPLE_BYTES / 2**30:.0f} GiB; at most "
            f"{MAX_SAMPLE_BYTES // (per_example * 8)} for this dataset")


class ConfigError(ValueError):
    """An experiment file is invalid; the message names the key and the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BuildSpec(_Strict):
    """Sizes of the built-in datasets (made reproducibly from the experiment's seed)."""

    n_train: Annotated[int, Field(ge=1)] = 50
    n_heldout: Annotated[int, Field(ge=1)] = 5000


class BuiltinDataset(_Strict):
    """A built-in dataset; ``n_train`` / ``n_heldout`` override the experiment's ``build``
    sizes for this dataset alone (so ``fashion50`` and ``fashion5000`` can sit side by side), and
    ``n_samples`` the experiment's samples per model (cheap points can have more than slow images)."""

    builtin: str
    n_train: Annotated[int, Field(ge=1)] | None = None
    n_heldout: Annotated[int, Field(ge=1)] | None = None
    #: samples drawn from each model of this dataset (default: the experiment's n_samples)
    n_samples: Annotated[int, Field(ge=1, le=100_000_000)] | None = None
    #: ``builtin: bn`` only: a published network pmodel ships (``alarm``) ...
    network: str | None = None
    #: ... or the path of a BIF file (relative to the experiment file)
    bif: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _network_dataset(cls, data: Any, info: ValidationInfo) -> Any:
        # {builtin: bn, network: alarm} is the registry's dataset "bn-alarm" (pmodel.datasets.bn)
        if not isinstance(data, dict) or (data.get("network") is None and data.get("bif") is None
                                          and data.get("builtin") != "bn"):
            return data
        from pmodel.datasets import bn

        base = (info.context or {}).get("base_dir")
        data = dict(data)
        data["builtin"] = bn.dataset_name(builtin=str(data.get("builtin")), network=data.get("network"),
                                          bif=data.get("bif"), base_dir=base)
        if data.get("bif") is not None:
            bif = Path(data["bif"]).expanduser()
            data["bif"] = bif if bif.is_absolute() or base is None else Path(base) / bif
        return data

    @field_validator("builtin")
    @classmethod
    def _registered(cls, name: str) -> str:
        if not is_dataset(name):
            raise ValueError(f"unknown built-in dataset {name!r}; registered: {', '.join(dataset_names())}"
                             " (and bn, with network: NAME or bif: PATH)")
        get_dataset(name)  # a dataset made on demand (a network) is read now: its errors, here
        return name

    @property
    def kind(self) -> str:
        return get_dataset(self.builtin).kind


class UserDataset(_Strict):
    """A user's files. ``heldout`` is optional: without it, ``heldout_fraction`` of
    ``train`` is held out (a seeded split). Categorical data only: ``missing`` says
    what an empty cell is (``error``: refused, naming the lines; ``category``: the
    category ``<missing>``), ``max_categories`` the most distinct values a column
    may have when no ``schema`` declares them (more is likely an ID or free text)."""

    kind: Literal["categorical", "image", "points"]
    train: Path
    heldout: Path | None = None
    heldout_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2
    schema_file: Path | None = Field(default=None, alias="schema")
    missing: Literal[MISSING_POLICIES] = "error"
    max_categories: Annotated[int, Field(ge=2)] = MAX_CATEGORIES

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _tables_only(self):
        for key, field in (("schema", "schema_file"), ("missing", "missing"),
                           ("max_categories", "max_categories")):
            if field in self.model_fields_set and self.kind != "categorical":
                raise ValueError(f"{key!r} applies to categorical data only, not {self.kind!r}")
        return self


class FamilySpec(_Strict):
    family: str
    params: dict[str, Any] = {}
    categorical: dict[str, Any] = {}
    image: dict[str, Any] = {}
    points: dict[str, Any] = {}
    datasets: list[str] | None = None
    label: Annotated[str, Field(pattern=LABEL_PATTERN, max_length=100)] | None = None

    @field_validator("family")
    @classmethod
    def _registered(cls, name: str) -> str:
        if name not in family_names():
            raise ValueError(f"unknown family {name!r}; registered: {', '.join(family_names())}")
        return name

    def params_for(self, kind: str) -> dict[str, Any]:
        """Hyperparameters on one kind: ``params`` plus that kind's extras."""
        return {**self.params, **getattr(self, kind)}

    def entry_label(self) -> str:
        """The entry's label on every kind: family and shared hyperparameters."""
        if self.label:
            return self.label
        return " ".join([self.family] + [f"{k}={v}" for k, v in self.params.items()])

    def display(self, kind: str) -> str:
        """A short label, e.g. ``multinomial alpha=1.0``."""
        if self.label:
            return self.label
        params = self.params_for(kind)
        return " ".join([self.family] + [f"{k}={v}" for k, v in params.items()])


class ExperimentConfig(_Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    description: str = ""
    seed: Annotated[int, Field(ge=0)] = 0
    #: repeat the whole experiment (data, fits, samples) once per seed; ``seed`` is then unused
    seeds: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1, max_length=1000)] | None = None
    n_samples: Annotated[int, Field(ge=1, le=100_000_000)] = 5000
    build: BuildSpec = BuildSpec()
    #: where the deep families train, unless a family entry says (``auto`` also reads $PMODEL_DEVICE)
    device: Annotated[str, Field(pattern=r"^(auto|cpu|cuda(:[0-9]+)?|mps)$")] | None = None
    #: sample grids (images) or maps (land) logged while each deep family trains (0: none)
    pictures_while_training: Annotated[int, Field(ge=0, le=100)] = 6
    datasets: dict[str, BuiltinDataset | UserDataset]
    families: list[FamilySpec]

    @field_validator("datasets", mode="before")
    @classmethod
    def _pick_dataset_type(cls, value, info: ValidationInfo):
        # choose the model by key rather than let pydantic try both and report both
        if isinstance(value, dict):
            out = {}
            for name, spec in value.items():
                if not isinstance(spec, dict):
                    out[name] = spec
                    continue
                model = BuiltinDataset if "builtin" in spec else UserDataset
                try:
                    out[name] = model.model_validate(spec, context=info.context)
                except ValidationError as exc:
                    raise ValueError("; ".join(
                        f"{'.'.join([name, *(str(p) for p in err['loc'])])}: "
                        f"{'unknown key' if err['type'] == 'extra_forbidden' else err['msg'].removeprefix('Value error, ')}"
                        for err in exc.errors())) from None
            return out
        return value

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds):
        if seeds is not None and len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct, got {seeds}")
        return seeds

    def seed_configs(self) -> list["ExperimentConfig"]:
        """The experiment once per seed: with ``seeds``, one copy per seed with ``seed`` set
        to it (and ``seeds`` cleared); without, the experiment itself."""
        if not self.seeds:
            return [self]
        return [self.model_copy(update={"seed": s, "seeds": None}) for s in self.seeds]

    @model_validator(mode="after")
    def _check_runs(self):
        if not self.datasets:
            raise ValueError("'datasets' needs at least one dataset")
        if not self.families:
            raise ValueError("'families' needs at least one family")
        for i, spec in enumerate(self.families):
            for name in spec.datasets or []:
                if name not in self.datasets:
                    raise ValueError(f"families[{i}].datasets: unknown dataset {name!r}; "
                                     f"defined: {', '.join(self.datasets)}")
            for kind in KINDS:
                if kind not in kinds_served(spec.family):
                    if getattr(spec, kind):
                        raise ValueError(f"families[{i}].{kind}: {spec.family!r} does not serve "
                                         f"{kind} data")
                    continue
                # a kind's own hyperparameters must fit it; shared ones only the kinds run on
                params = self.params_for(spec, kind) if self._runs_on(spec, kind) else getattr(spec, kind)
                try:
                    check_hyperparameters(spec.family, kind, params)
                except ValueError as exc:
                    where = "params" if not getattr(spec, kind) else f"{kind}"
                    raise ValueError(f"families[{i}].{where} ({spec.family} on {kind} data): {exc}") from None
        for name, ds in self.datasets.items():
            if isinstance(ds, BuiltinDataset):
                error = sample_memory_error(name, self.n_samples_for(name),
                                            get_dataset(ds.builtin).values_per_example)
                if error:
                    raise ValueError(error)
        labels = [(d, s.display(self.datasets[d].kind)) for d, s in self.runs()]
        dupes = {x for x in labels if labels.count(x) > 1}
        if dupes:
            raise ValueError(f"two family entries give the same run {sorted(dupes)[0]}; "
                             "give one of them a 'label'")
        return self

    def n_samples_for(self, dataset: str) -> int:
        """Samples drawn from each model of ``dataset``: its own ``n_samples``, else the experiment's."""
        ds = self.datasets.get(dataset)
        return (ds.n_samples if isinstance(ds, BuiltinDataset) and ds.n_samples else None) or self.n_samples

    def params_for(self, spec: FamilySpec, kind: str) -> dict[str, Any]:
        """A family entry's hyperparameters on one kind, with the experiment's ``device`` for a
        family that trains on one, unless the entry sets its own."""
        params = spec.params_for(kind)
        if self.device is not None and "device" not in params and "device" in family_class(
                spec.family, kind).hyperparameters:
            params["device"] = self.device
        return params

    def _runs_on(self, spec: FamilySpec, kind: str) -> bool:
        return any(ds.kind == kind and (spec.datasets is None or name in spec.datasets)
                   for name, ds in self.datasets.items())

    def runs(self) -> list[tuple[str, FamilySpec]]:
        """Every (dataset, family entry) pair to fit, in file order."""
        return [(name, spec) for name, ds in self.datasets.items() for spec in self.families
                if ds.kind in kinds_served(spec.family)
                and (spec.datasets is None or name in spec.datasets)]

    def build_config(self, dataset: str | None = None) -> BuildConfig:
        """How the built-in data is made: the experiment's sizes, or a dataset's own."""
        ds = self.datasets.get(dataset) if dataset is not None else None
        n_train = ds.n_train if isinstance(ds, BuiltinDataset) and ds.n_train else self.build.n_train
        n_heldout = ds.n_heldout if isinstance(ds, BuiltinDataset) and ds.n_heldout else self.build.n_heldout
        return BuildConfig(seed=self.seed, n_train=n_train, n_heldout=n_heldout)

    def builtin_builds(self) -> list[tuple[BuildConfig, list[str], list[str]]]:
        """The built-in datasets grouped by how they are built:
        ``(build config, registry names to build, experiment dataset names)``, in file order."""
        groups: dict[BuildConfig, tuple[list[str], list[str]]] = {}
        for name, ds in self.datasets.items():
            if isinstance(ds, BuiltinDataset):
                builtins, names = groups.setdefault(self.build_config(name), ([], []))
                if ds.builtin not in builtins:
                    builtins.append(ds.builtin)
                names.append(name)
        return [(bc, sorted(b), n) for bc, (b, n) in groups.items()]


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------

def _format_errors(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid experiment config"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-after"))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"  - {loc or '(top level)'}: {msg}")
    return "\n".join(lines)


def apply_override(data: dict, assignment: str) -> dict:
    """Apply ``key.path=value`` (value parsed as YAML) to a nested dict, in place.

    Integers in the path index lists: ``families.1.params.alpha=0.5``.
    """
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected key=value")
    key, raw = assignment.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"--set {assignment!r}: empty key")
    value = yaml.safe_load(raw) if raw.strip() else ""
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(node, list):
            if not re.fullmatch(r"\d+", part) or int(part) >= len(node):
                raise ConfigError(f"--set {key}: {'.'.join(parts[:i + 1])} is not an index "
                                  f"of a list of {len(node)}")
            node = node[int(part)]
        else:
            if part not in node or node[part] is None:
                node[part] = [] if re.fullmatch(r"\d+", nxt) else {}
            node = node[part]
    last = parts[-1]
    if isinstance(node, list):
        if not re.fullmatch(r"\d+", last) or int(last) >= len(node):
            raise ConfigError(f"--set {key}: {last} is not an index of a list of {len(node)}")
        node[int(last)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"--set {key}: {'.'.join(parts[:-1])} is a value, not a mapping")
    return data


def load_experiment(path: Path | str, overrides: list[str] = ()) -> ExperimentConfig:
    """Read an experiment YAML, apply ``--set`` overrides, validate.

    User paths in ``datasets`` are resolved relative to the YAML's folder.
    Raises :class:`ConfigError` naming every broken key.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    for assignment in overrides:
        apply_override(data, assignment)
    base = path.resolve().parent
    try:
        config = ExperimentConfig.model_validate(data, context={"base_dir": base})
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, str(path))) from None
    except ValueError as exc:  # raised while building nested models by hand
        raise ConfigError(f"{path}: invalid experiment config\n  - {exc}") from None
    datasets = {}
    for name, ds in config.datasets.items():
        if isinstance(ds, UserDataset):
            ds = ds.model_copy(update={
                k: (base / v if v is not None and not Path(v).is_absolute() else v)
                for k, v in (("train", ds.train), ("heldout", ds.heldout), ("schema_file", ds.schema_file))})
        datasets[name] = ds
    config = config.model_copy(update={"datasets": datasets})
    _check_users_sample_memory(config, path)
    return config


def _check_users_sample_memory(config: ExperimentConfig, source: Path) -> None:
    """The sample-memory limit on users' datasets, once their paths are resolved: values per
    example from the files (a file that cannot be read yet is left to ingest and validation)."""
    from pmodel.datasets.user import values_per_example

    for name, ds in config.datasets.items():
        if not isinstance(ds, UserDataset):
            continue
        counted = values_per_example(ds.kind, ds.train, ds.schema_file)
        if counted is None:
            continue
        per_example, what = counted
        error = sample_memory_error(name, config.n_samples_for(name), per_example, f": {what}")
        if error:
            raise ConfigError(f"{source}: invalid experiment config\n  - {error}")


def find_experiment(name_or_path: str, experiments_dir: Path) -> Path:
    """``chapter1`` -> experiments/chapter1.yaml; a path is taken as it is."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.exists():
            raise ConfigError(f"experiment file {p} does not exist")
        return p
    candidate = experiments_dir / f"{name_or_path}.yaml"
    if not candidate.exists():
        known = sorted(q.stem for q in experiments_dir.glob("*.yaml"))
        raise ConfigError(f"no experiment {name_or_path!r} in {experiments_dir}; "
                          f"known: {', '.join(known) or 'none'}")
    return candidate
