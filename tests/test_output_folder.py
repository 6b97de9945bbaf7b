"""No command deletes or overwrites what it did not create: generate, pack, data.generate and a
failed evaluation, each against a user's folder that is checksummed before and after."""

from __future__ import annotations

import hashlib
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from equissl.output_folder import FolderNotOurs, claim_output


def snapshot(root: Path) -> dict[str, str]:
    """``{relative path: sha1 of the bytes, or "dir"}`` of everything under ``root``."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = "dir" if p.is_dir() else hashlib.sha1(p.read_bytes()).hexdigest()
    return out


# --- the rule itself -----------------------------------------------------------------------


def test_claim_missing_then_same_settings_then_other(tmp_path):
    out, settings = tmp_path / "new", {"seed": 0, "views": 4}
    claim_output(out, out / "data" / "rec.json", settings, "a dataset")
    claim_output(out, out / "data" / "rec.json", dict(settings), "a dataset")  # a rerun
    before = snapshot(out)
    with pytest.raises(FolderNotOurs, match=r"seed: 0 -> 1") as err:
        claim_output(out, out / "data" / "rec.json", {**settings, "seed": 1}, "a dataset")
    assert "views" not in str(err.value)  # only the differing keys
    assert snapshot(out) == before


def test_claim_refuses_a_folder_of_someone_elses_files(tmp_path):
    out = tmp_path / "mine"
    (out / "notes").mkdir(parents=True)
    (out / "notes" / "todo.txt").write_text("keep me")
    before = snapshot(out)
    with pytest.raises(FolderNotOurs, match="todo.txt") as err:
        claim_output(out, out / "rec.json", {"a": 1}, "a dataset")
    assert "nothing was written" in str(err.value)
    assert snapshot(out) == before


def test_claim_accepts_empty_folders_and_interrupted_temporaries(tmp_path):
    out = tmp_path / "out"
    (out / "data").mkdir(parents=True)
    (out / "data" / ".rec.json.abc123.tmp").write_text("{")  # an interrupted claim
    claim_output(out, out / "data" / "rec.json", {"a": 1}, "a dataset")
    assert (out / "data" / "rec.json").is_file()


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", ""])
def test_claim_refuses_a_damaged_record_naming_it(tmp_path, content):
    out = tmp_path / "out"
    out.mkdir()
    (out / "rec.json").write_text(content)
    with pytest.raises(FolderNotOurs, match=r"rec\.json"):
        claim_output(out, out / "rec.json", {"a": 1}, "a dataset")
    assert (out / "rec.json").read_text() == content


def test_claim_refuses_a_file_in_place_of_the_folder(tmp_path):
    out = tmp_path / "out"
    out.write_text("a file")
    with pytest.raises(FolderNotOurs, match="is a file"):
        claim_output(out, out / "rec.json", {"a": 1}, "a dataset")
    assert out.read_text() == "a file"


def test_concurrent_claims_agree_on_one_record(tmp_path):
    """Array tasks starting together: every one may proceed, one record is written."""
    out, errors = tmp_path / "out", []

    def claim():
        try:
            claim_output(out, out / "data" / "rec.json", {"a": 1}, "a dataset")
        except Exception as err:  # noqa: BLE001 (collected and asserted below)
            errors.append(err)

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [p.name for p in (out / "data").iterdir()] == ["rec.json"]


# --- the commands --------------------------------------------------------------------------


def test_generate_refuses_a_published_tree_without_render_config(iebench_tree):
    """3DIEBench as published (SIE's split files, no render_config.json): untouched."""
    from equissl.apps.generate import main

    before = snapshot(iebench_tree)
    with pytest.raises(SystemExit, match="is not empty") as err:
        main([f"out={iebench_tree}", "num_classes=2", "objects_per_class=2", "views=2"])
    assert "train_images.npy" in str(err.value) or "image_0.jpg" in str(err.value)
    assert snapshot(iebench_tree) == before


def test_generate_refuses_other_settings_in_its_own_folder(tmp_path):
    from equissl.datasets.render.layout import CONFIG_FILE, SPLITS_DIR
    from equissl.output_folder import claim_output as claim

    out = tmp_path / "rendered"
    claim(out, out / SPLITS_DIR / CONFIG_FILE, {"seed": 3}, "a rendered dataset")
    before = snapshot(out)
    from equissl.apps.generate import main

    with pytest.raises(SystemExit, match="other settings"):
        main([f"out={out}", "num_classes=2", "objects_per_class=2", "views=2"])
    assert snapshot(out) == before


def test_pde_generate_refuses_a_folder_holding_images(iebench_tree):
    from equissl.apps.generate import main

    before = snapshot(iebench_tree)
    with pytest.raises(SystemExit, match="is not empty"):
        main(["data=pde_burgers", f"out={iebench_tree}", "num_trajectories=2"])
    assert snapshot(iebench_tree) == before


def test_pde_generate_reruns_into_its_own_folder_and_refuses_other_settings(tmp_path):
    from equissl.datasets.pde.generate import generate_pde

    out = tmp_path / "kdv"
    small = {"nx": 32, "nt": 8, "nt_grid": 16, "progress": False}
    generate_pde("kdv", out, num_trajectories=2, **small)
    before = snapshot(out)
    assert generate_pde("kdv", out, num_trajectories=2, **small)["skipped"]
    assert snapshot(out) == before
    with pytest.raises(FolderNotOurs, match="seed: 0 -> 1"):
        generate_pde("kdv", out, num_trajectories=2, seed=1, **small)
    assert snapshot(out) == before


def test_pack_refuses_an_existing_dataset_as_out(iebench_tree, tmp_path):
    """``equissl-pack SRC OUT`` with OUT another dataset: its split files stay."""
    from equissl.apps.pack import main
    from tests.conftest import write_iebench_tree

    other = write_iebench_tree(tmp_path / "other", seed=5)
    before = snapshot(other)
    assert main([str(iebench_tree), str(other)]) == 1
    assert snapshot(other) == before


def test_pack_reruns_into_its_own_output(iebench_tree, tmp_path, capsys):
    from equissl.apps.pack import main

    out = tmp_path / "packed"
    assert main([str(iebench_tree), str(out), "verify=false"]) == 0
    before = snapshot(out)
    assert main([str(iebench_tree), str(out), "verify=false"]) == 0
    assert snapshot(out) == before
    assert main([str(iebench_tree), str(out), "encoding=raw"]) == 1
    assert "encoding: 'jpeg' -> 'raw'" in capsys.readouterr().out
    assert snapshot(out) == before


def test_data_generate_refuses_a_pde_folder(tmp_path):
    """``data.generate`` with ``data.root`` a folder of something else renders nothing."""
    from equissl.training.pretrain import prepare_data

    pde = tmp_path / "pde"
    pde.mkdir()
    (pde / "kdv_chunk0000of0001.h5").write_bytes(b"not ours")
    before = snapshot(pde)
    data = {
        "impl": "iebench",
        "root": str(pde),
        "splits_dir": None,
        "train_split": "train",
        "generate": {"num_classes": 2, "objects_per_class": 2, "views": 2, "resolution": 16},
    }
    with pytest.raises(FolderNotOurs, match="kdv_chunk0000of0001.h5"):
        prepare_data(data)
    assert snapshot(pde) == before


def test_failed_evaluate_keeps_an_existing_folder(tmp_path, monkeypatch):
    """A failing ``equissl-evaluate hydra.run.dir=L`` leaves a folder L it did not make."""
    import equissl.apps.cli as cli

    folder = tmp_path / "L"
    (folder / "old.log").mkdir(parents=True)
    (folder / "train.log").write_text("notes")
    before = snapshot(folder)
    ckpt = tmp_path / "broken.ckpt"
    ckpt.write_bytes(b"not a checkpoint")
    argv = ["equissl-evaluate", f"checkpoint={ckpt}", "data_root=/nonexistent"]
    monkeypatch.setattr(sys, "argv", [*argv, f"hydra.run.dir={folder}"])
    with pytest.raises(SystemExit):
        cli.evaluate()
    assert folder.is_dir()
    kept = snapshot(folder)
    assert {k: v for k, v in kept.items() if k in before} == before

    # a folder the failing command made itself is removed again
    fresh = tmp_path / "fresh"
    monkeypatch.setattr(sys, "argv", [*argv, f"hydra.run.dir={fresh}"])
    with pytest.raises(SystemExit):
        cli.evaluate()
    assert not fresh.exists()


def test_evaluating_an_extended_run_keeps_the_earlier_results(tmp_path):
    from equissl.eval.evaluate import keep_earlier_results

    out = tmp_path / "eval"
    out.mkdir()
    (out / "results.json").write_text('{"checkpoint_sha1": "aaaaaaaa11"}')
    (out / "rotation_equi.png").write_bytes(np.arange(4, dtype=np.uint8).tobytes())
    (out / "evaluate.log").write_text("log")
    before = snapshot(out)
    assert keep_earlier_results(out, "aaaaaaaa11") is None  # the same checkpoint again
    assert snapshot(out) == before
    dest = keep_earlier_results(out, "bbbbbbbb22")
    assert dest == out / "earlier" / "aaaaaaaa"
    assert (dest / "results.json").read_text() == '{"checkpoint_sha1": "aaaaaaaa11"}'
    assert (dest / "rotation_equi.png").is_file() and (out / "evaluate.log").is_file()
    assert not (out / "results.json").exists()


@pytest.mark.e2e
def test_data_generate_finishes_its_own_render_and_refuses_other_settings(tmp_path):
    """A render killed after its split files were written is finished by the next run (not
    trained on half-written); a render of other settings in the folder is refused; a
    dataset from elsewhere (no render record) is used as it is."""
    from equissl.datasets.iebench import IEBenchDataset
    from equissl.training.pretrain import prepare_data
    from tests.conftest import write_iebench_tree

    settings = {"num_classes": 2, "objects_per_class": 1, "views": 2, "resolution": 16, "spp": 1}
    data = {
        "impl": "iebench",
        "root": str(tmp_path / "qs"),
        "splits_dir": None,
        "train_split": "train",
        "generate": settings,
    }
    prepare_data(data)
    lost = next((tmp_path / "qs").glob("*/*/image_1.jpg"))
    lost.unlink()  # the render was killed before this view
    assert IEBenchDataset.needs_generation(data)
    prepare_data(data)
    assert lost.is_file()
    before = snapshot(tmp_path / "qs")
    with pytest.raises(FolderNotOurs, match="resolution: 16 -> 24"):
        prepare_data({**data, "generate": {**settings, "resolution": 24}})
    assert snapshot(tmp_path / "qs") == before
    theirs = write_iebench_tree(tmp_path / "published")
    published = snapshot(theirs)
    assert not IEBenchDataset.needs_generation({**data, "root": str(theirs)})
    prepare_data({**data, "root": str(theirs)})
    assert snapshot(theirs) == published
