"""The feature cache: every named part, sequence representations, content keys."""

import torch
from hydra import compose, initialize_config_module

from equissl.apps.hydra_main import _resolved
from equissl.checkpointing import file_digest
from equissl.datasets.base import build_dataset
from equissl.eval.features import cache_key, cached_features, extract_features
from equissl.ssl.loading import build_method
from equissl.ssl.vicreg import VICReg


class MeanOfViews(VICReg):
    """A toy sequence method: the mean of the views' backbone features."""

    sequence_representation = True

    def represent_sequence(self, views, latents):
        b, m = views.shape[:2]
        assert latents.shape[:2] == (b, m)
        return {"full": self.backbone(views.flatten(0, 1)).view(b, m, -1).mean(1)}


def config(tree):
    with initialize_config_module("equissl.configs", version_base="1.3"):
        return _resolved(
            compose(
                "pretrain",
                overrides=[
                    "method=vicreg",
                    f"data.root={tree}",
                    "data.image_size=32",
                    "trainer=cpu",
                ],
            )
        )


def test_parts_and_sequences(iebench_tree):
    cfg = config(iebench_tree)
    ds = build_dataset(cfg["data"], "val", 1)
    method = MeanOfViews(cfg, ds.spec()).eval()
    fs = extract_features(
        method, ds, views_per_object=5, batch_size=4, progress=False, sequence_views=[1, 3, 9]
    )
    n = len(ds)
    assert fs.parts["full"].shape == (n, 5, 512) and fs.latents.shape == (n, 5, 7)
    assert fs.coeffs.shape == (n, 0) and fs.index.tolist() == list(range(n))
    # M is capped at the views available; M = 1 is view 0's own representation
    assert set(fs.sequences) == {"full@M1", "full@M3", "full@M5"}
    torch.testing.assert_close(
        fs.sequences["full@M1"][:, 0], fs.parts["full"][:, 0], atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(
        fs.sequences["full@M3"][:, 0], fs.parts["full"][:, :3].mean(1), atol=1e-5, rtol=1e-5
    )


def test_cache_key_follows_content(iebench_tree, tmp_path):
    cfg = config(iebench_tree)
    ds = build_dataset(cfg["data"], "val", 1)
    method = build_method(cfg, ds.spec())
    ckpt = tmp_path / "a.ckpt"
    torch.save({"w": torch.ones(3)}, ckpt)
    key = cache_key(file_digest(ckpt), ds.manifest(), {"views": 5})
    assert key == cache_key(file_digest(ckpt), ds.manifest(), {"views": 5})
    assert key != cache_key(file_digest(ckpt), ds.manifest(), {"views": 4})
    torch.save({"w": torch.zeros(3)}, ckpt)  # same path, other content
    assert key != cache_key(file_digest(ckpt), ds.manifest(), {"views": 5})
    key2 = cache_key(file_digest(ckpt), ds.manifest(), {"views": 5})
    img = iebench_tree / ds.split.entries[0] / "image_0.jpg"
    img.write_bytes(img.read_bytes() + b"\0")  # the data changed under the same root
    assert key2 != cache_key(
        file_digest(ckpt), build_dataset(cfg["data"], "val", 1).manifest(), {"views": 5}
    )
    file = tmp_path / "cache"
    first = cached_features(method, ds, file, views_per_object=5, progress=False)
    (file / "manifest.json").write_bytes(b"damaged")  # a damaged cache is re-extracted
    again = cached_features(method, ds, file, views_per_object=5, progress=False)
    torch.testing.assert_close(again.parts["full"], first.parts["full"])
