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


@pytest.mark.parametrize("where", ["top", "method", "data"])
def test_a_stored_config_is_never_instantiated(iebench_tree, tmp_path, where):
    """A ``_target_`` planted in a checkpoint's config runs nothing: loading names the
    unknown key, and the function it names was not called."""
    from equissl.checkpointing import CheckpointError
    from equissl.ssl.loading import load_method
    from equissl.training.pretrain import pretrain
    from tests.conftest import TOY, compose_pretrain

    ckpt = pretrain(
        compose_pretrain([f"data.root={iebench_tree}", *TOY, "trainer.max_steps=0"]),
        tmp_path / "run",
    )
    state = torch.load(ckpt, weights_only=True)
    marker = tmp_path / "ran.txt"
    planted = {"_target_": "equissl.atomic.atomic_write_text", "path": str(marker), "text": "x"}
    config = state["equissl"]["config"]
    (config if where == "top" else config[where]).update(planted)
    torch.save(state, tmp_path / "planted.ckpt")
    with pytest.raises(CheckpointError, match="unknown key"):
        load_method(tmp_path / "planted.ckpt")
    assert not marker.exists()
