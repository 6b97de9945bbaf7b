import pytest
import torch

from equissl.checkpointing import atomic_torch_save, load_checkpoint


class Custom:
    pass


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("boom while writing")


def test_failed_write_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"step": torch.tensor(1)}, path)
    with pytest.raises(RuntimeError, match="boom"):
        atomic_torch_save({"step": torch.tensor(2), "bad": Unpicklable()}, path)
    assert load_checkpoint(path)["step"].item() == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temp file left


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        load_checkpoint(tmp_path / "nope.ckpt")
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(RuntimeError, match="bad.ckpt"):
        load_checkpoint(bad)


def test_checkpoints_refuse_arbitrary_objects(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"obj": Custom()}, path)
    with pytest.raises(RuntimeError, match="evil.ckpt"):
        load_checkpoint(path)
