"""Bad input data: every bad input is named, the loader and ``equissl-validate``
agree (both reject or both accept), and nothing already written is changed.

"The loader rejects" means: building the train and val datasets, or reading every view of
every object (what an epoch of training or the evaluation's feature cache does), raises
:class:`DatasetFormatError`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from equissl.apps.validate import main as validate_main
from equissl.datasets.iebench import IEBenchDataset
from equissl.datasets.iebench_format import DatasetFormatError
from equissl.datasets.on_error import OnErrorDataset
from equissl.datasets.pde import PDEWindowDataset
from equissl.datasets.validate import check_dataset_labels, check_split_labels
from equissl.datasets.validate_tree import validate_iebench
from equissl.training.datamodule import PretrainDataModule
from tests.conftest import write_iebench_tree

# ----------------------------------------------------------------------------- helpers


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """``{file: (sha1, mtime_ns)}`` of every file under ``root`` (or of ``root`` itself)."""
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p): (hashlib.sha1(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in files}  # fmt: skip


def run_validate(capsys: pytest.CaptureFixture, *args: object) -> tuple[int, str]:
    """``equissl-validate ARGS`` in-process: ``(exit status, stdout)``."""
    capsys.readouterr()
    rc = validate_main([str(a) for a in args])
    return rc, capsys.readouterr().out


def iebench_loader(root: Path, **kw: object) -> str | None:
    """Build train and val and read every view of every object; the error text or None."""
    try:
        for split in ("train", "val"):
            ds = IEBenchDataset(root, split, **kw)
            for i in range(len(ds)):
                ds.load(i, range(ds.views_per_object))
    except DatasetFormatError as err:
        return str(err)
    return None


def pde_loader(root: Path) -> str | None:
    """Build the train and val PDE datasets and read one item of each; error text or None."""
    try:
        for split in ("train", "val"):
            PDEWindowDataset(root, split, num_views=2, window=4)[0]
    except DatasetFormatError as err:
        return str(err)
    return None


def agree_reject(
    root: Path, loader: Callable[[Path], str | None], capsys: pytest.CaptureFixture,
    names: list[str], *cli_args: str,
) -> tuple[str, str]:  # fmt: skip
    """Both reject, both messages hold every name, and no file changed."""
    before = snapshot(root) if root.exists() else {}
    loaded = loader(root)
    rc, out = run_validate(capsys, root, *cli_args)
    assert (snapshot(root) if root.exists() else {}) == before, "a file was changed"
    assert loaded is not None, f"the loader accepted what validate says:\n{out}"
    assert rc == 1, out
    for name in names:
        assert name in loaded, f"{name!r} not in the loader's message:\n{loaded}"
        assert name in out, f"{name!r} not in validate's output:\n{out}"
    return loaded, out


def tree(tmp_path: Path, **kw: object) -> Path:
    return write_iebench_tree(tmp_path / "3DIEBench", **kw)


def split_arrays(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    data = root / "data"
    return np.load(data / f"{split}_images.npy"), np.load(data / f"{split}_labels.npy")


def save_split(root: Path, split: str, images: object = None, labels: object = None) -> None:
    data = root / "data"
    if images is not None:
        np.save(data / f"{split}_images.npy", images, allow_pickle=True)
    if labels is not None:
        np.save(data / f"{split}_labels.npy", labels, allow_pickle=True)


def obj(root: Path, k: int = 0, split: str = "train") -> Path:
    """Directory of the ``k``-th object of ``split``."""
    return root / str(split_arrays(root, split)[0][k]).strip("/")


# ----------------------------------------------------------------------------- 3DIEBench
# Each mutation damages a clean tree and returns the names both messages must contain.


def set_train_label(value: int, k: int = 0) -> Callable[[Path], list[str]]:
    def mutate(root: Path) -> list[str]:
        images, labels = split_arrays(root, "train")
        labels[k] = value
        save_split(root, "train", labels=labels)
        return [str(root / "data" / "train_labels.npy"), f"{images[k].strip('/')!r}={value}"]

    return mutate


def labels_float(root: Path) -> list[str]:
    save_split(root, "train", labels=split_arrays(root, "train")[1].astype(np.float64))
    return [str(root / "data" / "train_labels.npy"), "float64"]


def labels_2d(root: Path) -> list[str]:
    save_split(root, "val", labels=split_arrays(root, "val")[1][:, None])
    return [str(root / "data" / "val_labels.npy")]


def labels_too_short(root: Path) -> list[str]:
    save_split(root, "train", labels=split_arrays(root, "train")[1][:-1])
    return [str(root / "data" / "train_labels.npy"), "length 9"]


def images_missing(root: Path) -> list[str]:
    (root / "data" / "train_images.npy").unlink()  # labels kept
    return [str(root / "data" / "train_images.npy"), "not found"]


def labels_missing(root: Path) -> list[str]:
    (root / "data" / "val_labels.npy").unlink()
    return [str(root / "data" / "val_labels.npy"), "not found"]


def split_file_is_directory(root: Path) -> list[str]:
    f = root / "data" / "train_labels.npy"
    f.unlink()
    f.mkdir()
    return [f"{f} is a directory"]


def split_file_corrupt(root: Path) -> list[str]:
    (root / "data" / "val_images.npy").write_bytes(b"\x93NUMPY garbage")
    return [str(root / "data" / "val_images.npy"), "cannot read"]


def images_wrong_dtype(root: Path) -> list[str]:
    save_split(root, "train", images=np.arange(9))
    return [str(root / "data" / "train_images.npy"), "string array"]


def images_pickled(root: Path) -> list[str]:
    images = split_arrays(root, "train")[0].astype(object)
    save_split(root, "train", images=images)
    return [str(root / "data" / "train_images.npy")]


def images_2d(root: Path) -> list[str]:
    save_split(root, "val", images=split_arrays(root, "val")[0][:, None])
    return [str(root / "data" / "val_images.npy"), "1-D"]


def empty_split(root: Path) -> list[str]:
    save_split(root, "val", np.array([], dtype="<U40"), np.array([], dtype=np.int64))
    return [str(root / "data" / "val_images.npy"), "empty"]


def entry_twice(root: Path) -> list[str]:
    images, labels = split_arrays(root, "train")
    save_split(root, "train", np.append(images, images[3]), np.append(labels, labels[3]))
    return [str(root / "data" / "train_images.npy"), "more than once", images[3].strip("/")]


def entry_in_train_and_val(root: Path) -> list[str]:
    images, labels = split_arrays(root, "train")
    val_images, val_labels = split_arrays(root, "val")
    save_split(root, "train", np.append(images, val_images[0]), np.append(labels, val_labels[0]))
    return [
        "in both train and val",
        val_images[0].strip("/"),
        str(root / "data" / "val_images.npy"),
    ]


def entry_outside_root(root: Path) -> list[str]:
    outside = root.parent / "outside"
    shutil.copytree(obj(root), outside)  # a perfectly readable object, but not in the tree
    images, labels = split_arrays(root, "train")
    save_split(root, "train", np.append(images, "/../outside/"), np.append(labels, 0))
    return [str(root / "data" / "train_images.npy"), "'../outside'"]


def entry_missing(root: Path) -> list[str]:
    images, labels = split_arrays(root, "val")
    save_split(root, "val", np.append(images, "/02691156/doesnotexist/"), np.append(labels, 0))
    return [str(root / "02691156" / "doesnotexist"), "not found"]


def entry_is_file(root: Path) -> list[str]:
    (root / "02691156" / "afile").write_bytes(b"")
    images, labels = split_arrays(root, "train")
    save_split(root, "train", np.append(images, "/02691156/afile/"), np.append(labels, 0))
    return [str(root / "02691156" / "afile"), "is not a directory"]


def unlink(*names: str, k: int = 2) -> Callable[[Path], list[str]]:
    def mutate(root: Path) -> list[str]:
        d = obj(root, k)
        for n in names:
            (d / n).unlink()
        return [str(d)]

    return mutate


def image_missing_middle(root: Path) -> list[str]:
    return unlink("image_2.jpg")(root) + ["missing image_2.jpg"]


def views_0_1_3(root: Path) -> list[str]:
    names = unlink("image_2.jpg", "latent_2.npy", "image_4.jpg", "latent_4.npy")(root)
    return names + ["not numbered 0..2"]


def fewer_views(root: Path) -> list[str]:
    return unlink("image_4.jpg", "latent_4.npy", k=4)(root) + ["has 4 views"]


def latent_missing(root: Path) -> list[str]:
    return unlink("latent_3.npy", k=1)(root) + ["latent_3.npy", "missing"]


def empty_object_dir(root: Path) -> list[str]:
    d = obj(root, 5)
    for p in d.iterdir():
        p.unlink()
    return [str(d), "no image_*.jpg"]


def damage_file(name: str, k: int, damage: Callable[[Path], None], *words: str):
    def mutate(root: Path) -> list[str]:
        path = obj(root, k) / name
        damage(path)
        return [str(path), *words]

    return mutate


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def make_directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


IEBENCH_CASES: dict[str, Callable[[Path], list[str]]] = {
    "train label 1000": set_train_label(1000),
    "train label 55 (one past the 55 synsets)": set_train_label(55, 2),
    "negative train label": set_train_label(-3, 1),
    "unknown (-1) train label": set_train_label(-1, 4),
    "float labels": labels_float,
    "2-D labels": labels_2d,
    "labels shorter than images": labels_too_short,
    "train_images.npy missing, labels kept": images_missing,
    "val_labels.npy missing": labels_missing,
    "split file is a directory": split_file_is_directory,
    "corrupt split file": split_file_corrupt,
    "integer images file": images_wrong_dtype,
    "pickled object images file": images_pickled,
    "2-D images file": images_2d,
    "empty split": empty_split,
    "entry listed twice": entry_twice,
    "object in train and val": entry_in_train_and_val,
    "entry outside root": entry_outside_root,
    "entry missing": entry_missing,
    "entry is a file": entry_is_file,
    "view missing in the middle": image_missing_middle,
    "views numbered 0,1,3": views_0_1_3,
    "one object with fewer views": fewer_views,
    "latent missing": latent_missing,
    "empty object directory": empty_object_dir,
    "truncated JPEG": damage_file("image_3.jpg", 0, truncate, "cannot be decoded"),
    "zero-byte JPEG": damage_file("image_1.jpg", 6, lambda p: p.write_bytes(b""), "decoded"),
    "JPEG is a directory": damage_file("image_2.jpg", 3, make_directory, "cannot be decoded"),
    "latent with NaN": damage_file(
        "latent_1.npy", 7, lambda p: np.save(p, np.r_[np.load(p)[:6], np.nan]), "non-finite"
    ),
    "latent with inf": damage_file(
        "latent_4.npy", 8, lambda p: np.save(p, np.r_[np.inf, np.load(p)[1:]]), "non-finite"
    ),
    "2-D latent of wrong size": damage_file(
        "latent_2.npy", 1, lambda p: np.save(p, np.zeros((2, 4))), "(2, 4)"
    ),
    "2-D latent of 10 values": damage_file(
        "latent_2.npy", 2, lambda p: np.save(p, np.zeros((2, 5))), "(2, 5)"
    ),
    "latent of 5 values": damage_file(
        "latent_0.npy", 0, lambda p: np.save(p, np.zeros(5)), "5 values"
    ),
    "latent of strings": damage_file(
        "latent_3.npy", 5, lambda p: np.save(p, np.array(["a"] * 7)), "float vector"
    ),
    "corrupt latent file": damage_file(
        "latent_4.npy", 4, lambda p: p.write_bytes(b"junk"), "cannot be read"
    ),
    "pickled latent": damage_file(
        "latent_0.npy", 3, lambda p: np.save(p, np.array([{}], dtype=object)), "cannot be read"
    ),
}


@pytest.mark.parametrize("case", list(IEBENCH_CASES))
def test_iebench_bad_input_is_named_by_loader_and_validate(case, tmp_path, capsys):
    root = tree(tmp_path)
    names = IEBENCH_CASES[case](root)
    agree_reject(root, iebench_loader, capsys, names)


def test_clean_trees_pass_both(tmp_path, capsys):
    for latent_dim in (7, 10):
        root = write_iebench_tree(tmp_path / f"t{latent_dim}", latent_dim=latent_dim)
        assert iebench_loader(root) is None
        rc, out = run_validate(capsys, root)
        assert rc == 0 and "OK" in out and "warning" not in out, out


def test_latent_length_majority_names_the_minority(tmp_path, capsys):
    """First object: 10-value latents, the 11 others: 7. The first object's six are named."""
    root = tree(tmp_path, views=6)
    first = obj(root, 0)
    odd = [first / f"latent_{v}.npy" for v in range(6)]
    for p in odd:
        np.save(p, np.r_[np.load(p), 0.1, 0.2, 0.3])
    loaded, out = agree_reject(root, iebench_loader, capsys, [str(odd[0]), "10 values"])
    for p in odd:
        assert str(p) in out
    good = [p for p in root.glob("*/*/latent_*.npy") if p.parent != first]
    assert len(good) == 66
    assert not any(str(p) in out or str(p) in loaded for p in good)
    assert "66 of 72 have 7" in out


