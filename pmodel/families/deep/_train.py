"""The one training loop of the deep families.

The modules know their loss and nothing about epochs; this loop owns the rest
for every family, the GAN's two players included: a validation split carved
from the training data with the fit's rng, shuffled minibatches, one Adam per
player, the learning-rate schedule, gradient clipping, a budget of epochs and
optimizer steps, early stopping on the validation loss with the best weights
restored, ``history_`` (per-epoch lists), a check that every loss is finite,
and a tqdm bar on stderr (shown when stderr is a terminal). A family gives its
objective: one loss (most), or its players (:class:`Player`, the GAN's
discriminator then generator).

Budgets are work, not time: ``epochs`` and ``max_steps`` (optimizer steps,
0 for no limit) end a fit the same way on any machine. ``seconds`` is only a
safety cap: a fit it stops says so (``stopped_by = "seconds"``, recorded as
``stopped_by_seconds = 1`` and flagged on the leaderboard), since how far it got
then depends on the machine's speed and load.

Determinism: with the same data, hyperparameters, rng and device the weights
are identical (bit for bit on the CPU; see ``_torch`` for CUDA), unless the
seconds cap stops training.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from pmodel.families.base import Hyper
from pmodel.families.deep import _torch

#: the budget, optimiser and device hyperparameters every deep family declares
TRAINING_HYPERPARAMETERS = {
    "epochs": Hyper(int, 50, ge=1, le=100_000, doc="the most passes over the training data"),
    "max_steps": Hyper(int, 0, ge=0, le=100_000_000,
                       doc="the most optimizer steps (minibatches), 0 for no limit: with epochs, the budget"),
    "seconds": Hyper(float, 3600.0, gt=0.0, le=86_400.0,
                     doc="a safety cap on the training loop's wall-clock time, not a budget: a fit it stops "
                         "is flagged (stopped_by_seconds = 1), its weights depend on the machine's speed"),
    "batch_size": Hyper(int, 128, ge=1, le=65_536, doc="examples per gradient step"),
    "lr": Hyper(float, 1e-3, gt=0.0, le=1.0, doc="Adam's learning rate"),
    "grad_clip": Hyper(float, 10.0, ge=0.0, le=1e9,
                       doc="the largest gradient norm of a step (larger ones are scaled down), 0 for no clipping"),
    "patience": Hyper(int, 10, ge=0, le=100_000,
                      doc="epochs without a better validation loss before stopping (0: never stop early)"),
    "val_fraction": Hyper(float, 0.1, ge=0.0, le=0.5,
                          doc="share of the training data held out for early stopping (0: none)"),
    "lr_schedule": Hyper(str, "plateau", choices=("plateau", "cosine", "constant"),
                         doc="plateau: halve the rate every patience // 3 epochs without a better "
                             "validation loss; cosine: lr * (1 + cos(pi * epoch / epochs)) / 2 per epoch, "
                             "down to 0 at the epochs budget (by epoch count, so seeded fits repeat); "
                             "constant: lr throughout"),
    "device": Hyper(str, "auto", pattern=_torch.DEVICE_PATTERN,
                    doc="where to train: auto ($PMODEL_DEVICE, else a CUDA GPU, else MPS, else the CPU), "
                        "cpu, cuda, cuda:N or mps"),
    "precision": Hyper(str, "auto", choices=("auto", "fp32", "bf16"),
                       doc="training's forward passes: bf16 autocast, or fp32 (auto: bf16 for image families "
                           "on a CUDA GPU with bf16, else fp32); likelihoods are always computed in float32"),
}


class TrainingError(FloatingPointError):
    """A loss that is NaN or infinite: the fit stops and names where."""


@dataclass
class Budget:
    epochs: int
    max_steps: int = 0
    seconds: float = 3600.0
    batch_size: int = 128
    lr: float = 1e-3
    grad_clip: float = 10.0
    patience: int = 0            # a family that declares no patience or validation share has
    val_fraction: float = 0.0    # no validation split and no early stopping (the GAN)
    lr_schedule: str = "plateau"
    device: str = "auto"
    precision: str = "auto"

    @classmethod
    def of(cls, family) -> "Budget":
        return cls(**{k: getattr(family, k) for k in TRAINING_HYPERPARAMETERS if hasattr(family, k)})


@dataclass
class Player:
    """One optimised part of a model: its parameters, its loss ``(module, batch, g, shared) ->
    scalar`` (``shared`` is a dict the batch's players share, e.g. the GAN's fakes) and Adam's
    betas. Players step in order, each on its own Adam."""

    name: str
    parameters: list
    loss: Callable
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class Trained:
    """What a fit's loop did: per-epoch curves and which budget ended it."""

    history: dict[str, list[float]] = field(default_factory=dict)
    stopped_by: str = "epochs"   # "epochs" | "steps" | "early_stopping" | "seconds"
    epochs: int = 0
    steps: int = 0
    best_epoch: int = -1
    seconds: float = 0.0


