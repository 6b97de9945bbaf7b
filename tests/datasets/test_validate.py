import subprocess
import sys

import numpy as np
import pytest

from equissl.datasets.validate_tree import validate_iebench


def test_clean_tree_passes(iebench_tree):
    report = validate_iebench(iebench_tree, progress=False)
    assert report.ok, report.summary()
    assert report.objects == 12 and report.files == 12 * 5 * 2


def test_every_problem_is_named(iebench_tree):
    entries = sorted(p for p in iebench_tree.glob("*/*") if p.parent.name != "data")
    corrupt = entries[0] / "image_3.jpg"
    corrupt.write_bytes(corrupt.read_bytes()[:40])  # truncated JPEG
    nan_latent = entries[1] / "latent_0.npy"
    np.save(nan_latent, np.full(7, np.nan))
    missing = entries[2] / "latent_4.npy"
    missing.unlink()
    report = validate_iebench(iebench_tree, progress=False)
    text = report.summary()
    assert not report.ok
    for path in (corrupt, nan_latent, missing):
        assert str(path) in text


def test_missing_split_entry(iebench_tree):
    images = iebench_tree / "data" / "val_images.npy"
    arr = np.load(images)
    np.save(images, np.concatenate([arr, np.array(["/02691156/doesnotexist/"])]))
    np.save(iebench_tree / "data" / "val_labels.npy", np.zeros(len(arr) + 1, dtype=np.int64))
    report = validate_iebench(iebench_tree, progress=False)
    assert any("doesnotexist" in p for p in report.problems)


@pytest.mark.e2e
def test_cli_exit_status(iebench_tree):
    cmd = [sys.executable, "-c", "from equissl.apps.cli import validate; validate()"]
    ok = subprocess.run([*cmd, str(iebench_tree)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = next(iebench_tree.glob("0*/*/image_0.jpg"))
    bad.write_bytes(b"garbage")
    fail = subprocess.run([*cmd, str(iebench_tree)], capture_output=True, text=True)
    assert fail.returncode == 1
    assert str(bad) in fail.stdout


def test_a_synset_with_two_labels_is_named_by_validate_and_at_start_up(iebench_tree):
    import numpy as np
    import pytest

    from equissl.datasets.iebench_format import DatasetFormatError
    from equissl.datasets.validate import check_split

    labels_file = iebench_tree / "data" / "train_labels.npy"
    labels = np.load(labels_file)
    images = np.load(iebench_tree / "data" / "train_images.npy")
    labels[1] = labels[0] + 1  # object 1 is of object 0's synset in the fixture
    assert images[1].split("/")[1] == images[0].split("/")[1]
    np.save(labels_file, labels)
    report = validate_iebench(iebench_tree, progress=False)
    synset = images[0].split("/")[1]
    assert any(f"synset {synset}" in p and images[1].strip("/") in p for p in report.problems)
    with pytest.raises(DatasetFormatError, match=f"synset {synset} carry 2 different labels"):
        check_split(iebench_tree, "train")


def test_bounded_map_keeps_order_and_a_bounded_window():
    """validate's passes submit a few objects ahead of the one consumed, not every object
    of the split at once (a future and a result each)."""
    from concurrent.futures import ThreadPoolExecutor

    from equissl.datasets.validate import bounded_map

    submitted, consumed = [], []

    def work(i):
        submitted.append(i)
        return i * i

    with ThreadPoolExecutor(max_workers=2) as pool:
        for i, result in enumerate(bounded_map(pool, work, range(100), 4)):
            assert result == i * i
            assert len(submitted) <= i + 4  # at most the window ahead of the consumer
            consumed.append(result)
    assert consumed == [i * i for i in range(100)]


def test_a_minority_latent_length_is_named_per_view(iebench_tree):
    """The pass keeps each object's usual case (one latent length for every view) as a
    range; an object whose views disagree, or whose length is the minority, is named."""
    entries = sorted(p for p in iebench_tree.glob("*/*") if p.parent.name != "data")
    np.save(entries[0] / "latent_2.npy", np.zeros(10))  # one view of one object
    for v in range(5):  # every view of another object
        np.save(entries[1] / f"latent_{v}.npy", np.zeros(10))
    report = validate_iebench(iebench_tree, progress=False, workers=1)
    text = report.summary()
    assert str(entries[0] / "latent_2.npy") in text
    assert all(str(entries[1] / f"latent_{v}.npy") in text for v in range(5))
    assert str(entries[0] / "latent_1.npy") not in text
