"""pixels: the fashion avatars as 32x32 grayscale images (values 0..255).

Each fashion row is drawn with the Avataaars generator (``py-avataaars``,
through cairosvg) with every other option fixed, rendered at its native size
(280 x 280), composited on white, converted to grayscale (ITU-R 601 luma, as
Pillow's ``convert("L")``) and downsampled to 32 x 32 with Pillow's box
filter (each pixel is the mean of the area it covers). Rendering directly at
32 px would drop the masked fills: hair colour, clothing colour and glasses
would then change no pixel.

The render of a row depends only on its cell, so all 4032 cells are rendered
once and cached as one array; under ``NoHair`` the hair colour draws nothing,
so those cells share one render. Rendering them all takes minutes (about 45 ms
a render, 3552 distinct renders), so pmodel ships them (``avatars-32px.npz``
beside this module, 1 MB): at first use a few cells that show every category
of every column are rendered afresh and compared byte for byte with the
shipped ones, and only when one differs (a cairosvg or Pillow that draws
differently) is everything rendered here.
The set of these renders is the images' "land": P_data puts the probability
of each fashion cell on its render, and nothing anywhere else.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from concurrent.futures import ProcessPoolExecutor
from importlib import metadata
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from pmodel import paths
from pmodel.datasets import fashion

SIZE = 32
NATIVE_SIZE = 280

# fashion category -> py_avataaars enum member name, per column
AVATAAARS_NAMES = {
    "accessories_type": {"Blank": "DEFAULT", "Round": "ROUND", "Sunglasses": "SUNGLASSES"},
    "clothing_color": {"Black": "BLACK", "Blue01": "BLUE_01", "Gray01": "GRAY_01",
                       "PastelGreen": "PASTEL_GREEN", "PastelOrange": "PASTEL_ORANGE",
                       "Pink": "PINK", "Red": "RED", "White": "WHITE"},
    "clothing_type": {"Hoodie": "HOODIE", "Overall": "OVERALL",
                      "ShirtScoopNeck": "SHIRT_SCOOP_NECK", "ShirtVNeck": "SHIRT_V_NECK"},
    "hair_color": {"Black": "BLACK", "Blonde": "BLONDE", "Brown": "BROWN",
                   "PastelPink": "PASTEL_PINK", "Red": "RED", "SilverGray": "SILVER_GRAY"},
    "hair_type": {"NoHair": "NO_HAIR", "LongHairBun": "LONG_HAIR_BUN",
                  "LongHairCurly": "LONG_HAIR_CURLY", "LongHairStraight": "LONG_HAIR_STRAIGHT",
                  "ShortHairShortWaved": "SHORT_HAIR_SHORT_WAVED",
                  "ShortHairShortFlat": "SHORT_HAIR_SHORT_FLAT",
                  "ShortHairFrizzle": "SHORT_HAIR_FRIZZLE"},
}

# Everything that is not a fashion feature is held fixed.
FIXED_OPTIONS = {
    "style": "TRANSPARENT", "skin_color": "LIGHT", "facial_hair_type": "DEFAULT",
    "facial_hair_color": "BLACK", "hat_color": "BLACK", "mouth_type": "SMILE",
    "eye_type": "DEFAULT", "nose_type": "DEFAULT", "eyebrow_type": "DEFAULT",
    "clothe_graphic_type": "BAT",
}
RENDER_SETTINGS = {"size": SIZE, "background": "white", "grayscale": "PIL L",
                   "resample": "BOX", "fixed": FIXED_OPTIONS}
_NO_HAIR = fashion.HAIR_TYPE.index("NoHair")
_HAIR_COLOR_COL = fashion.COLUMNS.index("hair_color")
_HAIR_TYPE_COL = fashion.COLUMNS.index("hair_type")


def _avatar(row: dict[str, str]):
    import py_avataaars as pa

    enums = {"style": pa.AvatarStyle, "skin_color": pa.SkinColor,
             "facial_hair_type": pa.FacialHairType, "facial_hair_color": pa.HairColor,
             "hat_color": pa.Color, "mouth_type": pa.MouthType, "eye_type": pa.EyesType,
             "nose_type": pa.NoseType, "eyebrow_type": pa.EyebrowType,
             "clothe_graphic_type": pa.ClotheGraphicType}
    kwargs = {key: enums[key][value] for key, value in FIXED_OPTIONS.items()}
    names = {col: AVATAAARS_NAMES[col][row[col]] for col in fashion.COLUMNS}
    kwargs.update(
        accessories_type=pa.AccessoriesType[names["accessories_type"]],
        clothe_color=pa.Color[names["clothing_color"]],
        clothe_type=pa.ClotheType[names["clothing_type"]],
        hair_color=pa.HairColor[names["hair_color"]],
        top_type=pa.TopType[names["hair_type"]],
    )
    return pa.PyAvataaar(**kwargs)


def render_native(row: dict[str, str]) -> np.ndarray:
    """The avatar of one fashion row at native size on white, grayscale, (280, 280) uint8."""
    from PIL import Image

    rgba = Image.open(io.BytesIO(_avatar(row).render_png())).convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(white, rgba).convert("L"))


def render(row: dict[str, str]) -> np.ndarray:
    """The 32x32 grayscale image of one fashion row, (32, 32) uint8.

    Examples
    --------
    >>> img = render({"accessories_type": "Round", "clothing_color": "White",
    ...               "clothing_type": "Hoodie", "hair_color": "SilverGray",
    ...               "hair_type": "LongHairBun"})
    >>> img.shape, img.dtype
    ((32, 32), dtype('uint8'))
    """
    from PIL import Image

    native = Image.fromarray(render_native(row), mode="L")
    return np.asarray(native.resize((SIZE, SIZE), Image.Resampling.BOX), dtype=np.uint8)


def _render_cells(cells: np.ndarray) -> np.ndarray:
    rows = fashion.SCHEMA.from_codes(fashion.SCHEMA.cell_codes(cells)).to_dict("records")
    return np.stack([render(row) for row in rows])


# ---------------------------------------------------------------------------
# The cache of all renders
# ---------------------------------------------------------------------------

SHIPPED_PATH = Path(__file__).with_name("avatars-32px.npz")


def probe_cells() -> np.ndarray:
    """Eight cells that together show every category of every column (cell i
    takes category i mod n of each column; no column has more than 8)."""
    shape = fashion.SCHEMA.shape
    codes = np.array([[i % n for n in shape] for i in range(max(shape))])
    return fashion.SCHEMA.cell_index(codes)


def write_shipped_renders(renders: np.ndarray, path: Path = SHIPPED_PATH) -> Path:
    """Write the renders that pmodel ships: the distinct ones, compressed.

    For maintainers, after a change to the drawing:
    ``python -c "from pmodel.datasets import pixels; pixels.write_shipped_renders(pixels.render_all())"``
    """
    cells = np.unique(canonical_cells())
    np.savez_compressed(path, cells=cells, renders=renders[cells])
    return path


def shipped_renders(path: Path = SHIPPED_PATH) -> np.ndarray | None:
    """The shipped renders, (4032, 32, 32) uint8 in cell order, or None when absent."""
    if not path.exists():
        return None
    with np.load(path) as f:
        cells, distinct = f["cells"], f["renders"]
    images = np.zeros((fashion.SCHEMA.n_cells, SIZE, SIZE), dtype=np.uint8)
    images[cells] = distinct
    return images[canonical_cells()]


def _shipped_if_faithful(log=lambda msg: None) -> np.ndarray | None:
    """The shipped renders when fresh renders of :func:`probe_cells` equal them."""
    images = shipped_renders()
    if images is None:
        return None
    probe = probe_cells()
    if not np.array_equal(_render_cells(probe), images[probe]):
        log("the shipped avatar renders differ from this machine's (another cairosvg or "
            "Pillow?): rendering every avatar here")
        return None
    return images


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def render_key() -> str:
    """Digest of what a render depends on: generator versions (None: not installed, then the
    shipped renders are used as they are) and settings."""
    versions = {name: _version(name) for name in ("py-avataaars", "cairosvg", "pillow")}
    blob = json.dumps({"versions": versions, "settings": RENDER_SETTINGS,
                       "mapping": AVATAAARS_NAMES}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_path() -> Path:
    return paths.cache_dir() / f"avatars-{SIZE}px-{render_key()}.npy"


def canonical_cells() -> np.ndarray:
    """Cells whose renders are distinct by construction (NoHair ignores hair colour).

    Returns the cell index, for every cell, of the cell rendered in its place.
    """
    codes = fashion.SCHEMA.cell_codes(np.arange(fashion.SCHEMA.n_cells))
    bald = codes[:, _HAIR_TYPE_COL] == _NO_HAIR
    codes[bald, _HAIR_COLOR_COL] = 0
    return fashion.SCHEMA.cell_index(codes)


def render_all(*, n_jobs: int | None = None, progress: bool = True) -> np.ndarray:
    """Render every fashion cell: (4032, 32, 32) uint8, in cell order (no cache)."""
    from tqdm.auto import tqdm

    canonical = canonical_cells()
    todo = np.unique(canonical)
    n_jobs = n_jobs or os.cpu_count() or 1
    chunks = np.array_split(todo, max(1, len(todo) // 32))
    images = np.zeros((fashion.SCHEMA.n_cells, SIZE, SIZE), dtype=np.uint8)
    bar = tqdm(total=len(todo), desc="rendering avatars", unit="img", disable=not progress)
    if n_jobs == 1:
        for chunk in chunks:
            images[chunk] = _render_cells(chunk)
            bar.update(len(chunk))
    else:
        # spawn, not fork: the caller may hold threads (Prefect) or a 1 GB mask
        with ProcessPoolExecutor(n_jobs, mp_context=get_context("spawn")) as pool:
            for chunk, result in zip(chunks, pool.map(_render_cells, chunks)):
                images[chunk] = result
                bar.update(len(chunk))
    bar.close()
    return images[canonical]


def load_renders(*, progress: bool = True, n_jobs: int | None = None) -> np.ndarray:
    """All renders, (4032, 32, 32) uint8, from the cache; when missing, the
    shipped renders checked against fresh ones, or else all rendered here. On a machine
    without the renderer (py-avataaars, cairosvg: e.g. a GPU box that has only torch and
    the pure layer's needs), the shipped renders as they are."""
    if _version("py-avataaars") is None or _version("cairosvg") is None:
        images = shipped_renders()
        if images is None:
            raise RuntimeError("no avatar renders: py-avataaars and cairosvg are not installed and "
                               f"the shipped renders ({SHIPPED_PATH.name}) are missing")
        return images
    path = cache_path()
    if path.exists():
        return np.load(path)
    images = _shipped_if_faithful(log=print if progress else (lambda msg: None))
    if images is None:
        images = render_all(n_jobs=n_jobs, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, images)
    os.replace(tmp, path)  # atomic: a concurrent builder never sees half a file
    return images


def images_of(codes: np.ndarray, renders: np.ndarray) -> np.ndarray:
    """Images of fashion rows given as codes (n, 5): (n, 32, 32) uint8."""
    return renders[fashion.SCHEMA.cell_index(codes)]


# ---------------------------------------------------------------------------
# As a built-in dataset (see pmodel.datasets.registry)
# ---------------------------------------------------------------------------

def build(out: Path, *, rng: dict, sizes: dict, progress: bool = True, log=lambda m: None) -> None:
    """Write ``pixels-{train,heldout}/`` and their labels: the rows fashion draws
    from the same streams, as avatars."""
    import shutil

    from pmodel.datasets import images

    log("pixels: loading avatar renders (rendered once, then cached)")
    renders = load_renders(progress=progress)
    out = Path(out)
    for split, n in sizes.items():
        codes = fashion.sample_codes(n, rng=rng[split])
        folder = out / f"pixels-{split}"
        tmp = out / f".pixels-{split}.{os.getpid()}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        names = images.write_png_folder(images_of(codes, renders), tmp)
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)  # no stale PNGs from a bigger earlier build survive
        labels = fashion.SCHEMA.from_codes(codes)
        labels.insert(0, "file", names)
        fashion.write_csv(labels, out / f"pixels-{split}-labels.csv")


