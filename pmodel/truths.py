"""Truths: what pmodel knows exactly of a built-in dataset's P_data.

One class per kind of exact knowledge, each with the entropy of P_data, the
exact KL(P_data || P_model) of a model, and the sample scores only it can give:

==============  ==========================================  ==================================
class           knowledge                                   sample scores
==============  ==========================================  ==================================
TableTruth      a probability for every cell of a table     -
RenderTruth     a finite set of valid images, with probs    valid_rate, n_valid_combinations,
                                                            valid_novel_rate, near_render_rate,
                                                            near_render_rate_16,
                                                            median_render_distance
LandTruth       a region of the land mask (uniform on land) on_land_rate, land_coverage
NetworkTruth    a Bayesian network's tables: every row's    -
                probability; entropy and KL summed over
                every joint state up to 10^7 of them, else
                estimated by Monte Carlo (``enumerable``)
==============  ==========================================  ==================================

KL(P_data || P_model) = E_{P_data}[log p_data(x) - log p_model(x)] needs the
model's exact log-probability. Given only a lower bound on log p_model, the same
sum is an upper bound on the KL, and is recorded as such (``kl_to_truth_bound``).

A truth too large to sum over (``enumerable`` False: a network with more than 10^7 joint
states) gives Monte-Carlo estimates instead, each with its standard error, recorded under
their own names (``entropy_truth_estimate``, ``kl_to_truth_estimate``, ...): an exact value, an
estimate and a bound never share a name.

``factor_names`` names the latent factors a truth's examples are drawn from
(a jar's height and width). The factors of the training and held-out
examples themselves travel with the problem (``Problem.factors``, read from the
dataset's files: jars' factors CSV, pixels' labels), which is what the latent
scores read.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from pmodel.datasets.bn import ENUMERATION_CHUNK, Network
from pmodel.datasets.land import LandData
from pmodel.scores import images as image_scores
from pmodel.scores import land as land_scores
from pmodel.scores import truth as truth_scores


_INDEX_LOCK = threading.Lock()


class Truth(ABC):
    """Exact knowledge of a P_data."""

    #: short name used in score requirements ("truth:table", ...)
    name: ClassVar[str]
    factor_names: tuple[str, ...] = ()
    #: whether entropy and KL are exact sums over every possible example (else see NetworkTruth)
    enumerable: ClassVar[bool] = True

    @abstractmethod
    def entropy(self) -> float:
        """H(P_data), nats (per square degree for densities on the map)."""

    @abstractmethod
    def kl(self, model) -> float:
        """KL(P_data || P_model) from ``model.log_prob``, nats."""

    def sample_scores(self, samples: np.ndarray, *, train: np.ndarray | None = None) -> dict[str, float]:
        """Scores of a model's samples that only this truth can give (``train``: the
        training examples, for scores that compare with them)."""
        return {}

    def kl_terms(self, model) -> tuple[np.ndarray, np.ndarray] | None:
        """``(p, X)`` such that ``kl(model) == kl_categorical(p, model.log_prob(X))``: the
        examples the KL sums over and their probabilities under P_data, so that a Monte-Carlo
        ``log_prob`` can be drawn twice (its standard error); None where the KL is no such
        sum (a quadrature too large to repeat)."""
        return None


@dataclass(frozen=True, eq=False)
class TableTruth(Truth):
    """P_data over every cell of a categorical domain.

    Attributes
    ----------
    table : ndarray (n_cells,), probabilities in the C order of ``domain.all_cells()``
    """

    table: np.ndarray
    name: ClassVar[str] = "table"

    def entropy(self) -> float:
        return truth_scores.entropy_categorical(self.table)

    def kl(self, model) -> float:
        return truth_scores.kl_categorical(self.table, model.log_prob(model.domain.all_cells()))

    def kl_terms(self, model) -> tuple[np.ndarray, np.ndarray]:
        return self.table, model.domain.all_cells()


@dataclass(frozen=True, eq=False)
class RenderTruth(Truth):
    """P_data on a finite set of distinct images (the valid renders); all others have p = 0.

    Attributes
    ----------
    images : ndarray (m, h, w) uint8, distinct
    probs : ndarray (m,), sums to 1
    factor_names : names of the latent factors each render is drawn from (jars: height, width)
    factors : ndarray (m, n_factors) or None, the factors of each render
    """

    images: np.ndarray
    probs: np.ndarray
    factor_names: tuple[str, ...] = ()
    factors: np.ndarray | None = None
    name: ClassVar[str] = "renders"

    def entropy(self) -> float:
        return truth_scores.entropy_categorical(self.probs)

    def kl(self, model) -> float:
        return truth_scores.kl_categorical(self.probs, model.log_prob(self.images))

    def kl_terms(self, model) -> tuple[np.ndarray, np.ndarray]:
        return self.probs, self.images

    @property
    def index(self) -> image_scores.RenderIndex:
        """The renders' nearest-neighbour index and thresholds, built once (thread-safe)."""
        with _INDEX_LOCK:
            if "_index" not in self.__dict__:
                object.__setattr__(self, "_index", image_scores.RenderIndex(self.images))
        return self.__dict__["_index"]

    def sample_scores(self, samples: np.ndarray, *, train: np.ndarray | None = None) -> dict[str, float]:
        """``valid_rate`` and ``n_valid_combinations`` (as :func:`image_validity`),
        ``near_render_rate``, ``near_render_rate_16`` and ``median_render_distance`` (as
        :func:`near_render_scores`, from the same nearest-render search, on the samples as
        given), and with ``train`` ``valid_novel_rate`` (as :func:`valid_novel_rate`: on the
        samples rounded to whole levels; searched again only when rounding changes them)."""
        ok, idx, rms = self.index.nearest(samples)
        out = {"valid_rate": float(ok.mean()), "n_valid_combinations": float(np.unique(idx[ok]).size),
               **image_scores.near_render_scores(rms)}
        if train is not None:
            rounded = np.clip(np.rint(np.asarray(samples, dtype=np.float64)), 0, 255)
            if not np.array_equal(rounded, samples):
                ok, idx, _ = self.index.nearest(rounded)
            out["valid_novel_rate"] = float(np.mean(ok & ~self.index.seen_in(train)[idx]))
        return out


