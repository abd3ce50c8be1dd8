"""The python backend's shared-memory files, and removing the ones a dead server left behind.

Each python-backend instance talks to its stub process through a file in /dev/shm
(``triton_<backend>_backend_shm_region_<uuid>``, 1 MiB or more). Triton removes it on a clean shutdown; a server
that is killed, or that dies, leaves it there for good. The launcher notes which of these files existed before its
server started and, after the server and its stubs are gone, removes the new ones that no live process maps, so
another server's regions (mapped by that server and its stubs) are never touched.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

__all__ = ["orphaned_regions", "region_names", "remove_orphaned_regions"]

SHM_DIR = Path("/dev/shm")
_REGION = re.compile(r"^triton_\w+_shm_region_[0-9a-f-]+$")


def region_names(directory: Path = SHM_DIR) -> set[str]:
    """The python-backend region files present now."""
    if not directory.is_dir():
        return set()
    return {entry.name for entry in directory.iterdir() if _REGION.match(entry.name)}


def _mapped_paths(directory: Path) -> set[str]:
    """Every file in ``directory`` that some live process maps (the files of running servers and their stubs)."""
    prefix = f"{directory}/"
    mapped: set[str] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for line in (entry / "maps").read_text(errors="replace").splitlines():
                path = line.split(maxsplit=5)[5:]
                if path and path[0].startswith(prefix):
                    mapped.add(path[0].removesuffix(" (deleted)"))
    return mapped


def orphaned_regions(before: set[str], directory: Path = SHM_DIR) -> list[str]:
    """Region files created since ``before`` was taken that no live process maps any more."""
    new = region_names(directory) - before
    if not new:
        return []
    mapped = _mapped_paths(directory)
    return sorted(name for name in new if str(directory / name) not in mapped)


def remove_orphaned_regions(before: set[str], directory: Path = SHM_DIR) -> list[str]:
    """Remove :func:`orphaned_regions`; returns the names removed."""
    removed = []
    for name in orphaned_regions(before, directory):
        with contextlib.suppress(FileNotFoundError, PermissionError):  # gone already, or another user's
            (directory / name).unlink()
            removed.append(name)
    return removed
