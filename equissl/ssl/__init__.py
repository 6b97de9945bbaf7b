"""SSL methods: every module of this package registers its method in ``METHODS``
(:mod:`equissl.registries`; the modules are imported by :func:`equissl.plugins.load_plugins`)."""

from equissl.registries import METHODS
from equissl.ssl.base import LossOutput, SSLMethod
from equissl.ssl.loading import build_method, load_method

__all__ = ["METHODS", "LossOutput", "SSLMethod", "build_method", "load_method"]