@dataclass(frozen=True, eq=False)
class LandTruth(Truth):
    """P_data uniform on the land of a region, per square degree of the flat map."""

    land: LandData
    name: ClassVar[str] = "land"

    def entropy(self) -> float:
        return self.land.entropy()

    def kl(self, model) -> float:
        return truth_scores.kl_land(self.land, model.log_prob)

    def sample_scores(self, samples: np.ndarray, *, train: np.ndarray | None = None) -> dict[str, float]:
        return {"on_land_rate": land_scores.on_land_rate(samples, self.land),
                "land_coverage": land_scores.land_coverage(samples, self.land)["land_coverage"]}


#: Draws from P_data behind every Monte-Carlo estimate of a network's truth.
NETWORK_MC_DRAWS = 100_000
#: Their random stream (numpy entropy ``[NETWORK_MC_STREAM, draws]``): fixed, so every model of
#: a dataset is scored on the same draws (common random numbers: their differences are
#: estimated far more precisely than each value), and a rerun gives the same estimates.
NETWORK_MC_STREAM = 31


@dataclass(frozen=True, eq=False)
class NetworkTruth(Truth):
    """P_data given by a discrete Bayesian network (``pmodel.datasets.bn.Network``).

    The probability of any row is exact. The entropy and KL(P_data || P_model) are exact sums
    over every joint state when there are at most 10^7 of them (``enumerable``); otherwise
    :meth:`entropy` and :meth:`kl` refuse, and :meth:`entropy_estimate` and :meth:`kl_estimate`
    give Monte-Carlo estimates over ``n_draws`` fresh draws from the network (seeded), with
    their standard errors::

        H    ~ mean_i [-log p(z_i)]                    z_i ~ P_data, i = 1..n
        KL   ~ mean_i [log p(z_i) - log q(z_i)]        se = sd / sqrt(n)

    With a lower bound in place of log q the second is an estimate of an upper bound on the
    KL (``kl_to_truth_bound_estimate``).
    """

    network: Network
    n_draws: int = NETWORK_MC_DRAWS
    name: ClassVar[str] = "network"

    @property
    def enumerable(self) -> bool:
        return self.network.enumerable

    @property
    def skeleton(self) -> set[frozenset[int]]:
        """The network's arcs without direction, as pairs of column indices."""
        return self.network.skeleton

    def log_prob(self, X) -> np.ndarray:
        """Exact log P_data of each row (n,), nats."""
        return self.network.log_prob(X)

    def entropy(self) -> float:
        """H(P_data), exact (every joint state); ValueError when there are too many."""
        return self.network.entropy()

    def kl(self, model) -> float:
        """KL(P_data || P_model), exact (every joint state, in chunks); ValueError when too many."""
        net = self.network
        return truth_scores.kl_by_chunks((net.log_prob(X), model.log_prob(X)) for X in net.all_states())

    def kl_terms(self, model) -> tuple[np.ndarray, np.ndarray] | None:
        """``(p, X)`` over every joint state where they fit in one chunk (asia's 256, sachs's
        177,147), so that a Monte-Carlo bound's KL sum can be drawn twice for its standard
        error; None for larger networks (the sum then runs in chunks, without one)."""
        net = self.network
        if not net.enumerable or net.n_states > ENUMERATION_CHUNK:
            return None
        X = next(net.all_states())
        return np.exp(net.log_prob(X)), X

    def draws(self) -> tuple[np.ndarray, np.ndarray]:
        """``(Z, log p(Z))``: the ``n_draws`` rows from P_data the estimates average over,
        drawn once (thread-safe) from a fixed stream."""
        with _INDEX_LOCK:
            if "_draws" not in self.__dict__:
                rng = np.random.default_rng([NETWORK_MC_STREAM, self.n_draws])
                Z = self.network.sample_codes(self.n_draws, rng=rng)
                object.__setattr__(self, "_draws", (Z, self.network.log_prob(Z)))
        return self.__dict__["_draws"]

    def entropy_estimate(self) -> truth_scores.Estimate:
        """H(P_data) by Monte Carlo: the mean of -log p over the draws, with its standard error."""
        return truth_scores.mc_mean(-self.draws()[1])

    def kl_estimate(self, model) -> truth_scores.Estimate:
        """KL(P_data || P_model) by Monte Carlo: the mean of log p - log q over the draws."""
        Z, lp = self.draws()
        return truth_scores.mc_mean(lp - np.asarray(model.log_prob(Z), dtype=np.float64))
