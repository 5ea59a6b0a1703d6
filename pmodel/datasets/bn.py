"""bn: published Bayesian networks as built-in datasets, with an exact P_data.

    P_data(x) = prod_j p(x_j | x_pa(j))      (the network's own tables)

A network is declared in an experiment as ``{builtin: bn, network: alarm}`` (one that pmodel
ships, :data:`SHIPPED`) or ``{builtin: bn, bif: my-network.bif}`` (a BIF file of your own,
plain or gzipped). Its training and held-out rows are forward-sampled from the experiment's
seed (ancestral sampling over the tables, numpy, vectorised per column: same seed, same
rows) and written as CSVs of the states' names, one column per variable in the file's order.
The probability of any row is exact: a product of table entries.

The networks come from the bnlearn repository (https://www.bnlearn.com/bnrepository/); pmodel
ships the few it names as BIF files (``pmodel/datasets/networks/``, 24 KB in all, sources in
its README) rather than downloading them at run time: pgmpy, which reads them, stopped
shipping them in version 1.1 and now fetches them from the network.

What is exact and what is estimated (``pmodel.truths.NetworkTruth``):

- the probability of a row: always exact;
- the entropy and KL(P_data || P_model): exact sums over every joint state when there are at
  most :data:`ENUMERATION_LIMIT` (asia: 256 states; sachs: 177,147), otherwise Monte-Carlo
  estimates with their standard errors, recorded under their own names (``*_estimate``,
  ``*_estimate_se``);
- the network's skeleton (its arcs, undirected): exact, so structure learners are scored on
  the edges they recover.

Registry names: a network's dataset is registered as ``bn-<network>`` (``bn-alarm``), or for a
file ``bn-<file stem>-<first 12 hex digits of its sha256>``; the file's bytes are kept under
``.cache/networks/`` so that any process of the run (a Dask worker) can read the same network.

pgmpy reads the BIF files (imported only here, when a network is first read; it brings
torch and scikit-learn, about 3 s).
"""

from __future__ import annotations

import gzip
import hashlib
import re
import threading
import warnings
from dataclasses import dataclass
from math import log10, prod
from pathlib import Path

import numpy as np

from pmodel.datasets.schema import CategoricalSchema
from pmodel.families import _cpt

NETWORKS_DIR = Path(__file__).with_name("networks")

#: The networks pmodel ships: name -> what it is (variables, arcs, joint states, source).
SHIPPED: dict[str, str] = {
    "asia": "8 variables, 8 arcs, 256 joint states: lung disease and a visit to Asia "
            "(Lauritzen and Spiegelhalter 1988)",
    "cancer": "5 variables, 4 arcs, 32 states: lung cancer (Korb and Nicholson 2010)",
    "earthquake": "5 variables, 4 arcs, 32 states: a burglar alarm (Korb and Nicholson 2010)",
    "survey": "6 variables, 6 arcs, 144 states: choice of transport (Scutari and Denis 2014)",
    "sachs": "11 variables, 17 arcs, 177,147 states: protein signalling (Sachs et al. 2005)",
    "child": "20 variables, 25 arcs, 10^9 states: congenital heart disease in newborns "
             "(Spiegelhalter and Cowell 1992)",
    "insurance": "27 variables, 52 arcs, 10^13.4 states: car insurance risk (Binder et al. 1997)",
    "alarm": "37 variables, 46 arcs, 10^16.2 states: patient monitoring in intensive care "
             "(Beinlich et al. 1989)",
    "hailfinder": "56 variables, 66 arcs, 10^32.1 states: severe weather forecasting "
                  "(Abramson et al. 1996)",
    "win95pts": "76 variables, 112 arcs, 10^22.9 states: printer troubleshooting in Windows 95 "
                "(Microsoft Research)",
}

#: Joint states up to which entropy and KL are exact sums over every state (else Monte Carlo).
ENUMERATION_LIMIT = 10**7
#: Rows per chunk when summing over every joint state.
ENUMERATION_CHUNK = 1 << 18
#: Random streams of the training and held-out rows (numpy entropy ``[seed, stream]``).
STREAMS = {"train": 21, "heldout": 22}
#: Changes when the rows a seed gives change (a build made by another sampler is rebuilt).
SAMPLER_VERSION = 1
#: Registry names are ``PREFIX-...``.
PREFIX = "bn"


