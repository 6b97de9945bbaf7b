"""make_contact_sheet tiles the views of a few objects per class into one PNG."""

from __future__ import annotations

import pytest
from PIL import Image

from equissl.datasets.render import class_name, make_contact_sheet
from equissl.datasets.render.shapes import FAMILIES


def test_sheet_layout(tiny_dataset, tmp_path):
    root, _ = tiny_dataset
    out = make_contact_sheet(
        root,
        tmp_path / "sheets" / "sheet.png",
        objects_per_class=2,
        views=2,
        tile=32,
        label_width=100,
    )
    with Image.open(out) as im:
        assert im.format == "PNG" and im.mode == "P"  # 256-colour palette, see the module
        assert len(im.getcolors(maxcolors=256)) > 8  # real renders, not a blank sheet
        assert im.size == (100 + 2 * (32 + 2), 4 * (32 + 2))  # 2 classes × 2 objects
    one = make_contact_sheet(
        root, tmp_path / "one.png", objects_per_class=1, views=1, max_classes=1
    )
    with Image.open(one) as im:
        assert im.size[1] == 32 + 2


def test_names_and_errors(tmp_path):
    assert class_name(FAMILIES[2].synset) == FAMILIES[2].name
    assert class_name("03001627") == "chair" and class_name("12345678") == "12345678"
    with pytest.raises(FileNotFoundError, match="no rendered views"):
        make_contact_sheet(tmp_path, tmp_path / "x.png")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        make_contact_sheet(tmp_path / "missing", tmp_path / "x.png")
