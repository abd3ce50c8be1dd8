"""The wheel, installed without the checkout: it ships the files tritonkit runs by path, and ``tritonkit load`` works.

The venv's tritonkit is an editable install of this checkout, which would hide any file the wheel lacks. So the
wheel is installed with ``pip install --target`` into a folder of its own, put first on PYTHONPATH, and every
check runs in a subprocess started in an empty folder, where nothing of the checkout is importable.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tritonkit.client import Client
from tritonkit.loadtest import read_summary

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "tritonkit"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Built from a copy of what the Locust image copies too: an in-tree build would write build/ and the egg-info
    # into the checkout, under the feet of other test runs.
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    dist = tmp_path_factory.mktemp("dist")
    pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "--wheel-dir", str(dist), str(source))
    (built,) = dist.glob("tritonkit-*.whl")
    return built


@pytest.fixture(scope="module")
def site(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    pip("install", "--no-deps", "--no-index", "--target", str(target), str(wheel))
    return target


def pip(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def installed(site: Path, argv: list[str], cwd: Path, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    """``argv`` run with the wheel's copy of tritonkit first on sys.path, from ``cwd``."""
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s)


def test_wheel_ships_every_file_tritonkit_runs_or_reads_by_path(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    # Python modules are found by packages.find; any other file under the package needs package-data.
    data = sorted(
        path.relative_to(PACKAGE.parent).as_posix()
        for path in PACKAGE.rglob("*")
        if path.is_file() and path.suffix not in {".py", ".pyc"} and "__pycache__" not in path.parts
    )
    assert set(data) <= names, f"missing from the wheel: {sorted(set(data) - names)}"
    backends = sorted(
        path.relative_to(PACKAGE.parent).as_posix() for path in PACKAGE.glob("server/backends/*/model.py")
    )
    assert len(backends) >= 2
    for name in ["tritonkit/py.typed", "tritonkit/loadtest/locustfile.py", *backends]:
        assert name in names, f"{name} is missing from the wheel"
    # The top-level loadtest/locustfile.py only re-exports the packaged one; it is no module of the wheel.
    assert not any(name.startswith(("loadtest/", "tests/")) for name in names)


def test_installed_copy_finds_its_own_locustfile(site, tmp_path):
    code = (
        "import json, sys, tritonkit, tritonkit.cli, tritonkit.loadtest\n"
        "print(json.dumps({'package': tritonkit.__file__, 'locustfile': str(tritonkit.loadtest.find_locustfile()),"
        " 'locust_imported': 'locust' in sys.modules}))"
    )
    done = installed(site, [sys.executable, "-c", code], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert Path(found["package"]).resolve().is_relative_to(site.resolve()), found
    locustfile = Path(found["locustfile"])
    assert locustfile.is_file() and locustfile.is_relative_to(site.resolve()), found
    assert locustfile.name == "locustfile.py" and locustfile.parent.name == "loadtest"
    assert not found["locust_imported"], "importing tritonkit imported locust (and gevent's monkey-patching)"


@pytest.mark.parametrize("which", ["packaged", "checkout"])
def test_locust_picks_only_our_user_and_shape(site, tmp_path, which):
    # The packaged file from the wheel, and the checkout's loadtest/locustfile.py that re-exports it: Locust must
    # find the same one user and one shape in both, not the abstract TritonUser nor locust's own classes.
    path = (
        f"{site}/tritonkit/loadtest/locustfile.py" if which == "packaged" else str(ROOT / "loadtest" / "locustfile.py")
    )
    code = (
        "import json, sys\n"
        "from locust.util.load_locustfile import load_locustfile\n"
        "users, shapes = load_locustfile(sys.argv[1])\n"
        "print(json.dumps({'users': sorted(users), 'shapes': [type(shape).__name__ for shape in shapes],"
        " 'module': sys.modules['tritonkit.loadtest'].__file__}))"
    )
    done = installed(site, [sys.executable, "-c", code, path], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["users"] == ["InferUser"] and found["shapes"] == ["StepLoadShape"], found
    assert Path(found["module"]).resolve().is_relative_to(site.resolve()), found


@pytest.mark.slow
def test_load_runs_from_the_wheel(server, site, tmp_path):
    with Client(server.grpc_url, "tiny_onnx") as client:
        before = client.stats()
    prefix = tmp_path / "out" / "tiny"
    argv = [sys.executable, str(site / "bin" / "tritonkit"), "load", "tiny_onnx", "--url", server.grpc_url]
    argv += ["--users", "2", "--run-time-s", "2", "--csv-prefix", str(prefix)]
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    done = installed(site, argv, cwd=workdir)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = read_summary(prefix)
    with Client(server.grpc_url, "tiny_onnx") as client:
        assert client.stats().since(before).request_count == summary.requests > 0
    assert summary.failures == 0
    assert "tiny_onnx over grpc, 2 users" in " ".join(done.stdout.split()), done.stdout