# ---------------------------------------------------------------------------
# A network: its columns, parents and tables
# ---------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Network:
    """A discrete Bayesian network as arrays.

    Attributes
    ----------
    name : str
        The shipped name (``alarm``) or the file's stem.
    schema : CategoricalSchema
        One column per variable, in the file's order, with its states in the file's order.
    parents : tuple of tuple of int
        ``parents[j]``: the columns of variable j's parents, in its table's order.
    log_cpts : tuple of ndarray
        ``log_cpts[j][c, k] = log p(x_j = k | parents in configuration c)`` (see
        ``pmodel.families._cpt``); -inf where the table has a 0.
    order : ndarray (d,)
        A topological order (parents first).
    source : str
        Where it was read from.
    sha256 : str
        Digest of the file's bytes as read.
    """

    name: str
    schema: CategoricalSchema
    parents: tuple[tuple[int, ...], ...]
    log_cpts: tuple[np.ndarray, ...]
    order: np.ndarray
    source: str
    sha256: str

    @property
    def shape(self) -> tuple[int, ...]:
        return self.schema.shape

    @property
    def n_states(self) -> int:
        """Joint states, prod_j K_j (a Python int: 10^32 for hailfinder)."""
        return prod(self.shape)

    @property
    def log10_n_states(self) -> float:
        return float(sum(log10(k) for k in self.shape))

    @property
    def enumerable(self) -> bool:
        """Whether sums over every joint state are done (at most :data:`ENUMERATION_LIMIT`)."""
        return self.n_states <= ENUMERATION_LIMIT

    @property
    def arcs(self) -> np.ndarray:
        """(n_arcs, 2) int64 rows (parent, child), column indices."""
        return _cpt.edges(self.parents)

    @property
    def skeleton(self) -> set[frozenset[int]]:
        """The arcs without their direction, as pairs of column indices."""
        return {frozenset(map(int, a)) for a in self.arcs}

    def log_prob(self, X) -> np.ndarray:
        """Exact log P_data of each row, (n,) float64, nats; -inf for codes outside the
        domain and for rows the network gives probability 0.

        Parameters
        ----------
        X : array-like (n, d) of int codes, in the schema's column and state order.
        """
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != len(self.shape):
            raise ValueError(f"network {self.name!r}: expected codes of shape (n, {len(self.shape)}), "
                             f"got {X.shape}")
        inside = ((X >= 0) & (X < np.asarray(self.shape))).all(axis=1)
        Xs = np.where(inside[:, None], X, 0).astype(np.int64)
        return np.where(inside, _cpt.log_prob(Xs, self.parents, self.log_cpts, self.shape), -np.inf)

    def sample_codes(self, n_samples: int, *, rng: np.random.Generator) -> np.ndarray:
        """Forward (ancestral) samples, (n_samples, d) int64: each variable given its parents,
        in topological order, by inverse CDF (one uniform per row and variable)."""
        return _cpt.sample(int(n_samples), self.parents, self.log_cpts, self.order, rng)

    def all_states(self, chunk: int = ENUMERATION_CHUNK):
        """Every joint state, in C order of the joint table, as chunks of (m, d) int64 codes.

        Raises ValueError past :data:`ENUMERATION_LIMIT` states (use Monte Carlo instead).
        """
        if not self.enumerable:
            raise ValueError(f"network {self.name!r} has 10^{self.log10_n_states:.1f} joint states, "
                             f"too many to enumerate (limit {ENUMERATION_LIMIT:.0e})")
        n = self.n_states
        for start in range(0, n, chunk):
            index = np.arange(start, min(start + chunk, n))
            yield np.stack(np.unravel_index(index, self.shape), axis=1).astype(np.int64)

    def entropy(self) -> float:
        """H(P_data) in nats, exact: ``-sum_x p(x) log p(x)`` over every joint state."""
        from pmodel.scores.truth import entropy_by_chunks

        return entropy_by_chunks(self.log_prob(X) for X in self.all_states())


# ---------------------------------------------------------------------------
# Reading BIF files (with pgmpy)
# ---------------------------------------------------------------------------

#: how far a table's column may sum from 1 before the file is refused (files round their numbers)
SUM_TOLERANCE = 1e-3


