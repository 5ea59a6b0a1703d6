"""Model families behind one interface (contract v2: see ``pmodel.families.base``).

The registry below is the one place a family is named: registry name -> data
kind -> "module:Class". It is lazy: a family's module is imported only when
that family is built or loaded, so checking an experiment file or
``pmodel --help`` loads no model code it does not use (and no torch).
Adding a family: one module, plus one ``register_family`` line here.
"""

from pmodel.families.base import (Family, Hyper, cannot_hold, check_hyperparameters, families_for,
                                  family_class,
                                  family_names, kinds_served, load_model, make_family,
                                  register_family, unregister_family)
from pmodel.families.domains import CategoricalDomain, ImageDomain, PointsDomain

register_family("box", "points", "pmodel.families.box:PointsBox")
register_family("box", "categorical", "pmodel.families.box:CategoricalBox")
register_family("box", "image", "pmodel.families.box:ImageBox")
register_family("multinomial", "categorical", "pmodel.families.multinomial:CategoricalMultinomial")
register_family("multinomial", "points", "pmodel.families.multinomial:PointsMultinomial")
register_family("multinomial", "image", "pmodel.families.multinomial:ImageMultinomial")
register_family("naive_bayes", "categorical", "pmodel.families.naive_bayes:CategoricalNaiveBayes")
register_family("naive_bayes", "image", "pmodel.families.naive_bayes:ImageNaiveBayes")
register_family("naive_bayes", "points", "pmodel.families.naive_bayes:PointsNaiveBayes")
# latent variables and dependencies, without deep learning
register_family("chow_liu", "categorical", "pmodel.families.chow_liu:ChowLiuTree")
register_family("bayes_net", "categorical", "pmodel.families.bayes_net:BayesianNetwork")
register_family("latent_class", ("categorical", "image"), "pmodel.families.latent_class:LatentClass")
register_family("gmm", "points", "pmodel.families.gmm:PointsGaussianMixture")
register_family("kde", "points", "pmodel.families.kde:PointsKernelDensity")
register_family("pca", "image", "pmodel.families.pca:ImagePCA")
register_family("factor_analysis", "image", "pmodel.families.factor_analysis:ImageFactorAnalysis")
# the deep families of the chapter's taxonomy (torch, imported only when one is used)
register_family("flow", "points", "pmodel.families.flow:PointsFlow")
register_family("flow", "image", "pmodel.families.flow:ImageFlow")
register_family("autoregressive", "points", "pmodel.families.autoregressive:PointsMAF")
register_family("autoregressive", "categorical", "pmodel.families.autoregressive:CategoricalAutoregressive")
register_family("autoregressive", "image", "pmodel.families.autoregressive:ImageAutoregressive")
register_family("vae", "points", "pmodel.families.vae:PointsVAE")
register_family("vae", "categorical", "pmodel.families.vae:CategoricalVAEFamily")
register_family("vae", "image", "pmodel.families.vae:ImageVAE")
register_family("gan", "points", "pmodel.families.gan:PointsGAN")
register_family("gan", "image", "pmodel.families.gan:ImageGAN")
register_family("diffusion", "points", "pmodel.families.diffusion:PointsDiffusion")
register_family("diffusion", "image", "pmodel.families.diffusion:ImageDiffusion")

__all__ = ["Family", "Hyper", "make_family", "family_names", "families_for", "family_class",
           "kinds_served", "load_model", "register_family", "unregister_family",
           "check_hyperparameters", "cannot_hold", "CategoricalDomain", "ImageDomain", "PointsDomain"]
