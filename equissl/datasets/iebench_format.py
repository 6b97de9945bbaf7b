"""On-disk format of 3DIEBench / 3DIEBench-T, read as published (no conversion step).

``<root>/<synset>/<obj_id>/image_{i}.jpg`` + ``latent_{i}.npy`` (float64, 7 or 10 values);
split files ``{split}_images.npy`` (unicode object paths such as ``/02691156/dc8d…/``)
and ``{split}_labels.npy`` (int64) in ``splits_dir`` (default ``<root>/data``).

Every reader error names the offending file.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from torch import Tensor

_IMAGE_RE = re.compile(r"^image_(\d+)\.jpg$")

#: latent lengths: 3DIEBench (7: rotation, floor hue, spot light) and 3DIEBench-T (10: and
#: the translation); the layout is in :mod:`equissl.datasets.iebench_actions`
LATENT_DIMS = (7, 10)

# torchvision 0.29 deprecates its codecs in favour of torchcodec (we pin torchvision <= 0.29.1);
# the warning fires on every decode, so it is silenced once, here, by its message.
warnings.filterwarnings(
    "ignore", message="The image decoding and encoding capabilities of TorchVision are deprecated"
)

# Normalisation statistics of 3DIEBench used by the SIE / EquiCaps reference code.
MEAN = (0.5016, 0.5037, 0.5060)
STD = (0.1030, 0.0999, 0.0969)


class DatasetFormatError(RuntimeError):
    """A file of the dataset is missing, unreadable or malformed (the message names it)."""


@dataclass(frozen=True)
class Split:
    """One split: object directories (relative to root) and their labels."""

    entries: list[str]
    labels: np.ndarray  # [N] int64
    images_file: Path | None = None  # where ``entries`` were read from
    labels_file: Path | None = None  # where ``labels`` were read from

    def __len__(self) -> int:
        return len(self.entries)


#: folder of the split files under the root (the published layout), and the record a render
#: of ours leaves there (``equissl.datasets.render``: it finishes or refuses its own folder)
SPLITS_DIR = "data"
RENDER_RECORD = "render_config.json"


def default_splits_dir(root: str | Path) -> Path:
    return Path(root) / SPLITS_DIR


def load_split(root: str | Path, split: str, splits_dir: str | Path | None = None) -> Split:
    """Read ``{split}_images.npy`` and ``{split}_labels.npy``.

    Raises:
        DatasetFormatError: missing/unreadable files, length mismatch, bad dtypes.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetFormatError(f"dataset root {root} is not a directory")
    sdir = Path(splits_dir) if splits_dir else default_splits_dir(root)
    images_file = sdir / f"{split}_images.npy"
    labels_file = sdir / f"{split}_labels.npy"
    arrays = []
    for f in (images_file, labels_file):
        if not f.is_file():
            raise DatasetFormatError(
                f"split file {f} {'is a directory' if f.is_dir() else 'not found'} "
                f"(set data.splits_dir to the folder holding "
                f"{split}_images.npy and {split}_labels.npy; the SIE repository ships them "
                "in its data/ folder)"
            )
        try:
            arrays.append(np.load(f, allow_pickle=False))
        except Exception as err:  # numpy raises several types for corrupt files
            raise DatasetFormatError(f"cannot read split file {f}: {err}") from err
    images, labels = arrays
    if images.dtype.kind not in "US" or images.ndim != 1:
        raise DatasetFormatError(f"{images_file} must be a 1-D string array, got {images.dtype}")
    if labels.dtype.kind not in "iu" or labels.shape != images.shape:
        raise DatasetFormatError(
            f"{labels_file} must be integer labels of length {len(images)}, "
            f"got {labels.dtype} {labels.shape}"
        )
    entries = [str(e).strip("/") for e in images]
    return Split(entries, labels.astype(np.int64), images_file, labels_file)


def image_path(root: Path, entry: str, view: int) -> Path:
    return root / entry / f"image_{view}.jpg"


def latent_path(root: Path, entry: str, view: int) -> Path:
    return root / entry / f"latent_{view}.npy"


def count_views(object_dir: Path) -> int:
    """Number of views of one object, from its ``image_{i}.jpg`` files (0..V-1 contiguous)."""
    if not object_dir.is_dir():
        raise DatasetFormatError(f"object directory {object_dir} not found")
    ids = sorted(int(m.group(1)) for p in object_dir.iterdir() if (m := _IMAGE_RE.match(p.name)))
    if not ids:
        raise DatasetFormatError(f"no image_*.jpg in {object_dir}")
    if ids != list(range(len(ids))):
        raise DatasetFormatError(f"views in {object_dir} are not numbered 0..{len(ids) - 1}")
    return len(ids)


@cache
def _decoder() -> Callable[[bytes | np.ndarray], Tensor]:
    """torchvision's image decoder, imported on the first decode: torch and torchvision cost
    ~3.5 s of CPU and ~0.8 GB resident to import, which the checks of split files, latents
    and packed indexes (``equissl-validate`` on a broken tree, ``equissl-pack
    verify=false``) do not need."""
    import torch
    from torchvision.io import ImageReadMode
    from torchvision.io import decode_image as decode_image_bytes

    def decode(data: bytes | np.ndarray) -> Tensor:
        buf = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        return decode_image_bytes(buf, mode=ImageReadMode.RGB)

    return decode


def decode_image(data: bytes | np.ndarray, source: str) -> Tensor:
    """Decode encoded image bytes (JPEG, PNG) to ``[3, H, W]`` uint8, naming ``source`` on failure.

    The one decoder of every reader (loose files and packed shards) and of
    ``equissl-validate``, so all give the same pixels and accept the same files:
    torchvision's libjpeg-turbo / libpng decoder, which matches PIL's pixel for pixel on
    3DIEBench-style JPEGs and is about 2.5x faster at 64 px.
    """
    if len(data) == 0:
        raise DatasetFormatError(f"image {source} cannot be decoded: it is empty (0 bytes)")
    decode = _decoder()
    try:
        return decode(data)
    except RuntimeError as err:  # torchvision raises RuntimeError for every corrupt input
        raise DatasetFormatError(f"image {source} cannot be decoded: {err}") from err


def read_image(path: Path) -> Tensor:
    """Decode a JPEG file to ``[3, H, W]`` uint8, naming the file on failure."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise DatasetFormatError(f"image {path} not found") from None
    except OSError as err:  # a directory, a permission or I/O error
        raise DatasetFormatError(f"image {path} cannot be decoded: {err}") from err
    return decode_image(data, str(path))


def read_latent(path: Path, latent_dim: int | None = None) -> np.ndarray:
    """Load one view's latent vector ``[P]`` float64 and check its length and finiteness."""
    try:
        lat = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DatasetFormatError(f"latent {path} not found") from None
    except Exception as err:
        raise DatasetFormatError(f"latent {path} cannot be read: {err}") from err
    lat = np.asarray(lat)
    if lat.dtype.kind not in "fiu" or np.squeeze(lat).ndim > 1:
        raise DatasetFormatError(
            f"latent {path} is a {lat.dtype} array of shape {lat.shape}; expected a float vector"
        )
    lat = lat.reshape(-1)
    expected = (latent_dim,) if latent_dim else LATENT_DIMS
    if lat.shape[0] not in expected:
        raise DatasetFormatError(
            f"latent {path} has {lat.shape[0]} values; expected {' or '.join(map(str, expected))}"
        )
    if not np.all(np.isfinite(lat)):
        raise DatasetFormatError(f"latent {path} contains non-finite values")
    return lat
