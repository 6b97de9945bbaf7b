"""Files of a 3DIEBench-format tree: names, atomic writes, completeness, split files.

``<out>/<synset>/<obj_id>/image_{v}.jpg`` (RGB JPEG, quality 95 like the reference's
``cv2.imwrite``) and ``latent_{v}.npy`` (1-D float64); ``<out>/data/{train,val}_images.npy``
(fixed-width unicode ``/synset/obj_id/`` paths) and ``{train,val}_labels.npy`` (int64).

Per-view files are written to a hidden temporary name in the same directory and moved into
place with ``os.replace``, so a killed job never leaves a truncated file under a final name.
They are not fsync'ed (one fsync per file would dominate the cost on cluster file systems);
a zero-length file left by a node crash is treated as missing.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from equissl.atomic import atomic_write_bytes
from equissl.datasets.iebench_format import RENDER_RECORD
from equissl.datasets.iebench_format import SPLITS_DIR as SPLITS_DIR

CONFIG_FILE = RENDER_RECORD
JPEG_QUALITY = 95
_TMP_RE = re.compile(r"^\.(image|latent)_\d+\.(jpg|npy)\.[^.]+\.tmp$")


def image_name(view: int) -> str:
    return f"image_{view}.jpg"


def latent_name(view: int) -> str:
    return f"latent_{view}.npy"


def entry_path(synset: str, obj_id: str) -> str:
    """Split-file entry of one object: ``/synset/obj_id/`` (leading and trailing slash)."""
    return f"/{synset}/{obj_id}/"


def encode_jpeg(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """``[H, W, 3]`` uint8 RGB to JPEG bytes."""
    buf = io.BytesIO()
    arr = np.ascontiguousarray(image, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an [H, W, 3] image, got shape {arr.shape}")
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def encode_npy(array: np.ndarray) -> bytes:
    """``.npy`` bytes of an array (no pickling)."""
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a hidden temporary file beside ``path``, then ``os.replace`` it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_view(obj_dir: Path, view: int, image: np.ndarray, latent: np.ndarray) -> None:
    """Write ``image_{view}.jpg`` ([H, W, 3] uint8) and ``latent_{view}.npy`` ([P] float64)."""
    write_atomic(obj_dir / latent_name(view), encode_npy(np.asarray(latent, dtype=np.float64)))
    write_atomic(obj_dir / image_name(view), encode_jpeg(image))


def complete_views(obj_dir: Path, views: int) -> set[int]:
    """Views ``v < views`` whose image and latent both exist and are non-empty."""
    try:
        sizes = {e.name: e.stat().st_size for e in os.scandir(obj_dir) if e.is_file()}
    except FileNotFoundError:
        return set()
    return {
        v
        for v in range(views)
        if sizes.get(image_name(v), 0) > 0 and sizes.get(latent_name(v), 0) > 0
    }


def remove_stale_temps(obj_dir: Path) -> None:
    """Delete temporary files a killed writer left in ``obj_dir``."""
    if obj_dir.is_dir():
        for e in os.scandir(obj_dir):
            if _TMP_RE.match(e.name):
                Path(e.path).unlink(missing_ok=True)


def write_split(out: Path, split: str, entries: Sequence[str], labels: Sequence[int]) -> None:
    """Atomically write ``{split}_images.npy`` ('<U' array) and ``{split}_labels.npy`` (int64)."""
    if len(entries) != len(labels):
        raise ValueError(f"{split}: {len(entries)} entries but {len(labels)} labels")
    images = np.array(list(entries), dtype=np.str_) if len(entries) else np.array([], "<U1")
    sdir = out / SPLITS_DIR
    atomic_write_bytes(sdir / f"{split}_images.npy", encode_npy(images))
    atomic_write_bytes(
        sdir / f"{split}_labels.npy", encode_npy(np.asarray(labels, dtype=np.int64).reshape(-1))
    )
