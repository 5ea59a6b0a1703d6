"""torch plumbing: thread count, seeds, concurrency slots, state dicts as numpy arrays.

Determinism is designed in:

- every module is built under one lock with ``torch.manual_seed`` (inside
  ``fork_rng``), the only use of torch's global generator in pmodel, so two fits
  running in threads of one process never draw from each other's stream;
- everything random after that (minibatch noise, dequantisation, sampling) takes
  an explicit ``torch.Generator`` seeded from the run's numpy generator;
- the intra-op thread count is fixed (``PMODEL_TORCH_THREADS``, default 1) and
  deterministic algorithms are requested.

Concurrency: torch's thread count is per process, and Prefect's thread runner
may start every fit at once. :func:`slot` lets at most ``PMODEL_TORCH_JOBS``
fits train at the same time in one process
(default: cores // threads, so 2 on a 2-core machine with 1 thread each); the
others wait, and their time budgets start when they get a slot.
"""

from __future__ import annotations

import contextlib
import os
import threading

import numpy as np
import torch

THREADS_ENV = "PMODEL_TORCH_THREADS"
JOBS_ENV = "PMODEL_TORCH_JOBS"

_BUILD_LOCK = threading.Lock()
_SLOTS_LOCK = threading.Lock()
_SLOTS: tuple[int, threading.BoundedSemaphore] | None = None


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number >= 1, got {raw!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be a whole number >= 1, got {raw!r}")
    return value


def n_threads() -> int:
    """torch's intra-op threads per fit: ``$PMODEL_TORCH_THREADS``, default 1."""
    return _env_int(THREADS_ENV, 1)


def n_jobs() -> int:
    """Heavy torch sections allowed at once in a process: ``$PMODEL_TORCH_JOBS``,
    default cores // threads (at least 1)."""
    return _env_int(JOBS_ENV, max(1, (os.cpu_count() or 1) // n_threads()))


def configure() -> None:
    """Fix torch's thread count and ask for deterministic algorithms (CPU only)."""
    torch.set_num_threads(n_threads())
    torch.use_deterministic_algorithms(True, warn_only=True)


@contextlib.contextmanager
def slot():
    """Hold one of the process's ``n_jobs()`` torch slots (see the module docstring)."""
    global _SLOTS
    jobs = n_jobs()
    with _SLOTS_LOCK:
        if _SLOTS is None or _SLOTS[0] != jobs:
            _SLOTS = (jobs, threading.BoundedSemaphore(jobs))
        sem = _SLOTS[1]
    with sem:
        configure()
        yield


@contextlib.contextmanager
def threads():
    """torch configured (thread count, determinism) for work that needs no slot: sampling
    and scoring run beside the fits, and wait for none of them."""
    configure()
    yield


def seed_from(rng: np.random.Generator) -> int:
    """A torch seed drawn from the run's numpy generator."""
    return int(rng.integers(0, 2**62))


def generator(seed: int) -> torch.Generator:
    """A CPU torch generator seeded with ``seed``."""
    g = torch.Generator()
    g.manual_seed(int(seed))
    return g


def build(factory, seed: int):
    """``factory()`` (a module constructor) with torch's global generator seeded at
    ``seed``, under a lock, the global state restored afterwards."""
    with _BUILD_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return factory()


def state_arrays(module: torch.nn.Module) -> dict[str, np.ndarray]:
    """The module's ``state_dict`` as numpy arrays (copies)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def load_arrays(module: torch.nn.Module, arrays: dict[str, np.ndarray]) -> None:
    """Inverse of :func:`state_arrays` (strict: every key must match)."""
    module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}, strict=True)


def n_parameters(module: torch.nn.Module) -> int:
    """Trainable parameters."""
    return int(sum(p.numel() for p in module.parameters() if p.requires_grad))


def batches(n: int, batch_size: int):
    """Slices of ``range(n)`` in order, ``batch_size`` at a time."""
    for i in range(0, n, batch_size):
        yield slice(i, min(n, i + batch_size))
