"""SSL methods: every module of this package registers its method in ``METHODS`` (they are
imported by :func:`equissl.plugins.load_plugins`)."""

from equissl.ssl.base import METHODS, LossOutput, SSLMethod, build_method, load_method

__all__ = ["METHODS", "LossOutput", "SSLMethod", "build_method", "load_method"]
