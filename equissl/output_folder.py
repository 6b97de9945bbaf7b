"""Output folders that a writing command owns: it writes only into a folder that is missing,
empty, or that holds its own settings record with the same settings (a rerun or another
chunk of the same job).

``equissl-generate``, ``data.generate`` and ``equissl-pack`` write into folders users name.
Without this check, a typo in ``out=`` or ``data.root=`` replaced the split files of a
published dataset, or rendered 400 objects into a PDE folder. The record is created
exclusively (:func:`equissl.atomic.atomic_create_text`), so array tasks that start together
agree on one record and a reader never sees half of one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from equissl.atomic import atomic_create_text


class FolderNotOurs(ValueError):
    """The output folder holds something this command did not write, or other settings."""


def _is_own_temp(name: str) -> bool:
    """Hidden temporary files of an interrupted atomic write (``.<name>.<random>.tmp``)."""
    return name.startswith(".") and name.endswith(".tmp")


def foreign_entries(folder: Path, limit: int = 5) -> list[Path]:
    """Up to ``limit`` files in ``folder`` (recursively) other than interrupted temporary
    files; empty sub-folders do not count."""
    found: list[Path] = []
    for parent, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if not _is_own_temp(name):
                found.append(Path(parent) / name)
                if len(found) >= limit:
                    return found
    return found


def read_record(path: Path) -> dict[str, Any]:
    """The settings record at ``path``.

    Raises:
        FolderNotOurs: it cannot be read as a JSON object (names the file).
    """
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FolderNotOurs(
            f"{path} cannot be read ({err}); it was damaged or not written by equissl, so "
            "the folder's content is unknown: write into another folder"
        ) from None
    if not isinstance(value, dict):
        raise FolderNotOurs(f"{path} is not a settings record (a JSON object); use another folder")
    return value


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``"key: old -> new"`` for every key whose value differs (sorted)."""
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys]


def _check_same(record: Path, settings: dict[str, Any], what: str) -> None:
    diff = differences(read_record(record), settings)
    if diff:
        raise FolderNotOurs(
            f"{record.parent.parent if record.parent.name == 'data' else record.parent} "
            f"already holds {what} made with other settings ({'; '.join(diff)}); use another "
            f"output folder or the settings recorded in {record}"
        )


def _create_exclusive(record: Path, settings: dict[str, Any]) -> bool:
    """Write ``record`` unless it exists; returns whether this call created it."""
    return atomic_create_text(record, json.dumps(settings, indent=2, sort_keys=True) + "\n")


def claim_output(
    folder: str | Path,
    record: str | Path,
    settings: dict[str, Any],
    what: str,
    adopt: Callable[[Path], bool] | None = None,
) -> None:
    """Make sure this command may write into ``folder``; record ``settings`` on first use.

    Args:
        folder: the output folder.
        record: the settings record's path (inside ``folder``).
        settings: JSON-serialisable settings that determine the folder's content.
        what: the content in words, for messages (``"a rendered dataset"``).
        adopt: called when ``folder`` holds files but no record: whether they are an earlier
            output of the same command with these settings (written before records existed),
            so the record may be added.

    Raises:
        FolderNotOurs: the record names other settings or is damaged, or ``folder`` holds
            files without a record (the message lists some of them).
    """
    folder, record = Path(folder), Path(record)
    if folder.exists() and not folder.is_dir():
        raise FolderNotOurs(f"{folder} is a file, not a folder; name a new or empty folder")
    if not record.exists():
        foreign = foreign_entries(folder) if folder.is_dir() else []
        # another task of the same job may have claimed the folder (record first, then its
        # files) while we listed it: then its record decides
        if foreign and record.exists():
            foreign = []
        elif foreign and not (adopt is not None and adopt(folder)):
            shown = ", ".join(str(p) for p in foreign)
            raise FolderNotOurs(
                f"{folder} is not empty and has no {record.name} (it holds {shown}"
                f"{' …' if len(foreign) >= 5 else ''}); equissl writes {what} only into a new "
                f"or empty folder, or one it made itself with the same settings. Name a new "
                "folder; nothing was written"
            )
        elif _create_exclusive(record, settings):
            return
    _check_same(record, settings, what)
