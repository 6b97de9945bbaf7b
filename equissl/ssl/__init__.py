"""SSL methods; importing this package registers every method in ``METHODS``."""

from equissl.ssl import sie, vicreg  # noqa: F401  (registration side effects)
from equissl.ssl.base import METHODS, SSLMethod, build_method

__all__ = ["METHODS", "SSLMethod", "build_method"]
