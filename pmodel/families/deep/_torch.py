"""torch plumbing: devices, thread count, seeds, concurrency slots, state dicts as numpy arrays.

Devices (``device: auto | cpu | cuda | cuda:N | mps``, see :func:`resolve_device`):
a module is always built on the CPU from its seed, so its initial weights are the
same on every device, then moved to the training device. Each fit keeps its own
``torch.Generator`` on that device. On the CPU a seeded fit repeats bit for bit.
On CUDA, pmodel asks for deterministic algorithms (``torch.use_deterministic_algorithms``,
cuDNN's deterministic mode without benchmarking, ``CUBLAS_WORKSPACE_CONFIG=:4096:8``
when unset before CUDA starts), so a rerun on the same GPU, driver and torch
repeats too, except for the few CUDA kernels torch has no deterministic version
of (it warns then, it does not fail); the CPU and a GPU draw from different
random streams and round differently, so their numbers differ. bf16 autocast
(``precision: bf16``, or ``auto`` on a CUDA device that supports it) changes
only the training's forward passes: exact likelihoods and bounds are computed
in float32.

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
DEVICE_ENV = "PMODEL_DEVICE"
#: what a device setting may say (checked where the config loads, and again here)
DEVICE_PATTERN = r"auto|cpu|cuda(:[0-9]+)?|mps"

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
    """Fix torch's thread count and ask for deterministic algorithms (CPU and CUDA)."""
    torch.set_num_threads(n_threads())
    # cuBLAS is deterministic only with a fixed workspace, which it reads when CUDA starts
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(setting: str = "auto") -> torch.device:
    """The torch device a setting names: ``auto`` (``$PMODEL_DEVICE`` when set, else CUDA when
    torch sees a GPU, then MPS, else the CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

    A device this machine lacks is an error that says what it has.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    import re

    setting = (setting or "auto").strip()
    if setting == "auto":
        setting = os.environ.get(DEVICE_ENV, "").strip() or "auto"
        source = f"${DEVICE_ENV}" if setting != "auto" else "device"
    else:
        source = "device"
    if re.fullmatch(DEVICE_PATTERN, setting) is None:
        raise ValueError(f"{source} must be one of auto, cpu, cuda, cuda:N, mps; got {setting!r}")
    if setting == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps_available() else "cpu")
    if setting.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"{source} {setting!r}: torch sees no CUDA GPU on this machine "
                             f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}); "
                             "use device: auto or cpu")
        index = int(setting.split(":")[1]) if ":" in setting else 0
        if index >= torch.cuda.device_count():
            raise ValueError(f"{source} {setting!r}: this machine has {torch.cuda.device_count()} "
                             f"CUDA device(s), cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
        return torch.device(setting)
    if setting == "mps" and not _mps_available():
        raise ValueError(f"{source} 'mps': torch sees no Apple GPU (MPS) on this machine; use auto or cpu")
    return torch.device(setting)


def load_device(setting: str = "auto") -> torch.device:
    """Where a saved model runs when it is loaded: its device setting when this machine has
    it, else the CPU (a model trained on a GPU loads and samples on a CPU-only machine)."""
    try:
        return resolve_device(setting)
    except ValueError:
        return torch.device("cpu")


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype of training's forward passes: bf16 when asked for (or ``auto`` on a
    CUDA device with bf16), None for float32. bf16 on a device without it is an error."""
    if precision == "fp32":
        return None
    bf16_ok = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if precision == "bf16":
        if device.type == "cpu" or bf16_ok:
            return torch.bfloat16
        raise ValueError(f"precision 'bf16': the device {device} does not support bfloat16; use fp32")
    return torch.bfloat16 if bf16_ok else None


def describe_device(device: torch.device) -> dict[str, str]:
    """What a run records of where it trained: the device, its name, torch's and CUDA's versions."""
    out = {"device": str(device), "torch_version": torch.__version__}
    if device.type == "cuda":
        out["device_name"] = torch.cuda.get_device_name(device)
        out["cuda_version"] = str(torch.version.cuda)
    elif device.type == "mps":
        out["device_name"] = "Apple MPS"
    else:
        out["device_name"] = "cpu"
    return out


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


def generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator on ``device`` seeded with ``seed``."""
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


def randn(*shape: int, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal noise drawn from ``generator``, on the generator's device."""
    return torch.randn(*shape, generator=generator, dtype=dtype, device=generator.device)


def numpy(x: torch.Tensor) -> np.ndarray:
    """A tensor on any device as a numpy array (bf16 as float32)."""
    x = x.detach()
    if x.dtype == torch.bfloat16:
        x = x.float()
    return x.cpu().numpy()


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
    """Inverse of :func:`state_arrays` (strict: every key must match); the arrays are copied
    onto the module's device."""
    module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}, strict=True)


def n_parameters(module: torch.nn.Module) -> int:
    """Trainable parameters."""
    return int(sum(p.numel() for p in module.parameters() if p.requires_grad))


def batches(n: int, batch_size: int):
    """Slices of ``range(n)`` in order, ``batch_size`` at a time."""
    for i in range(0, n, batch_size):
        yield slice(i, min(n, i + batch_size))