def test_missing_root(tmp_path, capsys):
    missing = tmp_path / "nope"
    agree_reject(missing, iebench_loader, capsys, [str(missing)])


def test_val_labels_unseen_in_train_are_a_warning(tmp_path, capsys, caplog):
    root = tree(tmp_path)
    images, labels = split_arrays(root, "val")
    # two val objects of synsets no train object has (one synset is one class)
    for i, (synset, label) in enumerate([("04000030", 30), ("04000031", 31)]):
        old = root / images[i].strip("/")
        (root / synset).mkdir()
        old.rename(root / synset / old.name)
        images[i], labels[i] = f"/{synset}/{old.name}/", label
    save_split(root, "val", images=images, labels=labels)
    assert iebench_loader(root) is None  # valid data: both accept
    rc, out = run_validate(capsys, root)
    assert rc == 0, out
    assert "1 warning(s)" in out and "2 object(s) of 2 class(es) absent" in out
    assert str(root / "data" / "val_labels.npy") in out
    train, val = IEBenchDataset(root, "train"), IEBenchDataset(root, "val")
    with caplog.at_level(logging.WARNING):
        warnings = check_dataset_labels(train, val)  # what the evaluation stage calls
    assert len(warnings) == 1 and "30, 31" in warnings[0] and "2 object(s)" in warnings[0]
    assert warnings[0] in caplog.text


