"""Contact sheets of a 3DIEBench-format tree: one row per object, one column per view.

    python -m equissl.datasets.renderer.contact_sheet ROOT OUT.png [objects_per_class] [views]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from equissl.datasets.iebench_format import count_views, image_path, load_split

LABEL_WIDTH = 90


def make_contact_sheet(root: str | Path, out_png: str | Path, objects_per_class: int = 1,
                       views: int = 6, split: str = "train") -> Path:
    """Tile ``views`` views of ``objects_per_class`` objects of every class into one PNG."""
    root = Path(root)
    sp = load_split(root, split)
    names_file = root / "data" / "generator.json"
    names = json.loads(names_file.read_text())["classes"] if names_file.is_file() else {}
    rows, labels, seen = [], [], {}
    for entry, label in zip(sp.entries, sp.labels.tolist(), strict=True):
        if seen.get(label, 0) >= objects_per_class:
            continue
        seen[label] = seen.get(label, 0) + 1
        n = min(views, count_views(root / entry))
        imgs = [np.asarray(Image.open(image_path(root, entry, v)).convert("RGB"))
                for v in range(n)]
        rows.append(np.concatenate(imgs, axis=1))
        synset = entry.split("/")[0]
        labels.append(f"{label}: {names.get(synset, synset)}")
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255)
            for r in rows]
    grid = Image.fromarray(np.concatenate(rows, axis=0))
    sheet = Image.new("RGB", (grid.width + LABEL_WIDTH, grid.height), "white")
    sheet.paste(grid, (LABEL_WIDTH, 0))
    draw = ImageDraw.Draw(sheet)
    h = grid.height // len(rows)
    for i, text in enumerate(labels):
        draw.text((4, i * h + h // 2 - 5), text, fill="black")
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    sheet.quantize(colors=256, dither=Image.Dither.NONE).save(out_png, optimize=True)
    return out_png


if __name__ == "__main__":
    a = sys.argv[1:]
    if len(a) < 2:
        raise SystemExit(__doc__)
    make_contact_sheet(a[0], a[1], *(int(x) for x in a[2:4]))
