import pytest
import torch

from equissl.datasets.contract import check_batch, make_item


def test_make_item_types():
    views = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    item = make_item(views, torch.zeros(2, 7, dtype=torch.float64), label=3, index=9)
    assert item["views"].dtype == torch.float32
    assert item["latents"].dtype == torch.float32
    assert item["label"].dtype == torch.int64 and item["label"].shape == ()
    assert item["coeffs"].shape == (0,)
    batch = torch.utils.data.default_collate([item, item])
    check_batch(batch)


def test_shape_errors():
    with pytest.raises(ValueError, match="latents"):
        make_item(torch.zeros(2, 3, 4, 4), torch.zeros(3, 7))
    batch = torch.utils.data.default_collate([make_item(torch.zeros(2, 1, 4), torch.zeros(2, 1))])
    del batch["coeffs"]
    with pytest.raises(ValueError, match="coeffs"):
        check_batch(batch)
