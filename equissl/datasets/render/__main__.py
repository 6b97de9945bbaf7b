"""``python -m equissl.datasets.render sheet ROOT OUT.png [options]``: write a contact sheet.

Datasets are rendered with ``equissl-generate`` (or ``generate_iebench`` from Python).
"""

from __future__ import annotations

import argparse

from equissl.datasets.render.contact_sheet import make_contact_sheet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m equissl.datasets.render")
    sub = parser.add_subparsers(dest="command", required=True)
    sheet = sub.add_parser("sheet", help="tile a few objects' views of a dataset into a PNG")
    sheet.add_argument("root", help="dataset root (<root>/<synset>/<obj_id>/image_*.jpg)")
    sheet.add_argument("out_png", help="PNG to write")
    sheet.add_argument("--objects-per-class", type=int, default=2)
    sheet.add_argument("--views", type=int, default=6)
    sheet.add_argument("--max-classes", type=int, default=None)
    sheet.add_argument("--tile", type=int, default=None, help="tile side in pixels")
    args = parser.parse_args(argv)
    path = make_contact_sheet(
        args.root,
        args.out_png,
        objects_per_class=args.objects_per_class,
        views=args.views,
        max_classes=args.max_classes,
        tile=args.tile,
    )
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
