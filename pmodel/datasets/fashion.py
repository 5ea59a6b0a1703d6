"""fashion: the chapter's table of avatar features, and its exact P_data.

Five categorical columns (3 * 8 * 4 * 6 * 7 = 4032 cells). P_data is a small
Bayesian network, a tree rooted at ``hair_type``::

    hair_type -> hair_color -> accessories_type
    hair_type -> clothing_type -> clothing_color

    P(a, cc, ct, hc, ht) = P(ht) P(hc | ht) P(a | hc) P(ct | ht) P(cc | ct)

so the columns really depend on each other (naive Bayes, which assumes they
don't, is visibly wrong), while the joint spreads over enough of the 4032
cells that 50 rows leave most of them unseen. As in the chapter, it prefers
White clothes and SilverGray hair. The conditional tables below are the whole
truth: :func:`probability_table` multiplies them into the exact probability of
every cell, so entropy and KL against P_data need no sampling.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from pandas.api.types import union_categoricals

from pmodel.datasets.schema import CategoricalSchema

ACCESSORIES_TYPE = ("Blank", "Round", "Sunglasses")
CLOTHING_COLOR = ("Black", "Blue01", "Gray01", "PastelGreen", "PastelOrange", "Pink", "Red",
                  "White")
CLOTHING_TYPE = ("Hoodie", "Overall", "ShirtScoopNeck", "ShirtVNeck")
HAIR_COLOR = ("Black", "Blonde", "Brown", "PastelPink", "Red", "SilverGray")
HAIR_TYPE = ("NoHair", "LongHairBun", "LongHairCurly", "LongHairStraight",
             "ShortHairShortWaved", "ShortHairShortFlat", "ShortHairFrizzle")

SCHEMA = CategoricalSchema((
    ("accessories_type", ACCESSORIES_TYPE),
    ("clothing_color", CLOTHING_COLOR),
    ("clothing_type", CLOTHING_TYPE),
    ("hair_color", HAIR_COLOR),
    ("hair_type", HAIR_TYPE),
))
COLUMNS = tuple(SCHEMA.names)

# ---------------------------------------------------------------------------
# The network's conditional probability tables (rows: parent value, in order).
# ---------------------------------------------------------------------------

#: P(hair_type)
P_HAIR_TYPE = np.array([0.08, 0.12, 0.14, 0.20, 0.14, 0.18, 0.14])

#: P(hair_color | hair_type); columns Black, Blonde, Brown, PastelPink, Red, SilverGray
P_HAIR_COLOR_GIVEN_HAIR_TYPE = np.array([
    [0.25, 0.10, 0.20, 0.05, 0.05, 0.35],  # NoHair (colour is drawn but not visible)
    [0.10, 0.15, 0.10, 0.20, 0.10, 0.35],  # LongHairBun
    [0.15, 0.10, 0.15, 0.15, 0.15, 0.30],  # LongHairCurly
    [0.10, 0.20, 0.10, 0.15, 0.10, 0.35],  # LongHairStraight
    [0.20, 0.10, 0.20, 0.05, 0.10, 0.35],  # ShortHairShortWaved
    [0.25, 0.10, 0.20, 0.05, 0.05, 0.35],  # ShortHairShortFlat
    [0.15, 0.10, 0.10, 0.10, 0.25, 0.30],  # ShortHairFrizzle
])

#: P(accessories_type | hair_color); columns Blank, Round, Sunglasses
P_ACCESSORIES_GIVEN_HAIR_COLOR = np.array([
    [0.60, 0.15, 0.25],  # Black
    [0.50, 0.10, 0.40],  # Blonde
    [0.60, 0.25, 0.15],  # Brown
    [0.40, 0.10, 0.50],  # PastelPink
    [0.55, 0.20, 0.25],  # Red
    [0.35, 0.55, 0.10],  # SilverGray: round glasses
])

#: P(clothing_type | hair_type); columns Hoodie, Overall, ShirtScoopNeck, ShirtVNeck
P_CLOTHING_TYPE_GIVEN_HAIR_TYPE = np.array([
    [0.40, 0.10, 0.10, 0.40],  # NoHair
    [0.15, 0.30, 0.40, 0.15],  # LongHairBun
    [0.20, 0.25, 0.35, 0.20],  # LongHairCurly
    [0.15, 0.25, 0.45, 0.15],  # LongHairStraight
    [0.35, 0.10, 0.15, 0.40],  # ShortHairShortWaved
    [0.40, 0.10, 0.10, 0.40],  # ShortHairShortFlat
    [0.45, 0.15, 0.15, 0.25],  # ShortHairFrizzle
])

#: P(clothing_color | clothing_type); columns as CLOTHING_COLOR
P_CLOTHING_COLOR_GIVEN_CLOTHING_TYPE = np.array([
    [0.15, 0.10, 0.20, 0.05, 0.05, 0.05, 0.10, 0.30],  # Hoodie
    [0.10, 0.30, 0.05, 0.10, 0.10, 0.05, 0.05, 0.25],  # Overall
    [0.05, 0.05, 0.05, 0.15, 0.15, 0.15, 0.10, 0.30],  # ShirtScoopNeck
    [0.15, 0.10, 0.10, 0.05, 0.05, 0.05, 0.15, 0.35],  # ShirtVNeck
])

CONDITIONAL_TABLES = {
    "P(hair_type)": P_HAIR_TYPE,
    "P(hair_color | hair_type)": P_HAIR_COLOR_GIVEN_HAIR_TYPE,
    "P(accessories_type | hair_color)": P_ACCESSORIES_GIVEN_HAIR_COLOR,
    "P(clothing_type | hair_type)": P_CLOTHING_TYPE_GIVEN_HAIR_TYPE,
    "P(clothing_color | clothing_type)": P_CLOTHING_COLOR_GIVEN_CLOTHING_TYPE,
}


# ---------------------------------------------------------------------------
# Exact P_data
# ---------------------------------------------------------------------------

def probability_table() -> np.ndarray:
    """Exact P_data over all cells.

    Returns
    -------
    p : ndarray of shape (3, 8, 4, 6, 7), float64
        ``p[a, cc, ct, hc, ht]`` in the column and category order of
        :data:`SCHEMA`; sums to 1.
    """
    # a: accessories, x: clothing colour, c: clothing type, h: hair colour, t: hair type
    return np.einsum("t,th,ha,tc,cx->axcht",
                     P_HAIR_TYPE, P_HAIR_COLOR_GIVEN_HAIR_TYPE, P_ACCESSORIES_GIVEN_HAIR_COLOR,
                     P_CLOTHING_TYPE_GIVEN_HAIR_TYPE, P_CLOTHING_COLOR_GIVEN_CLOTHING_TYPE)


def log_prob(codes: np.ndarray) -> np.ndarray:
    """Exact log P_data of each row, in nats.

    Parameters
    ----------
    codes : ndarray of shape (n_samples, 5), int
        Integer codes as produced by ``SCHEMA.to_codes``.

    Returns
    -------
    ndarray of shape (n_samples,), float64
    """
    return np.log(probability_table().ravel()[SCHEMA.cell_index(codes)])


def entropy() -> float:
    """Exact entropy H(P_data) in nats (sum over the 4032 cells)."""
    p = probability_table().ravel()
    return float(-(p * np.log(p)).sum())


def sample_codes(n_samples: int, *, rng: np.random.Generator) -> np.ndarray:
    """Draw rows from P_data as integer codes, shape (n_samples, 5), int64."""
    p = probability_table().ravel()
    cells = rng.choice(p.size, size=n_samples, p=p)
    return SCHEMA.cell_codes(cells)


def sample(n_samples: int, *, rng: np.random.Generator) -> pd.DataFrame:
    """Draw rows from P_data as a frame of category strings (the CSV's form).

    Examples
    --------
    >>> import numpy as np
    >>> sample(2, rng=np.random.default_rng(0)).columns.tolist()[:2]
    ['accessories_type', 'clothing_color']
    """
    return SCHEMA.from_codes(sample_codes(n_samples, rng=rng))


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------

#: Rows read at a time when a CSV is loaded as Categoricals, so the strings of
#: only one chunk are in memory at once.
CATEGORICAL_CHUNK_ROWS = 1_000_000

_CSV_OPTIONS = dict(dtype="string", skip_blank_lines=False, keep_default_na=False, na_values=[""])


def read_csv(path: Path | str, *, categorical: bool = False, chunksize: int | None = None):
    """Read a categorical CSV as strings, exactly as written (no type guessing).

    ``TRUE`` stays the label ``TRUE`` (not a boolean), ``01`` and ``1`` stay two
    labels (not the integer 1), ``NA`` is a label; only an empty cell is missing
    (``<NA>``). A UTF-8 byte order mark is dropped from the first column's name;
    CRLF line ends and quoted fields (``"a, b"``, doubled quotes inside) are
    read as CSV defines them. Blank lines are kept as rows of missing values so that row
    numbers match the file's lines (data row ``i`` is line ``i + 2``).
    ``categorical=True`` reads each column as a pandas Categorical of the same
    strings (missing: NaN), a small code a value instead of a string: for big
    files. With ``chunksize``, an iterator of frames of that many rows (index
    continued from chunk to chunk).
    """
    if not categorical:
        return pd.read_csv(path, chunksize=chunksize, **_CSV_OPTIONS)
    if chunksize is not None:
        return (_as_categories(df) for df in pd.read_csv(path, chunksize=chunksize, **_CSV_OPTIONS))
    # pandas' dtype="category" would infer the categories' type (TRUE -> True,
    # 01 -> 1): read strings a chunk at a time, then make categories of them
    with pd.read_csv(path, chunksize=CATEGORICAL_CHUNK_ROWS, **_CSV_OPTIONS) as reader:
        chunks = [_as_categories(df) for df in reader]
    if len(chunks) == 1:
        return chunks[0]
    return pd.DataFrame({c: union_categoricals([df[c] for df in chunks]) for c in chunks[0].columns})


def _as_categories(df: pd.DataFrame) -> pd.DataFrame:
    return df.astype("category")


def write_csv(df: pd.DataFrame, path: Path | str) -> None:
    """Write rows as a CSV with a header, columns in the frame's order."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False, lineterminator="\n")


# ---------------------------------------------------------------------------
# As a built-in dataset (see pmodel.datasets.registry)
# ---------------------------------------------------------------------------

def build(out: Path, *, rng: dict, sizes: dict, progress: bool = True, log=lambda m: None) -> None:
    """Write ``fashion-{train,heldout}.csv``: rows drawn from P_data."""
    log(f"fashion: sampling {' + '.join(str(n) for n in sizes.values())} rows from P_data")
    for split, n in sizes.items():
        write_csv(SCHEMA.from_codes(sample_codes(n, rng=rng[split])), Path(out) / f"fashion-{split}.csv")


def load(files: dict):
    """The two CSVs as codes on the fashion schema's domain."""
    from pmodel.datasets.registry import Loaded
    from pmodel.families.domains import CategoricalDomain

    train, heldout = (SCHEMA.to_codes(read_csv(files[s])) for s in ("train", "heldout"))
    return Loaded(CategoricalDomain(SCHEMA.shape), train, heldout, schema=SCHEMA)


def truth():
    """P_data over all 4032 cells, exact."""
    from pmodel.truths import TableTruth

    return TableTruth(probability_table().ravel())
