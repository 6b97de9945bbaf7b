import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from equissl.datasets.contract import check_batch
from equissl.datasets.iebench import IEBenchDataset
from equissl.datasets.iebench_actions import IEBenchActionSpace
from equissl.datasets.iebench_format import DatasetFormatError


def test_reader_follows_the_batch_contract(iebench_tree):
    ds = IEBenchDataset(iebench_tree, "train", num_views=3, image_size=24)
    assert ds.views_per_object == 5 and ds.latent_dim == 7
    item = ds[0]
    assert item["views"].shape == (3, 3, 24, 24)
    assert item["latents"].shape == (3, 7) and item["latents"].dtype == torch.float32
    assert item["coeffs"].shape == (0,)
    batch = torch.utils.data.default_collate([ds[i] for i in range(4)])
    check_batch(batch)
    # labels are the stored (non-contiguous) synset indices
    assert set(ds.labels.tolist()) == {0, 7, 22}


def test_views_and_latents_match_files(iebench_tree):
    ds = IEBenchDataset(iebench_tree, "val", num_views=2)
    entry = ds.split.entries[1]
    item = ds.load(1, [4, 2])
    lat = np.load(iebench_tree / entry / "latent_2.npy")
    np.testing.assert_allclose(item["latents"][1].numpy(), lat, rtol=1e-6)
    assert item["views"].shape[-1] == 32  # stored size kept when image_size is None


def test_relative_action_matches_scipy(iebench_tree):
    ds = IEBenchDataset(iebench_tree, "train", num_views=2)
    batch = torch.utils.data.default_collate([ds[i] for i in range(6)])
    lat = batch["latents"].double().numpy()
    act = ds.action_space.relative(batch["latents"][:, 0], batch["latents"][:, 1]).numpy()
    ref = (
        Rotation.from_euler("xyz", lat[:, 0, :3]).inv() * Rotation.from_euler("xyz", lat[:, 1, :3])
    ).as_quat()
    np.testing.assert_allclose(act, ref, atol=1e-5)


def test_rotcolor_and_translation_targets(iebench_t_tree):
    ds = IEBenchDataset(iebench_t_tree, "train")
    action = ds.action_space.select(["rotation", "color"])  # SIERotColor's action
    assert ds.latent_dim == 10 and action.dim == 6
    a, b = ds[0]["latents"]
    act = action.relative(a, b)
    np.testing.assert_allclose(act[4:].numpy(), (b[[3, 6]] - a[[3, 6]]).numpy(), atol=1e-6)
    base = ds.action_space.target("translation", a, b)
    obj = ds.action_space.target("translation_object", a, b)
    ra = Rotation.from_euler("xyz", a[:3].double().numpy())
    np.testing.assert_allclose(obj.numpy(), ra.inv().apply(base.double().numpy()), atol=1e-5)


def test_canonical_sign_option():
    space = IEBenchActionSpace(canonical_sign=True)
    lat = torch.zeros(50, 7)
    lat[:, :3] = torch.rand(50, 3) * 6 - 3
    q = space.relative(lat[:25], lat[25:])
    assert (q[:, 3] >= 0).all()


def test_bad_inputs_name_the_file(iebench_tree, tmp_path):
    with pytest.raises(DatasetFormatError, match="train_images.npy"):
        IEBenchDataset(iebench_tree, "train", splits_dir=tmp_path)
    with pytest.raises(DatasetFormatError, match="not a directory"):
        IEBenchDataset(tmp_path / "nope")
    ds = IEBenchDataset(iebench_tree, "train")
    entry = ds.split.entries[0]
    bad_img = iebench_tree / entry / "image_1.jpg"
    bad_img.write_bytes(b"not a jpeg")
    with pytest.raises(DatasetFormatError, match=str(bad_img)):
        ds.load(0, [1])
    bad_lat = iebench_tree / entry / "latent_2.npy"
    np.save(bad_lat, np.zeros(5))
    with pytest.raises(DatasetFormatError, match="5 values"):
        ds.load(0, [2])
    with pytest.raises(ValueError, match="num_views"):
        IEBenchDataset(iebench_tree, "train", num_views=6)
    with pytest.raises(ValueError, match="not available"):
        IEBenchDataset(iebench_tree, "train").action_space.select(["translation"])