def test_evaluation_label_checks():
    train = np.array([0, 7, 7, 22])
    with pytest.raises(DatasetFormatError, match=r"train\.npy.*#1=1000"):
        check_split_labels(np.array([0, 1000]), train, ("train.npy", "val.npy"), num_classes=55)
    with pytest.raises(DatasetFormatError, match=r"train\.npy: 1 label\(s\) negative.*#2=-5"):
        check_split_labels(np.array([0, 1, -5]), train, ("train.npy", "val.npy"))
    with pytest.raises(DatasetFormatError, match=r"tr: 1 label\(s\) below -1: #1=-5"):
        check_split_labels(np.array([-1, -5]), np.array([-1]), ("tr", "va"))
    with pytest.raises(DatasetFormatError, match=r"val\.npy: 1 label\(s\) negative"):
        check_split_labels(train, np.array([0, -1]), ("train.npy", "val.npy"))
    with pytest.raises(DatasetFormatError, match="integers"):
        check_split_labels(train.astype(float), train, ("train.npy", "val.npy"))
    assert check_split_labels(np.full(4, -1), np.full(2, -1)) == []  # unlabelled: no probe
    assert check_split_labels(train, np.array([22, 0])) == []
    (warning,) = check_split_labels(train, np.array([3, 3, 0, 9]), ("tr", "va"))
    assert "va: 3 object(s) of 2 class(es) absent from tr (3, 9)" in warning