def build_key() -> dict:
    return {"avatar_render_key": render_key()}


def load(files: dict):
    from pmodel.datasets import images
    from pmodel.datasets.registry import Loaded
    from pmodel.families.domains import ImageDomain

    arrays, factors = {}, {}
    for split in ("train", "heldout"):
        folder = Path(files[split])
        names, arrays[split] = images.read_png_folder(folder)
        labels = folder.parent / f"pixels-{split}-labels.csv"
        if labels.exists():  # the five features of each avatar: its latent factors, as codes
            factors[split] = read_label_codes(labels, names).astype(np.float64)
    return Loaded(ImageDomain(SIZE, SIZE), arrays["train"], arrays["heldout"],
                  factors=factors if len(factors) == 2 else None,
                  factor_names=fashion.COLUMNS if len(factors) == 2 else (),
                  factor_categorical=(True,) * len(fashion.COLUMNS) if len(factors) == 2 else ())


def read_label_codes(path: Path, names: list[str]) -> np.ndarray:
    """The labels CSV's fashion rows as codes (n, 5), in the order of ``names``;
    ValueError naming the file and the first image without a row."""
    frame = fashion.read_csv(path)
    if "file" not in frame.columns:
        raise ValueError(f"{path}: no 'file' column")
    by_file = frame.set_index("file")
    absent = [n for n in names if n not in by_file.index]
    if absent:
        raise ValueError(f"{path}: no row for image {absent[0]} ({len(absent)} images lack one)")
    return fashion.SCHEMA.to_codes(by_file.loc[names, list(fashion.COLUMNS)].reset_index(drop=True))


def truth_from_renders(renders: np.ndarray):
    """P_data of the avatars: each fashion cell's probability on its render.

    Cells with the same render (hair colour under NoHair) pool their mass, so
    the images' distribution has one entry per distinct render.
    """
    from pmodel.truths import RenderTruth

    canonical = canonical_cells()
    p = fashion.probability_table().ravel()
    distinct, inverse = np.unique(canonical, return_inverse=True)
    probs = np.bincount(inverse, weights=p, minlength=len(distinct))
    return RenderTruth(images=renders[distinct], probs=probs)


def truth():
    return truth_from_renders(load_renders(progress=False))