def read_bif(data: bytes, *, source: str, name: str) -> Network:
    """A network from the bytes of a BIF file (gzipped or plain).

    Each table is renormalised to sum to 1 exactly (files round their entries; pgmpy's own
    check allows 0.01); a column off by more than :data:`SUM_TOLERANCE`, a negative entry, no
    variable, or a variable without a table is an error naming ``source`` and the variable.
    """
    sha = hashlib.sha256(data).hexdigest()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise ValueError(f"{source}: not a readable gzip file ({exc})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{source}: not UTF-8 text at byte {exc.start} (a BIF file is text)") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgmpy.readwrite import BIFReader

        try:
            reader = BIFReader(string=text)
            model = reader.get_model() if reader.variable_names else None
        except Exception as exc:  # pgmpy's parser raises many kinds
            raise ValueError(f"{source}: not a readable BIF network ({type(exc).__name__}: {exc})") from None
    variables = list(reader.variable_names)
    if not variables:
        raise ValueError(f"{source}: no 'variable' block: not a BIF network")
    index = {v: j for j, v in enumerate(variables)}
    columns = tuple((v, tuple(str(s) for s in reader.variable_states[v])) for v in variables)
    try:
        schema = CategoricalSchema(columns)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None
    parents, log_cpts = [], []
    for v in variables:
        cpd = model.get_cpds(v)
        if cpd is None:
            raise ValueError(f"{source}: variable {v!r} has no 'probability' block (table)")
        evidence = list(cpd.variables[1:])
        for var in [v, *evidence]:
            if list(map(str, cpd.state_names[var])) != list(schema.categories[index[var]]):
                raise ValueError(f"{source}: the table of {v!r} lists the states of {var!r} in "
                                 "another order than its declaration")
        values = np.asarray(cpd.get_values(), dtype=np.float64)  # (K, configs), C order of evidence
        if (values < 0).any() or not np.isfinite(values).all():
            raise ValueError(f"{source}: the table of {v!r} has a negative or non-finite entry")
        sums = values.sum(axis=0)
        worst = int(np.argmax(np.abs(sums - 1.0)))
        if abs(sums[worst] - 1.0) > SUM_TOLERANCE:
            raise ValueError(f"{source}: the table of {v!r} sums to {sums[worst]:.6g} in its parent "
                             f"configuration {worst}, not 1")
        with np.errstate(divide="ignore"):
            log_cpts.append(np.log(values / sums).T.copy())  # (configs, K)
        parents.append(tuple(index[e] for e in evidence))
    return Network(name=name, schema=schema, parents=tuple(parents), log_cpts=tuple(log_cpts),
                   order=_cpt.topological_order(parents), source=source, sha256=sha)


# ---------------------------------------------------------------------------
# Which network a registry name means
# ---------------------------------------------------------------------------

_LOCK = threading.Lock()
_NETWORKS: dict[str, Network] = {}
_FILES: dict[str, tuple[str, bytes]] = {}  # sha256[:12] -> (path, bytes) of the files named in this process


def shipped_networks() -> list[str]:
    return list(SHIPPED)


def store_dir() -> Path:
    """Where the bytes of users' BIF files are kept, by digest: ``<root>/.cache/networks``."""
    from pmodel import paths

    return paths.project_root() / ".cache" / "networks"


def _slug(path: Path) -> str:
    stem = path.name
    for suffix in (".gz", ".bif"):
        stem = stem.removesuffix(suffix)
    return re.sub(r"[^A-Za-z0-9_]+", "_", stem)[:40] or "network"


def dataset_name(*, builtin: str = PREFIX, network: str | None = None, bif=None,
                 base_dir: Path | None = None) -> str:
    """The registry name of ``{builtin: bn, network: NAME}`` or ``{builtin: bn, bif: PATH}``.

    ``bif`` is read now (a relative path from ``base_dir``, the experiment file's folder); its
    bytes are kept for the rest of the run. ValueError names the key and what is allowed.
    """
    if (network is None) == (bif is None):
        raise ValueError("a 'bn' dataset names exactly one of 'network' (one pmodel ships: "
                         f"{', '.join(SHIPPED)}) or 'bif' (the path of a BIF file)")
    if network is not None:
        if network not in SHIPPED:
            raise ValueError(f"network: unknown network {network!r}; pmodel ships "
                             f"{', '.join(SHIPPED)} (or give a BIF file: bif: PATH)")
        name = f"{PREFIX}-{network}"
    else:
        path = Path(bif).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ValueError(f"bif: cannot read {path} ({exc.strerror or exc})") from None
        digest = hashlib.sha256(data).hexdigest()[:12]
        name = f"{PREFIX}-{_slug(path)}-{digest}"
        with _LOCK:
            _FILES[digest] = (str(path), data)
        _keep(digest, data)
    if builtin not in (PREFIX, name):
        raise ValueError(f"'network' and 'bif' go with builtin: {PREFIX}, not builtin: {builtin}")
    return name