def test_evaluation_stage_checks_labels(tmp_path, caplog):
    """The evaluation stage warns about unseen val classes and rejects bad train labels."""
    from hydra import compose, initialize_config_module

    from equissl.apps.hydra_main import _resolved
    from equissl.eval.evaluate import evaluate_checkpoint
    from equissl.training.pretrain import pretrain

    root = tree(tmp_path)
    overrides = [
        *(f"data.{k}" for k in (f"root={root}", "batch_size=4", "image_size=16", "num_workers=0")),
        *(f"trainer.{k}" for k in ("max_steps=0", "enable_progress_bar=false")),
        "eval.num_workers=0", "eval.probes.classification.epochs=1", "probe=[classification]",
        "trainer=cpu", "logger=csv", "logger.name=none", "backbone=resnet18_cifar",
    ]  # fmt: skip
    with initialize_config_module("equissl.configs", version_base="1.3"):
        config = _resolved(compose("pretrain", overrides=overrides))
    ckpt = pretrain(config, tmp_path / "run")
    images, labels = split_arrays(root, "val")
    old = root / images[0].strip("/")  # moved to a synset (class 40) no training object has
    (root / "04000040").mkdir()
    old.rename(root / "04000040" / old.name)
    images[0], labels[0] = f"/04000040/{old.name}/", 40
    save_split(root, "val", images=images, labels=labels)
    with caplog.at_level(logging.WARNING):
        evaluate_checkpoint(ckpt, config["eval"], tmp_path / "eval", progress=False)
    assert "1 object(s) of 1 class(es) absent" in caplog.text and "(40)" in caplog.text
    train_labels = split_arrays(root, "train")[1]
    train_labels[2] = -4
    save_split(root, "train", labels=train_labels)
    before = snapshot(tmp_path)
    with pytest.raises(DatasetFormatError, match=str(root / "data" / "train_labels.npy")):
        evaluate_checkpoint(ckpt, config["eval"], tmp_path / "eval2", progress=False)
    assert snapshot(tmp_path) == before and not (tmp_path / "eval2").exists()


