"""Model families behind one interface (fit / log_prob / sample / n_parameters_).

Importing this package registers the chapter's families: ``box``,
``multinomial`` and ``naive_bayes``, each on the data kinds it serves.
"""

from pmodel.families import box, multinomial, naive_bayes  # noqa: F401  (registers them)
from pmodel.families.base import (Family, families_for, family_class, family_names,
                                  kinds_served, make_family)
from pmodel.families.domains import CategoricalDomain, ImageDomain, PointsDomain

__all__ = ["Family", "make_family", "family_names", "families_for", "family_class",
           "kinds_served", "CategoricalDomain", "ImageDomain", "PointsDomain"]
