"""Code versions that caches key on: digests of the source that computes a result."""

from __future__ import annotations

import functools
import hashlib
import inspect
from pathlib import Path

from pmodel import __version__


@functools.cache
def code_version() -> str:
    """sha256 (16 hex) over pmodel's version and every ``.py`` file of the ``pmodel``
    and ``tasks`` packages (the library, and the steps that call it).

    Any edit to them invalidates cached fits, samples and scores.
    """
    root = Path(__file__).resolve().parent
    h = hashlib.sha256(__version__.encode())
    for package in (root, root.parent / "tasks"):
        for p in sorted(package.rglob("*.py")):
            h.update(p.relative_to(root.parent).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


@functools.cache
def _file_digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def source_version(obj) -> str:
    """Digest of the file that defines ``obj`` (a class or function), so a family or
    dataset defined outside the library (a plug-in, a test file) keys caches too."""
    path = inspect.getsourcefile(obj)
    return _file_digest(path) if path else "unknown"
