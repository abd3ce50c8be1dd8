"""Shrink the nvidia-pytriton wheel to what one Python version needs, so it fits the device tool's 64 MiB carry.

    python tools/slim_pytriton_wheel.py .whl/nvidia_pytriton-*.whl 3.12

Drops the python-backend stubs of other Python versions and the libpython the wheel bundles for 3.13, and
rewrites RECORD to match. The result replaces the input file.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path


def slim(wheel: Path, python_version: str) -> None:
    slimmed = wheel.with_suffix(".slim")

    def keep(name: str) -> bool:
        if "/python_backend_stubs/" in name:
            return f"/python_backend_stubs/{python_version}/" in name
        return not ("nvidia_pytriton.libs/libpython3" in name and python_version != "3.13")

    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(slimmed, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            if not keep(info.filename):
                continue
            data = source.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines()
                data = ("\n".join(line for line in lines if keep(line.split(",", 1)[0])) + "\n").encode()
            target.writestr(info, data)
    slimmed.replace(wheel)


if __name__ == "__main__":
    slim(Path(sys.argv[1]), sys.argv[2])
