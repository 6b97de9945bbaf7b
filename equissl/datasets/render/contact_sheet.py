"""A contact sheet of a 3DIEBench-format tree: a few objects per class, a few views each."""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from equissl.datasets.render.layout import SPLITS_DIR, image_name
from equissl.datasets.render.shapes import FAMILY_BY_SYNSET

# ShapeNetCore v2 synset names (the 55 classes of 3DIEBench), for sheets of real data.
SHAPENET_NAMES = {
    "02691156": "airplane",
    "02747177": "trash bin",
    "02773838": "bag",
    "02801938": "basket",
    "02808440": "bathtub",
    "02818832": "bed",
    "02828884": "bench",
    "02843684": "birdhouse",
    "02871439": "bookshelf",
    "02876657": "bottle",
    "02880940": "bowl",
    "02924116": "bus",
    "02933112": "cabinet",
    "02942699": "camera",
    "02946921": "can",
    "02954340": "cap",
    "02958343": "car",
    "02992529": "cellphone",
    "03001627": "chair",
    "03046257": "clock",
    "03085013": "keyboard",
    "03207941": "dishwasher",
    "03211117": "display",
    "03261776": "earphone",
    "03325088": "faucet",
    "03337140": "file cabinet",
    "03467517": "guitar",
    "03513137": "helmet",
    "03593526": "jar",
    "03624134": "knife",
    "03636649": "lamp",
    "03642806": "laptop",
    "03691459": "loudspeaker",
    "03710193": "mailbox",
    "03759954": "microphone",
    "03761084": "microwave",
    "03790512": "motorbike",
    "03797390": "mug",
    "03928116": "piano",
    "03938244": "pillow",
    "03948459": "pistol",
    "03991062": "flowerpot",
    "04004475": "printer",
    "04074963": "remote",
    "04090263": "rifle",
    "04099429": "rocket",
    "04225987": "skateboard",
    "04256520": "sofa",
    "04330267": "stove",
    "04379243": "table",
    "04401088": "telephone",
    "04460130": "tower",
    "04468005": "train",
    "04530566": "watercraft",
    "04554684": "washer",
}

_VIEW_RE = re.compile(r"^image_(\d+)\.jpg$")


def class_name(synset: str) -> str:
    """Readable name of a synset: procedural family, ShapeNet class, or the id itself."""
    if synset in FAMILY_BY_SYNSET:
        return FAMILY_BY_SYNSET[synset].name
    return SHAPENET_NAMES.get(synset, synset)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _views_of(obj_dir: Path) -> list[Path]:
    found = [(int(m.group(1)), p) for p in obj_dir.iterdir() if (m := _VIEW_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def make_contact_sheet(
    root: str | Path,
    out_png: str | Path,
    *,
    objects_per_class: int = 2,
    views: int = 6,
    max_classes: int | None = None,
    tile: int | None = None,
    label_width: int | None = None,
) -> Path:
    """Tile the first ``views`` views of the first ``objects_per_class`` objects of each class.

    One row per object: a label cell (class name, synset, short object id) then its views.

    Args:
        root: dataset root (``<root>/<synset>/<obj_id>/image_{v}.jpg``).
        out_png: PNG to write (parent folders are created).
        objects_per_class: objects (rows) per class, sorted ids.
        views: views (columns) per object, starting at view 0.
        max_classes: only the first classes (sorted synsets); ``None`` = all.
        tile: side of each image tile in pixels; ``None`` = the images' own size.
        label_width: width of the label column; ``None`` = about 1.3 tiles (≥ 110 px).

    Returns:
        The path of the written PNG.

    Raises:
        FileNotFoundError: ``root`` is not a directory or holds no rendered views.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root {root} is not a directory")
    synsets = sorted(
        p
        for p in root.iterdir()
        if p.is_dir() and p.name != SPLITS_DIR and not p.name.startswith(".")
    )
    if max_classes is not None:
        synsets = synsets[:max_classes]
    rows: list[tuple[str, str, list[Path]]] = []
    for syn in synsets:
        objs = sorted(p for p in syn.iterdir() if p.is_dir())[:objects_per_class]
        for obj in objs:
            imgs = _views_of(obj)[:views]
            if imgs:
                rows.append((syn.name, obj.name, imgs))
    if not rows:
        raise FileNotFoundError(f"no rendered views ({image_name(0)}, ...) under {root}")
    if tile is None:
        with Image.open(rows[0][2][0]) as first:
            tile = first.size[0]
    label_w = label_width or max(110, int(1.3 * tile))
    gap = 2
    width = label_w + views * (tile + gap)
    height = len(rows) * (tile + gap)
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    big, small = _font(max(11, tile // 7)), _font(max(9, tile // 11))
    for r, (syn, obj, imgs) in enumerate(rows):
        y = r * (tile + gap)
        draw.text((6, y + tile // 2 - tile // 6), class_name(syn), fill=(0, 0, 0), font=big)
        draw.text(
            (6, y + tile // 2 + tile // 16), f"{syn}/{obj[:8]}", fill=(90, 90, 90), font=small
        )
        for c, path in enumerate(imgs):
            with Image.open(path) as im:
                cell = im.convert("RGB")
            if cell.size != (tile, tile):
                cell = cell.resize((tile, tile), Image.Resampling.BILINEAR)
            sheet.paste(cell, (label_w + c * (tile + gap), y))
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    # 256 colours keep a 12-class sheet under ~0.5 MB with no visible banding.
    sheet = sheet.convert("RGB").quantize(colors=256, dither=Image.Dither.NONE)
    sheet.save(out_png, format="PNG", optimize=True)
    return out_png