def _keep(digest: str, data: bytes) -> None:
    """The file's bytes under :func:`store_dir`, for other processes (best effort: this
    process has them anyway)."""
    from pmodel.paths import atomic_write

    target = store_dir() / f"{digest}.bif"
    try:
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(target, lambda f: f.write(data))
    except OSError:
        pass


def network_of(name: str) -> Network:
    """The network of registry name ``bn-...`` (read once per process)."""
    with _LOCK:
        if name in _NETWORKS:
            return _NETWORKS[name]
    rest = name.removeprefix(f"{PREFIX}-")
    if rest in SHIPPED:
        path = NETWORKS_DIR / f"{rest}.bif.gz"
        network = read_bif(path.read_bytes(), source=str(path), name=rest)
    else:
        match = re.fullmatch(r"(.+)-([0-9a-f]{12})", rest)
        if not name.startswith(f"{PREFIX}-") or match is None:
            raise ValueError(f"unknown network dataset {name!r}: pmodel ships "
                             f"{', '.join(f'{PREFIX}-{n}' for n in SHIPPED)}, and a BIF file of "
                             f"your own is declared as {{builtin: {PREFIX}, bif: PATH}}")
        digest = match.group(2)
        with _LOCK:
            source, data = _FILES.get(digest, (None, None))
        if data is None:
            stored = store_dir() / f"{digest}.bif"
            try:
                source, data = str(stored), stored.read_bytes()
            except OSError:
                raise ValueError(f"network dataset {name!r}: its BIF file is not known to this "
                                 f"process and not kept in {store_dir()}; declare it in the "
                                 f"experiment as {{builtin: {PREFIX}, bif: PATH}}") from None
        network = read_bif(data, source=source, name=match.group(1))
    with _LOCK:
        return _NETWORKS.setdefault(name, network)


# ---------------------------------------------------------------------------
# As built-in datasets (see pmodel.datasets.registry)
# ---------------------------------------------------------------------------

def dataset_spec(name: str):
    """The registry entry of network dataset ``name`` (``bn-alarm``, ``bn-mynet-0123456789ab``):
    its files ``<name>-{train,heldout}.csv``, build, loader, truth and validation."""
    from pmodel.datasets import fashion
    from pmodel.datasets.registry import DatasetSpec, Loaded, Validation
    from pmodel.families.domains import CategoricalDomain

    network = network_of(name)
    schema = network.schema

    def build(out: Path, *, rng: dict, sizes: dict, progress: bool = True, log=lambda m: None) -> None:
        """Write ``<name>-{train,heldout}.csv``: rows forward-sampled from the network."""
        log(f"{name}: sampling {' + '.join(str(n) for n in sizes.values())} rows from the network")
        for split, n in sizes.items():
            fashion.write_csv(schema.from_codes(network.sample_codes(n, rng=rng[split])),
                              Path(out) / f"{name}-{split}.csv")

    def load(files: dict) -> Loaded:
        """The two CSVs as codes on the network's schema (states read as written)."""
        train, heldout = (schema.to_codes(fashion.read_csv(files[s])) for s in ("train", "heldout"))
        return Loaded(CategoricalDomain(schema.shape), train, heldout, schema=schema)

    def truth():
        from pmodel.truths import NetworkTruth

        return NetworkTruth(network)

    def build_key() -> dict:
        return {"network": network.name, "sha256": network.sha256, "sampler": SAMPLER_VERSION}

    what = SHIPPED.get(network.name) if name == f"{PREFIX}-{network.name}" else None
    return DatasetSpec(
        name=name, kind="categorical",
        description=(f"the {network.name} Bayesian network: {what}" if what else
                     f"the Bayesian network of {network.source}: {len(schema.names)} variables, "
                     f"{len(network.arcs)} arcs, 10^{network.log10_n_states:.1f} states"),
        files={"train": f"{name}-train.csv", "heldout": f"{name}-heldout.csv"},
        streams=dict(STREAMS), build=build, load=load, truth=truth, build_key=build_key,
        validation=Validation("categorical-csv", schema=schema),
        values_per_example=len(schema.names))