# ----------------------------------------------------------------------------- on_error


def damaged_training_set(tmp_path: Path, policy: str) -> tuple[Path, object]:
    root = tree(tmp_path)
    data = {"impl": "iebench", "root": str(root), "image_size": 16, "on_error": policy,
            "train_split": "train", "batch_size": 2, "num_workers": 0}  # fmt: skip
    ds = PretrainDataModule(data, 2).train_set
    # Damage after start-up, as a file that stops decoding mid-run would.
    for p in obj(root, 3).glob("image_*.jpg"):
        p.write_bytes(b"not a jpeg any more")
    (obj(root, 5) / "latent_0.npy").unlink()
    for v in range(1, 5):
        (obj(root, 5) / f"latent_{v}.npy").unlink()
    return root, ds


def test_on_error_fail_names_the_file(tmp_path):
    root, ds = damaged_training_set(tmp_path, "fail")
    assert not isinstance(ds, OnErrorDataset)
    with pytest.raises(DatasetFormatError, match=str(obj(root, 3) / "image_")):
        ds[3]
    with pytest.raises(DatasetFormatError, match=str(obj(root, 5) / "latent_")):
        ds[5]


def test_on_error_skip_replaces_counts_and_logs(tmp_path, caplog):
    root, ds = damaged_training_set(tmp_path, "skip")
    assert isinstance(ds, OnErrorDataset) and len(ds) == 9
    assert ds.action_space.latent_dim == 7 and ds.labels.shape == (9,)  # forwarded
    before = snapshot(root)
    with caplog.at_level(logging.WARNING):
        item = ds[3]
    assert int(item["index"]) == 4 and int(item["skipped"]) == 1  # the next index, counted
    assert ds.skipped == 1 and str(obj(root, 3) / "image_") in caplog.text
    assert int(ds[2]["skipped"]) == 0 and int(ds[5]["index"]) == 6
    assert ds.skipped == 2 and str(obj(root, 5) / "latent_") in caplog.text
    # With loader workers the per-item count reaches the training loop in the batch.
    batches = list(DataLoader(ds, batch_size=9, num_workers=2))
    assert batches[0]["skipped"].dtype == torch.int64 and int(batches[0]["skipped"].sum()) == 2
    assert batches[0]["index"].tolist() == [0, 1, 2, 4, 4, 6, 6, 7, 8]
    assert snapshot(root) == before


def test_on_error_skip_gives_up_when_everything_is_damaged(tmp_path):
    root, ds = damaged_training_set(tmp_path, "skip")
    for p in root.glob("*/*/image_*.jpg"):
        p.write_bytes(b"")
    with pytest.raises(DatasetFormatError, match="all 9 items are damaged"):
        ds[0]


def test_on_error_unknown_value_is_a_start_up_error(tmp_path):
    data = {"impl": "iebench", "root": str(tmp_path / "not-even-there"), "on_error": "ignore",
            "train_split": "train"}  # fmt: skip
    with pytest.raises(ValueError, match=r"data\.on_error='ignore' is not one of fail \| skip"):
        PretrainDataModule(data, 2)


def test_on_error_is_a_config_key():
    from hydra import compose, initialize_config_module

    from equissl.apps.hydra_main import _resolved

    with initialize_config_module("equissl.configs", version_base="1.3"):
        cfg = _resolved(compose("pretrain", overrides=["data.root=/d", "data.on_error=skip"]))
        assert cfg["data"]["on_error"] == "skip"
        assert (
            _resolved(compose("pretrain", overrides=["data.root=/d"]))["data"]["on_error"] == "fail"
        )


