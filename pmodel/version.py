"""The code version that caches key on: a digest of the library's source."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from pmodel import __version__


@functools.cache
def code_version() -> str:
    """sha256 (16 hex) over pmodel's version and every ``.py`` file of the pmodel package.

    Any edit to the library invalidates cached fits, samples and scores.
    """
    root = Path(__file__).resolve().parent
    h = hashlib.sha256(__version__.encode())
    for p in sorted(root.rglob("*.py")):
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]
