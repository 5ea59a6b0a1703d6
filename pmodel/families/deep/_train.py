"""The one training loop of the deep families.

The modules know their loss and nothing about epochs; this loop owns the rest:
a validation split carved from the training data with the fit's rng, shuffled
minibatches, Adam (or a family's own step, for the GAN's two players), a budget
in epochs and in wall-clock seconds, early stopping on the validation loss with
the best weights restored, ``history_`` (per-epoch lists) and a tqdm bar on
stderr (shown when stderr is a terminal).

Determinism: with the same data, hyperparameters and rng the weights are
identical, unless the seconds budget stops training (then how far it got depends
on the machine's speed: ``stopped_by`` says which budget ended the fit).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from pmodel.families.base import Hyper
from pmodel.families.deep import _torch

#: the budget and optimiser hyperparameters every deep family declares
TRAINING_HYPERPARAMETERS = {
    "epochs": Hyper(int, 50, ge=1, le=100_000, doc="the most passes over the training data"),
    "seconds": Hyper(float, 120.0, gt=0.0, le=86_400.0,
                     doc="wall-clock budget of the training loop; it stops after the batch that passes it"),
    "batch_size": Hyper(int, 128, ge=1, le=65_536, doc="examples per gradient step"),
    "lr": Hyper(float, 1e-3, gt=0.0, le=1.0, doc="Adam's learning rate"),
    "patience": Hyper(int, 10, ge=0, le=100_000,
                      doc="epochs without a better validation loss before stopping (0: never stop early)"),
    "val_fraction": Hyper(float, 0.1, ge=0.0, le=0.5,
                          doc="share of the training data held out for early stopping (0: none)"),
    "lr_schedule": Hyper(str, "plateau", choices=("plateau", "cosine"),
                         doc="plateau: halve the rate every patience // 3 epochs without a better "
                             "validation loss; cosine: lr * (1 + cos(pi * epoch / epochs)) / 2 per epoch, "
                             "down to 0 at the epochs budget (by epoch count, so seeded fits repeat)"),
}


@dataclass
class Budget:
    epochs: int
    seconds: float
    batch_size: int
    lr: float
    patience: int
    val_fraction: float
    lr_schedule: str = "plateau"
    clip_norm: float = 10.0

    @classmethod
    def of(cls, family) -> "Budget":
        return cls(*(getattr(family, k) for k in TRAINING_HYPERPARAMETERS))


@dataclass
class Trained:
    """What a fit's loop did: per-epoch curves and which budget ended it."""

    history: dict[str, list[float]] = field(default_factory=dict)
    stopped_by: str = "epochs"   # "epochs" | "early_stopping" | "seconds"
    epochs: int = 0
    best_epoch: int = -1
    seconds: float = 0.0


def split(n: int, val_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation), the validation share carved with ``rng``;
    no validation set below 10 examples."""
    perm = rng.permutation(n)
    n_val = int(round(val_fraction * n)) if n >= 10 else 0
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def train(module: torch.nn.Module, X: torch.Tensor, *, rng: np.random.Generator, budget: Budget,
          loss: Callable[[torch.nn.Module, torch.Tensor, torch.Generator], torch.Tensor] | None = None,
          step: Callable[[torch.Tensor, torch.Generator], dict[str, float]] | None = None,
          val_loss: Callable[[torch.nn.Module, torch.Tensor, torch.Generator], torch.Tensor] | None = None,
          on_epoch: Callable[[int], None] | None = None, desc: str = "fit") -> Trained:
    """Train ``module`` on the rows of ``X``; the best weights (by validation loss) are kept.

    Parameters
    ----------
    module : the model; left in eval mode with its best weights.
    X : (n, ...) tensor of training examples.
    rng : the fit's numpy generator (split, batch order, torch seed).
    budget : epochs, seconds, batch size, learning rate, patience, validation share.
    loss : ``(module, batch, generator) -> scalar`` to minimise with Adam
        (its mean over an epoch's batches is ``history["loss"]``).
    step : instead of ``loss``, a family's own update ``(batch, generator) -> {name: value}``
        (the GAN's two optimisers); each name becomes a history curve.
    val_loss : ``(module, X_val, generator) -> scalar`` (default ``loss``); evaluated with a
        generator reseeded identically every epoch, so epochs compare on the same noise.
    on_epoch : called with the epoch's number before it starts (a schedule, e.g. KL warm-up).
    """
    t0 = time.perf_counter()
    idx_train, idx_val = split(len(X), budget.val_fraction, rng)
    X_train, X_val = X[idx_train], X[idx_val]
    g = _torch.generator(_torch.seed_from(rng))
    val_seed = _torch.seed_from(rng)
    val_loss = val_loss or loss
    use_val = len(X_val) > 0 and val_loss is not None
    opt = torch.optim.Adam(module.parameters(), lr=budget.lr) if step is None else None
    out = Trained()
    best, best_state, bad = math.inf, None, 0

    from tqdm.auto import tqdm

    bar = tqdm(total=budget.epochs, desc=desc, file=sys.stderr, disable=None, leave=False, unit="epoch")
    try:
        for epoch in range(budget.epochs):
            if on_epoch is not None:
                on_epoch(epoch)
            if opt is not None and budget.lr_schedule == "cosine":
                for group in opt.param_groups:
                    group["lr"] = budget.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / budget.epochs))
            module.train()
            sums: dict[str, float] = {}
            seen = 0
            order = rng.permutation(len(X_train))
            out_of_time = False
            for sl in _torch.batches(len(order), budget.batch_size):
                batch = X_train[torch.from_numpy(order[sl])]
                if step is not None:
                    figures = step(batch, g)
                else:
                    value = loss(module, batch, g)
                    opt.zero_grad(set_to_none=True)
                    value.backward()
                    if budget.clip_norm:
                        torch.nn.utils.clip_grad_norm_(module.parameters(), budget.clip_norm)
                    opt.step()
                    figures = {"loss": float(value.detach())}
                for k, v in figures.items():
                    sums[k] = sums.get(k, 0.0) + v * len(batch)
                seen += len(batch)
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
                    v = float(_mean_in_batches(val_loss, module, X_val, _torch.generator(val_seed),
                                               budget.batch_size))
                out.history.setdefault("val_loss", []).append(v)
                postfix["val"] = f"{v:.4g}"
                if v < best:
                    best, bad, out.best_epoch = v, 0, epoch
                    best_state = {k: t.detach().clone() for k, t in module.state_dict().items()}
                else:
                    bad += 1
                    # on a plateau, halve the learning rate (every patience // 3 epochs without
                    # a better validation loss), as Keras's ReduceLROnPlateau
                    if (opt is not None and budget.lr_schedule == "plateau" and budget.patience >= 3
                            and bad % (budget.patience // 3) == 0):
                        for group in opt.param_groups:
                            group["lr"] *= 0.5
            bar.update(1)
            bar.set_postfix(postfix)
            if out_of_time:
                out.stopped_by = "seconds"
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
