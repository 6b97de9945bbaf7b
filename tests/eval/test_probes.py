import torch

from equissl.eval.features import FeatureSet
from equissl.eval.probes import classification_probe, fixed_pairs, pair_regression_probe

CFG = {"epochs": 60, "lr": 1e-2, "weight_decay": 0.0, "batch_size": 64, "hidden_dim": 64,
       "val_pairs_per_object": 4, "seed": 0}


def toy(n: int, seed: int) -> FeatureSet:
    """4 views per object; dims 0-3 encode the class, dims 4-5 the view's 2-d latent."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(3, (n,), generator=g)
    lat = torch.randn(n, 4, 2, generator=g)
    feats = torch.randn(n, 4, 8, generator=g) * 0.1
    feats[..., :3] += torch.nn.functional.one_hot(labels, 3)[:, None].float() * 2
    feats[..., 4:6] += lat
    return FeatureSet(feats, lat, labels)


def test_classification_probe_learns_and_uses_only_its_part():
    train, val = toy(300, 0), toy(100, 1)
    good = classification_probe(train, val, slice(0, 4), 3, CFG, torch.device("cpu"), False)
    bad = classification_probe(train, val, slice(4, 8), 3, CFG, torch.device("cpu"), False)
    assert good.metrics["top1"] > 0.95 and good.metrics["balanced_top1"] > 0.95
    assert bad.metrics["top1"] < 0.6


def test_pair_regression_probe_learns_relative_target():
    train, val = toy(400, 2), toy(100, 3)

    def target(a, b):
        return b - a

    good = pair_regression_probe(train, val, slice(4, 6), target, CFG, torch.device("cpu"),
                                 progress=False)
    bad = pair_regression_probe(train, val, slice(0, 4), target, CFG, torch.device("cpu"),
                                progress=False)
    assert good.metrics["r2_global"] > 0.9 and good.metrics["r2_sklearn"] > 0.9
    assert bad.metrics["r2_sklearn"] < 0.2


def test_fixed_pairs_are_distinct_and_seeded():
    p = fixed_pairs(50, 5, 3, seed=7)
    assert p.shape == (150, 3) and (p[:, 1] != p[:, 2]).all()
    assert torch.equal(p, fixed_pairs(50, 5, 3, seed=7))
