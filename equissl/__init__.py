"""equissl: self-supervised learning of invariant and equivariant representations."""

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

try:
    __version__ = version("equissl")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+local"

# The Hydra config tree lives in the checkout's top-level configs/ and is installed as
# equissl.configs (setup.py). When this package is imported from a source checkout
# (PYTHONPATH=checkout, or another checkout than the one installed), make equissl.configs
# this checkout's configs/, not the installed one's.
_checkout = Path(__file__).resolve().parent.parent
if (_checkout / "configs" / "__init__.py").is_file() and not (
    Path(__file__).resolve().parent / "configs"
).exists():
    __path__.append(str(_checkout))  # noqa: F821 (the package's own __path__)