# ----------------------------------------------------------------------------- the CLI


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["workers=abc"], ["workers='abc'", "positive integer"]),
        (["workers=0"], ["workers='0'", "positive integer"]),
        (["worker=4"], ["unknown option 'worker'", "workers=<a positive integer>"]),
        (["splits="], ["splits=''", "comma-separated"]),
        (["second_root"], ["exactly one ROOT"]),
    ],
)
def test_cli_usage_errors_name_the_key(args, words, iebench_tree, capsys):
    rc, out = run_validate(capsys, iebench_tree, *args)
    assert rc == 2
    for w in words:
        assert w in out


@pytest.mark.e2e
def test_cli_console_script_statuses(iebench_tree, tmp_path):
    script = Path(sys.executable).parent / "equissl-validate"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "equissl.apps.cli"]

    def run(*args: object) -> subprocess.CompletedProcess:
        return subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True,
                              timeout=120)  # fmt: skip

    bad = run(iebench_tree, "workers=abc")
    assert bad.returncode == 2 and "workers='abc'" in bad.stdout and "Traceback" not in bad.stderr
    missing = run(tmp_path / "nope")
    assert missing.returncode == 1 and str(tmp_path / "nope") in missing.stdout
    ok = run(iebench_tree, "workers=2", "splits=train,val")
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_cli_checks_required_splits(iebench_tree, capsys):
    rc, out = run_validate(capsys, iebench_tree, "splits=train,val,test")
    assert rc == 1 and str(iebench_tree / "data" / "test_images.npy") in out


def test_report_counts_files(iebench_tree):
    report = validate_iebench(iebench_tree, progress=False, workers=2)
    assert report.ok and report.objects == 12 and report.files == 12 * 5 * 2


# ----------------------------------------------------------------------------- PDE (HDF5)


def write_pde(path: Path, equation: str = "kdv", n: int = 6, frames: int = 12, nx: int = 16,
              first_id: int = 0, coeff_names: tuple[str, ...] = ()) -> Path:  # fmt: skip
    """A small, valid trajectory file written by hand in the layout of ``storage.py``."""
    x = np.arange(nx) * 2 * np.pi / nx
    t = np.arange(frames) * 0.1
    u = np.sin(x[None, None] - t[None, :, None] + np.arange(n)[:, None, None])
    with h5py.File(path, "w") as f:
        f["u"] = u
        f["t"] = np.tile(t, (n, 1))
        f["x"] = np.tile(x, (n, 1))
        f["coeffs"] = np.full((n, len(coeff_names)), 0.03)
        f["index"] = np.arange(first_id, first_id + n)
        f.attrs.update({"equation": equation, "equation_text": "-", "parameters": "{}",
                        "generator_version": "hand", "coeff_names": json.dumps(coeff_names),
                        "complete": True})  # fmt: skip
    return path


def replace(key: str, value: object) -> Callable[[h5py.File], None]:
    def fn(f: h5py.File) -> None:
        del f[key]
        f[key] = value

    return fn


def set_value(key: str, where: tuple, value: float) -> Callable[[h5py.File], None]:
    def fn(f: h5py.File) -> None:
        f[key][where] = value

    return fn


def set_attr(key: str, value: object) -> Callable[[h5py.File], None]:
    def fn(f: h5py.File) -> None:
        f.attrs[key] = value

    return fn


def u_as_group(f: h5py.File) -> None:
    del f["u"]
    f.create_group("u")