def split(n: int, val_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation), the validation share carved with ``rng``;
    no validation set below 10 examples."""
    perm = rng.permutation(n)
    n_val = int(round(val_fraction * n)) if n >= 10 else 0
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _finite(value: torch.Tensor, name: str, epoch: int, step: int, desc: str) -> float:
    v = float(value.detach())
    if not math.isfinite(v):
        raise TrainingError(f"{desc}: the training loss {name} is {v} at epoch {epoch + 1}, step {step} "
                            "(of the whole fit); training stopped. Try a smaller lr, a smaller grad_clip "
                            "or another seed")
    return v


def train(module: torch.nn.Module, X: torch.Tensor, *, rng: np.random.Generator, budget: Budget,
          loss: Callable[[torch.nn.Module, torch.Tensor, torch.Generator], torch.Tensor] | None = None,
          players: list[Player] | None = None,
          val_loss: Callable[[torch.nn.Module, torch.Tensor, torch.Generator], torch.Tensor] | None = None,
          on_epoch: Callable[[int], None] | None = None,
          after_epoch: Callable[[int, dict[str, list[float]]], None] | None = None,
          desc: str = "fit") -> Trained:
    """Train ``module`` on the rows of ``X``; the best weights (by validation loss) are kept.

    Parameters
    ----------
    module : the model, on its training device; left in eval mode with its best weights.
    X : (n, ...) tensor of training examples, on the module's device.
    rng : the fit's numpy generator (split, batch order, torch seed).
    budget : epochs, steps, the seconds cap, batch size, learning rate, clipping, patience,
        validation share, schedule, device and precision.
    loss : ``(module, batch, generator) -> scalar`` to minimise with Adam over all parameters
        (its mean over an epoch's batches is ``history["loss"]``).
    players : instead of ``loss``, the parts optimised in turn (the GAN's two players); each
        player's name becomes a history curve.
    val_loss : ``(module, X_val, generator) -> scalar`` (default ``loss``); evaluated with a
        generator reseeded identically every epoch, so epochs compare on the same noise.
    on_epoch : called with the epoch's number before it starts (a schedule, e.g. KL warm-up).
    after_epoch : called with the epoch's number and the history so far (per-epoch curves,
        ``val_loss`` included) after the epoch ends and its weights are evaluated (e.g. a sample
        grid for the UI, or a sweep's pruner); it must draw on its own generators. An exception
        it raises (``pmodel.errors.StopTraining``) ends training and propagates.
    """
    t0 = time.perf_counter()
    if (loss is None) == (players is None):
        raise TypeError("train needs exactly one of loss or players")
    device = X.device
    idx_train, idx_val = split(len(X), budget.val_fraction, rng)
    X_train, X_val = X[torch.from_numpy(idx_train).to(device)], X[torch.from_numpy(idx_val).to(device)]
    g = _torch.generator(_torch.seed_from(rng), device)
    val_seed = _torch.seed_from(rng)
    if players is None:
        players = [Player("loss", list(module.parameters()), lambda m, b, gen, shared: loss(m, b, gen))]
        val_loss = val_loss or loss
    use_val = len(X_val) > 0 and val_loss is not None
    opts = [torch.optim.Adam(p.parameters, lr=budget.lr, betas=p.betas) for p in players]
    cast = _torch.autocast_dtype(device, budget.precision)
    out = Trained()
    best, best_state, bad = math.inf, None, 0

    def forward():
        if cast is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=cast)

    from tqdm.auto import tqdm

    bar = tqdm(total=budget.epochs, desc=desc, file=sys.stderr, disable=None, leave=False, unit="epoch")
    try:
        for epoch in range(budget.epochs):
            if on_epoch is not None:
                on_epoch(epoch)
            if budget.lr_schedule == "cosine":
                for opt in opts:
                    for group in opt.param_groups:
                        group["lr"] = budget.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / budget.epochs))
            module.train()
            sums: dict[str, float] = {}
            seen = 0
            order = rng.permutation(len(X_train))
            out_of_time = out_of_steps = False
            for sl in _torch.batches(len(order), budget.batch_size):
                batch = X_train[torch.from_numpy(order[sl]).to(device)]
                shared: dict = {}
                for player, opt in zip(players, opts):
                    with forward():
                        value = player.loss(module, batch, g, shared)
                    v = _finite(value, player.name, epoch, out.steps + 1, desc)
                    opt.zero_grad(set_to_none=True)
                    value.backward()
                    if budget.grad_clip:
                        torch.nn.utils.clip_grad_norm_(player.parameters, budget.grad_clip)
                    opt.step()
                    sums[player.name] = sums.get(player.name, 0.0) + v * len(batch)
                out.steps += 1
                seen += len(batch)
                if budget.max_steps and out.steps >= budget.max_steps:
                    out_of_steps = True
                    break
                if time.perf_counter() - t0 > budget.seconds:
                    out_of_time = True
                    break
            for k, v in sums.items():
                out.history.setdefault(k, []).append(v / max(seen, 1))
            out.epochs = epoch + 1
            postfix = {k: f"{v[-1]:.4g}" for k, v in out.history.items()}
            if use_val:
                module.eval()
                with torch.no_grad():
                    v = float(_mean_in_batches(val_loss, module, X_val, _torch.generator(val_seed, device),
                                               budget.batch_size))
                if not math.isfinite(v):
                    raise TrainingError(f"{desc}: the validation loss is {v} after epoch {epoch + 1}, "
                                        f"step {out.steps}; training stopped. Try a smaller lr or grad_clip")
                out.history.setdefault("val_loss", []).append(v)
                postfix["val"] = f"{v:.4g}"
                if v < best:
                    best, bad, out.best_epoch = v, 0, epoch
                    best_state = {k: t.detach().clone() for k, t in module.state_dict().items()}
                else:
                    bad += 1
                    # on a plateau, halve the learning rate (every patience // 3 epochs without
                    # a better validation loss), as Keras's ReduceLROnPlateau
                    if (budget.lr_schedule == "plateau" and budget.patience >= 3
                            and bad % (budget.patience // 3) == 0):
                        for opt in opts:
                            for group in opt.param_groups:
                                group["lr"] *= 0.5
            if after_epoch is not None:
                module.eval()
                after_epoch(epoch, out.history)
            bar.update(1)
            bar.set_postfix(postfix)
            if out_of_time:
                out.stopped_by = "seconds"
                break
            if out_of_steps:
                out.stopped_by = "steps"
                break
            if use_val and budget.patience > 0 and bad >= budget.patience:
                out.stopped_by = "early_stopping"
                break
    finally:
        bar.close()
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    out.seconds = time.perf_counter() - t0
    return out


def _mean_in_batches(fn, module, X, g, batch_size) -> float:
    total = 0.0
    for sl in _torch.batches(len(X), max(batch_size, 256)):
        total += float(fn(module, X[sl], g)) * (sl.stop - sl.start)
    return total / len(X)
