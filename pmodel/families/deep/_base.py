"""DeepFamily: a family whose model is a torch module trained by the shared loop.

A subclass says how to turn the training data into a tensor (``_prepare``),
which module to build from which config dataclass (``_config``, ``_module``),
and the loss (``_loss``); fitting, saving and loading are here. A checkpoint is
the ``state_dict`` as plain numpy arrays plus the config dataclass as JSON
(through the contract's ``model.json`` + ``arrays.npz``), never a pickle.

Per-kind helpers:

- points: inputs standardised, ``z = (x - shift) / scale``, so the density per
  deg^2 is ``log p(x) = log p_z(z) - sum_j log scale_j`` (the Jacobian counted).
  A model's density lives on R^2 while the domain is a lon/lat rectangle, so
  pmodel renormalises it to the rectangle: ``p_R(x) = p(x) / Z`` inside,
  0 outside, ``Z = P(x in R)``; sampling rejects draws outside (the same p_R).
  ``Z`` is computed by midpoint quadrature on a 400 x 400 grid for exact
  densities, and estimated from 20,000 samples for the others (then the bound
  is shifted by the estimate's log). ``mass_outside_ = 1 - Z`` is kept.
- images: naive Bayes per-pixel log-marginals to start a model at what the
  simple model already knows; padding to a multiple of 4 for conv nets.
- categorical: one-hot rows.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import ClassVar

import numpy as np
import torch

from pmodel.errors import StopTraining
from pmodel.families.base import Family
from pmodel.families.deep import _torch, _train

QUADRATURE_N = 400        # grid points per axis for Z of an exact density on the rectangle
MASS_SAMPLES = 20_000     # samples for Z of a bound or an implicit model
PROGRESS_SEED = 20261204  # the pictures drawn while training: a stream of their own
#: Rejection sampling on the rectangle: at most this many draws a round, and it gives up once
#: that many have been drawn with less than MIN_ACCEPTANCE of them inside (a model with almost
#: no mass there, e.g. a diffusion model after too few epochs, would otherwise draw millions of
#: points a round, each through every denoising step).
MAX_DRAWS_PER_ROUND = 200_000
MIN_ACCEPTANCE = 1e-3


class DeepFamily(Family):
    """Base of the torch families. Learned: ``config_`` (dataclass), ``module_``
    (the torch module), ``history_``, ``stopped_by_``, ``epochs_``, ``train_seconds_``."""

    taxonomy: ClassVar[str] = ""
    dtype: ClassVar[torch.dtype] = torch.float32
    hyperparameters = dict(_train.TRAINING_HYPERPARAMETERS)
    reports_epochs = True

    # -- what a subclass writes ------------------------------------------
    @abstractmethod
    def _prepare(self, X: np.ndarray) -> torch.Tensor:
        """The training tensor (learns any standardisation)."""

    @abstractmethod
    def _config(self, X: np.ndarray):
        """The module's config dataclass (saved as JSON with the weights)."""

    @abstractmethod
    def _module(self, config) -> torch.nn.Module:
        """The torch module a config describes."""

    def _loss(self, module, batch: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return module.loss(batch, g)

    def _init_from_data(self, X: np.ndarray) -> None:
        """After the module is built, before training (e.g. naive Bayes logits)."""

    def _val_loss(self, module, batch: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return self._loss(module, batch, g)

    def _on_epoch(self, epoch: int) -> None:
        """Before each epoch (a schedule)."""

    def _players(self, module) -> list[_train.Player] | None:
        """The parts optimised in turn, for a family with more than one objective (the GAN);
        None: one Adam on ``_loss`` over every parameter."""
        return None

    def _train(self, data: torch.Tensor, rng: np.random.Generator) -> _train.Trained:
        players = self._players(self.module_)
        budget = _train.Budget.of(self)
        if budget.precision == "auto" and self.kind != "image":
            # small MLPs and zuko's splines gain little from bf16 and lose accuracy: fp32
            budget.precision = "fp32"
        return _train.train(self.module_, data, rng=rng, budget=budget,
                            loss=None if players else self._loss, players=players,
                            val_loss=None if players else self._val_loss, on_epoch=self._on_epoch,
                            after_epoch=self._after_epoch, desc=f"{self.name} ({self.kind})")

    def watch(self, callback, *, pictures: int = 6, n_samples: int = 16) -> "DeepFamily":
        """Pictures while training (images and points): ``pictures`` times, evenly over the epochs the
        budget allows, ``callback(epoch, samples)`` gets ``n_samples`` draws, (n_samples,
        *event_shape). The draws use a generator of their own, seeded by the epoch, so a
        watched fit and an unwatched one end with the same weights. Not saved with the model."""
        self._watch = (callback, int(pictures), int(n_samples))
        return self

    def _watch_every(self, n_train: int) -> int:
        """Epochs between two pictures: the epochs the budget allows (``epochs``, or fewer
        when ``max_steps`` ends training first) over the number of pictures."""
        _, pictures, _ = getattr(self, "_watch", (None, 0, 0))
        b = _train.Budget.of(self)
        n_fit = n_train - (int(round(b.val_fraction * n_train)) if n_train >= 10 else 0)
        planned = b.epochs
        if b.max_steps:
            planned = min(planned, -(-b.max_steps // -(-max(n_fit, 1) // b.batch_size)))
        return max(1, -(-planned // max(pictures, 1)))

    def _after_epoch(self, epoch: int, history: dict[str, list[float]]) -> None:
        callback, pictures, n = getattr(self, "_watch", (None, 0, 0))
        if callback is not None and pictures >= 1 and self.kind in ("image", "points") \
                and not (epoch + 1) % self._every:
            callback(epoch + 1, self._progress_sample(n, np.random.default_rng([PROGRESS_SEED, epoch])))
        if self._report is not None:  # last: it may stop the fit (StopTraining)
            self._report(epoch + 1, {k: list(v) for k, v in history.items()})

    def _after_fit(self, X: np.ndarray, rng: np.random.Generator) -> None:
        """After training (e.g. the rectangle's mass)."""

    def _progress_sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Samples for a picture while training (the model as it is after an epoch)."""
        return self.sample(n, rng=rng)

    # -- fit ---------------------------------------------------------------
    def fit(self, X, *, rng: np.random.Generator | None = None, after_epoch=None):
        """Train on ``X`` on the ``device`` setting's device (see ``_torch.resolve_device``).

        ``after_epoch(epoch, history)``, when given, is called after each epoch (from 1) with
        the per-epoch curves so far (``history["val_loss"]`` where there is a validation
        split); raising :class:`pmodel.errors.StopTraining` ends the fit there, unfitted (a
        sweep's pruner). It only reads: a reported fit ends with the same weights."""
        X = self._check_train(X)
        rng = rng if rng is not None else np.random.default_rng(0)
        self._report = after_epoch
        with _torch.slot():
            device = _torch.resolve_device(self.device)
            data = self._prepare(X).to(device)
            self.config_ = self._config(X)
            # built on the CPU from the seed (the same first weights on every device), then moved
            self.module_ = _torch.build(lambda: self._module(self.config_).to(self.dtype),
                                        _torch.seed_from(rng)).to(device)
            self.n_parameters_ = _torch.n_parameters(self.module_)
            self._init_from_data(X)
            self._every = self._watch_every(len(X))
            try:
                trained = self._train(data, rng)
            except StopTraining:  # stopped by the caller: not a fitted model
                for attr in ("n_parameters_", "module_", "config_"):
                    self.__dict__.pop(attr, None)
                raise
            finally:
                self._report = None
            self.history_ = trained.history
            self.stopped_by_, self.epochs_ = trained.stopped_by, trained.epochs
            self.steps_, self.train_seconds_ = trained.steps, trained.seconds
            self.device_info_ = _torch.describe_device(device)
            self._after_fit(X, rng)
        return self

    @property
    def device_(self) -> torch.device:
        """The device the module is on now (where it trained, or where it was loaded)."""
        self._check_fitted()
        return next(self.module_.parameters()).device

    # -- saving ------------------------------------------------------------
    def _state(self):
        state = super()._state()
        state.pop("_watch", None)
        state.pop("_every", None)
        state.pop("_report", None)
        state["module_"] = _torch.state_arrays(state["module_"])
        state["history_"] = {k: np.asarray(v, dtype=np.float64) for k, v in self.history_.items()}
        return state

    def _set_state(self, state):
        weights = state.pop("module_")
        history = state.pop("history_", {})
        super()._set_state(state)
        self.history_ = {k: [float(x) for x in v] for k, v in history.items()}
        # on the device setting's device when this machine has it, else the CPU
        self.module_ = _torch.build(lambda: self._module(self.config_).to(self.dtype), 0).to(
            _torch.load_device(self.device))
        _torch.load_arrays(self.module_, weights)
        self.module_.eval()

    # -- helpers -------------------------------------------------------------
    def _tensor(self, X) -> torch.Tensor:
        """``X`` as a tensor of the family's dtype (on the CPU; see :meth:`_in_batches`)."""
        return torch.as_tensor(np.asarray(X), dtype=self.dtype)

    def _in_batches(self, fn, X: torch.Tensor, batch_size: int = 512) -> np.ndarray:
        """``fn`` over rows of ``X`` in batches on the module's device, without gradients and in
        the module's own dtype (float32 at least: no autocast), as float64 numpy."""
        out = []
        device = self.device_
        with torch.no_grad():
            for sl in _torch.batches(len(X), batch_size):
                out.append(_torch.numpy(fn(X[sl].to(device))).astype(np.float64))
        return np.concatenate(out) if out else np.zeros((0,))

    def _batched_in_support(self, X: np.ndarray, fn, inputs, batch_size: int) -> np.ndarray:
        """``fn`` (a log-probability or a bound, nats, on the tensor ``inputs`` makes) over the
        examples of ``X`` inside the domain's support, in batches; -inf for the others."""
        return self._log_prob_in_support(
            X, lambda inside: self._in_batches(fn, inputs(inside), batch_size))

    def _draw_in_batches(self, n: int, batch_size: int, draw, rng: np.random.Generator) -> np.ndarray:
        """``draw(m, g)`` (a tensor of m examples) in batches, without gradients, on the run's
        torch threads, with one generator seeded from ``rng``: the examples as numpy
        (float zeros of the event's shape when ``n`` is 0)."""
        g = _torch.generator(_torch.seed_from(rng), self.device_)
        out = []
        with _torch.threads(), torch.no_grad():
            for sl in _torch.batches(n, batch_size):
                out.append(_torch.numpy(draw(sl.stop - sl.start, g)))
        return np.concatenate(out) if out else np.zeros((0, *self.domain.event_shape))


# ---------------------------------------------------------------------------
# points: standardised coordinates, a density renormalised to the rectangle
# ---------------------------------------------------------------------------

class PointsDeep(DeepFamily):
    """Points on the domain's rectangle. Subclasses give ``_log_prob_z`` (exact or a
    bound, on standardised coordinates; None for implicit models) and ``_draw_z``."""

    dtype = torch.float32  # twice as fast as float64; log-densities to ~1e-6 relative
    #: how Z = P(x in rectangle) is found: "quadrature" (exact densities) or "samples"
    mass_by: ClassVar[str] = "quadrature"

    def _prepare(self, X):
        self.shift_ = X.mean(axis=0)
        self.scale_ = np.maximum(X.std(axis=0), 1e-6)
        return self._tensor((X - self.shift_) / self.scale_)

    def _log_prob_z(self, Z: torch.Tensor) -> torch.Tensor:
        """log p(z) of standardised points, for a family with an exact density (a flow). The
        others give ``log_prob`` their own bound (``log_prob_z=``: a VAE's ELBO, the diffusion
        bound) or have no likelihood (a GAN), so reaching this is refused, on purpose."""
        raise NotImplementedError(f"{type(self).__name__} has no exact density of z: its log_prob "
                                  "passes its own bound, or it has no likelihood")

    @abstractmethod
    def _draw_z(self, n: int, g: torch.Generator) -> torch.Tensor:
        """n draws of standardised points from the model (a torch tensor (n, 2))."""

    def _log_density_r2(self, X: np.ndarray, log_prob_z=None) -> np.ndarray:
        """log p(x) per deg^2 on the whole plane: ``log p_z(z) - sum log scale``."""
        Z = self._tensor((X - self.shift_) / self.scale_)
        return self._in_batches(log_prob_z or self._log_prob_z, Z, 8192) - np.log(self.scale_).sum()

    def _draw_r2(self, n: int, g: torch.Generator) -> np.ndarray:
        with torch.no_grad():
            z = _torch.numpy(self._draw_z(n, g)).astype(np.float64)
        return z * self.scale_ + self.shift_

    def _progress_sample(self, n, rng):
        # while training the rectangle's mass is not known yet: draws on the plane, those
        # outside the rectangle dropped (the same p_R as sample, up to how many are kept)
        x = self._draw_r2(n, _torch.generator(_torch.seed_from(rng), self.device_))
        return x[self.domain.in_support(x)]

    def _after_fit(self, X, rng):
        d = self.domain
        if self.mass_by == "quadrature":
            # midpoint rule: Z = sum_cells p(centre) * cell area
            n = QUADRATURE_N
            lon = d.lon_min + (np.arange(n) + 0.5) * (d.lon_max - d.lon_min) / n
            lat = d.lat_min + (np.arange(n) + 0.5) * (d.lat_max - d.lat_min) / n
            grid = np.stack(np.meshgrid(lon, lat), axis=-1).reshape(-1, 2)
            lp = self._log_density_r2(grid) + math.log(d.area / n**2)
            log_mass = float(np.logaddexp.reduce(lp))
        else:
            x = self._draw_r2(MASS_SAMPLES, _torch.generator(_torch.seed_from(rng), self.device_))
            inside = max(int(d.in_support(x).sum()), 1)
            log_mass = math.log(inside / MASS_SAMPLES)
        self.log_mass_ = min(log_mass, 0.0) if self.mass_by == "samples" else log_mass
        self.mass_outside_ = float(1.0 - math.exp(self.log_mass_))

    def log_prob(self, X, *, log_prob_z=None) -> np.ndarray:
        """log p_R(x) per deg^2: the model's density renormalised to the rectangle;
        -inf outside it."""
        self._check_fitted()
        return self._log_prob_in_support(
            self.domain.check(X), lambda x: self._log_density_r2(x, log_prob_z) - self.log_mass_)

    def sample(self, n_samples: int, *, rng: np.random.Generator) -> np.ndarray:
        """n draws from p_R: draws from the model, those outside the rectangle rejected."""
        self._check_fitted()
        n = self._check_n(n_samples)
        g = _torch.generator(_torch.seed_from(rng), self.device_)
        rate = max(math.exp(self.log_mass_), MIN_ACCEPTANCE)
        kept, total, tries, drawn = [], 0, 0, 0
        while total < n:
            m = min(int(1.2 * (n - total) / rate) + 64, MAX_DRAWS_PER_ROUND)
            x = self._draw_r2(m, g)
            x = x[self.domain.in_support(x)]
            kept.append(x)
            total, drawn, tries = total + len(x), drawn + m, tries + 1
            too_rare = drawn >= MAX_DRAWS_PER_ROUND and total < MIN_ACCEPTANCE * drawn
            if total < n and (tries >= 50 or too_rare):
                raise RuntimeError(
                    f"{self.name}: only {total} of {drawn:,} draws ({total / drawn:.2g}) fell in the "
                    f"domain {self.domain}, {n} were asked for; the model puts almost no mass there "
                    f"(undertrained?), so it cannot be sampled by rejection")
        return np.concatenate(kept)[:n] if n else np.zeros((0, 2))


# ---------------------------------------------------------------------------
# images and categorical rows
# ---------------------------------------------------------------------------

def naive_bayes_logits(X: np.ndarray, levels: int, alpha: float = 1.0) -> np.ndarray:
    """Per-pixel log-marginals with additive smoothing, (n_pixels, levels):
    ``log (count + alpha) / (N + alpha * levels)`` (naive Bayes's parameters)."""
    flat = X.reshape(len(X), -1).astype(np.int64)
    counts = np.stack([np.bincount(col, minlength=levels) for col in flat.T]).astype(np.float64)
    return np.log(counts + alpha) - np.log(len(X) + alpha * levels)


def column_logits(X: np.ndarray, shape: tuple[int, ...], alpha: float = 1.0) -> list[np.ndarray]:
    """Each column's smoothed log-marginals (naive Bayes on categorical rows)."""
    return [np.log(np.bincount(X[:, j], minlength=k) + alpha) - np.log(len(X) + alpha * k)
            for j, k in enumerate(shape)]


def padded(size: int, multiple: int = 4) -> int:
    """The next multiple of ``multiple`` at least ``size`` (conv nets halve twice)."""
    return max(multiple, -(-size // multiple) * multiple)


def one_hot(X: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """(n, n_features) codes -> (n, sum(shape)) concatenated one-hot vectors."""
    return torch.cat([torch.nn.functional.one_hot(X[:, j], k) for j, k in enumerate(shape)],
                     dim=1).to(torch.float64)


def to_pixels(x: np.ndarray, levels: int) -> np.ndarray:
    """Continuous outputs in level units rounded to the nearest level, clipped, uint8 when
    levels <= 256 (images from continuous models are floats: this is where they are rounded)."""
    x = np.clip(np.rint(x), 0, levels - 1)
    return x.astype(np.uint8 if levels <= 256 else np.int64)