PDE_FILE_CASES: dict[str, tuple[Callable[[h5py.File], None], list[str]]] = {
    "incomplete chunk": (set_attr("complete", False), ["complete=False"]),
    "NaN in trajectory 3": (
        set_value("u", (3, 5, 2), np.nan),
        ["u has non-finite values", "first at row 3 (trajectory id 3)"],
    ),
    "inf in t": (set_value("t", (4, 11), np.inf), ["t has non-finite", "row 4"]),
    "missing coeffs dataset": (lambda f: f.__delitem__("coeffs"), ["missing datasets ['coeffs']"]),
    "missing equation attribute": (lambda f: f.attrs.__delitem__("equation"), ["'equation'"]),
    "coeffs wrong shape": (replace("coeffs", np.zeros((6, 2))), ["coeffs has shape (6, 2)"]),
    "coeff_names not matching K": (set_attr("coeff_names", '["nu"]'), ["coeff_names ['nu']"]),
    "coeff_names not JSON": (set_attr("coeff_names", "nu,"), ["coeff_names is not a JSON"]),
    "t stored as [T]": (replace("t", np.arange(12) * 0.1), ["t has shape (12,), expected (6, 12)"]),
    "x of wrong width": (replace("x", np.zeros((6, 17))), ["x has shape (6, 17)"]),
    "integer u": (replace("u", np.zeros((6, 12, 16), dtype=np.int32)), ["u must be float"]),
    "2-D u": (replace("u", np.zeros((6, 12))), ["u must be float"]),
    "u is a group": (u_as_group, ["groups where datasets belong ['u']"]),
    "float index": (replace("index", np.arange(6.0)), ["index must be integer"]),
    "index listed twice": (replace("index", np.array([0, 1, 2, 2, 4, 5])), ["more than once"]),
    "index of wrong length": (replace("index", np.arange(5)), ["index has shape (5,)"]),
    "t not increasing": (set_value("t", (2, 6), 0.0), ["not strictly increasing"]),
    "unknown equation": (set_attr("equation", "heat"), ["equation='heat'"]),
}


@pytest.mark.parametrize("case", list(PDE_FILE_CASES))
def test_pde_bad_file_is_named_by_loader_and_validate(case, tmp_path, capsys):
    path = write_pde(tmp_path / "kdv_chunk0000of0001.h5")
    change, words = PDE_FILE_CASES[case]
    with h5py.File(path, "r+") as f:
        change(f)
    for root in (path, tmp_path):  # the file itself and its folder
        agree_reject(root, pde_loader, capsys, [str(path), *words])


def test_pde_clean_file_and_folder_pass_both(tmp_path, capsys):
    write_pde(tmp_path / "a.h5")
    write_pde(tmp_path / "b.h5", first_id=6)
    (tmp_path / "burgers").mkdir()
    write_pde(tmp_path / "burgers" / "c.h5", "burgers", coeff_names=("nu",))
    for root in (tmp_path, tmp_path / "a.h5", tmp_path / "burgers"):
        assert pde_loader(root) is None
        rc, out = run_validate(capsys, root)
        assert rc == 0 and "OK" in out, out


def test_pde_folder_problems(tmp_path, capsys):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    write_pde(mixed / "a.h5")
    write_pde(mixed / "b.h5", "ks", first_id=6)
    agree_reject(mixed, pde_loader, capsys, ["mix equations", "kdv: a.h5", "ks: b.h5"])

    grids = tmp_path / "grids"
    grids.mkdir()
    write_pde(grids / "a.h5")
    write_pde(grids / "b.h5", nx=32, first_id=6)
    agree_reject(grids, pde_loader, capsys, [str(grids), "mix frame/grid shapes"])

    twice = tmp_path / "twice"
    twice.mkdir()
    write_pde(twice / "a.h5")
    write_pde(twice / "b.h5", first_id=3)  # ids 3..8 overlap 0..5
    agree_reject(twice, pde_loader, capsys, [str(twice / "b.h5"), "[3, 4, 5] also in a.h5"])

    dir_like_file = tmp_path / "dirlike"
    dir_like_file.mkdir()
    write_pde(dir_like_file / "a.h5")
    (dir_like_file / "b.h5").mkdir()
    agree_reject(dir_like_file, pde_loader, capsys, [f"{dir_like_file / 'b.h5'}: is a directory"])

    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.h5").write_bytes(b"not hdf5")
    agree_reject(junk, pde_loader, capsys, [str(junk / "a.h5"), "not a readable HDF5"])

    empty_h5_dir = tmp_path / "empty.h5"
    empty_h5_dir.mkdir()
    agree_reject(empty_h5_dir, pde_loader, capsys, [f"{empty_h5_dir}: is a directory"])

    missing = tmp_path / "gone.h5"
    agree_reject(missing, pde_loader, capsys, [str(missing)])


def test_pde_empty_folder(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no .h5 trajectory files" in pde_loader(empty)
    rc, out = run_validate(capsys, empty)
    assert rc == 1 and str(empty) in out
