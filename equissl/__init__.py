"""equissl: self-supervised learning of invariant and equivariant representations."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("equissl")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+local"
