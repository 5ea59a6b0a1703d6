"""Shared machinery of the deep families (torch): plumbing, one training loop, a base class.

Importing this package imports torch; only the deep family modules
(``pmodel.families.{autoregressive,flow,vae,gan,diffusion}``) do, and the
family registry imports those only when such a family is built or loaded, so
``pmodel run chapter1`` never loads torch.

- ``_torch``: threads, seeds, concurrency slots, state dicts as numpy arrays.
- ``_train``: the one training loop (batches, Adam, epochs and seconds budgets,
  early stopping on a validation split, ``history_``, a progress bar).
- ``_base``: :class:`DeepFamily` (save/load of ``state_dict`` + config dataclass)
  and the per-kind helpers (standardised points on a rectangle, dequantised or
  naive-Bayes-initialised pixels, one-hot rows).
"""
