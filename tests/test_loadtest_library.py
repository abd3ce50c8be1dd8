"""tritonkit.loadtest without a server: payloads, the step controller, settings and the Locust command line."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tritonkit.loadtest
from tritonkit.client import InputSpec
from tritonkit.errors import InvalidInput, TritonkitError
from tritonkit.loadtest import (
    LoadSettings,
    StepController,
    build_payload,
    find_locustfile,
    histogram_percentile,
    locust_command,
    read_steps_csv,
    target_url,
    write_steps_csv,
)

FP32_NCHW = InputSpec("input__0", "FP32", [-1, 3, 32, 32])
UINT8_NHWC = InputSpec("input__0", "UINT8", [-1, 32, 32, 3])


def test_the_library_never_imports_locust():
    # Locust monkey-patches the standard library at import; the library and the CLI must not trigger that.
    code = "import sys, tritonkit.loadtest, tritonkit.cli; assert 'locust' not in sys.modules, 'locust imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("host", "protocol", "url"),
    [
        ("127.0.0.1:8001", "grpc", "127.0.0.1:8001"),
        ("localhost", "grpc", "localhost:8001"),
        ("localhost", "http", "localhost:8000"),
        ("http://127.0.0.1:9000/", "http", "127.0.0.1:9000"),
        ("grpc://triton:8001", "grpc", "triton:8001"),
    ],
)
def test_target_url(host, protocol, url):
    assert target_url(host, protocol) == url


@pytest.mark.parametrize(
    ("host", "message"),
    [("", "pass --host HOST:PORT"), ("https://x:1", "scheme 'https' is not supported"), ("x:1/v2", "without a path")],
)
def test_target_url_errors(host, message):
    with pytest.raises(InvalidInput, match=message):
        target_url(host, "grpc")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model": ""}, "pass --model NAME"),
        ({"batch_size": 0}, "--batch-size must be >= 1"),
        ({"step_users": 2}, "needs --p99-budget-ms"),
        ({"protocol": "udp"}, "choose grpc or http"),
    ],
)
def test_settings_errors_name_the_option(changes, message):
    values = {"host": "127.0.0.1:8001", "model": "tiny", **changes}
    with pytest.raises(InvalidInput, match=message):
        LoadSettings(**values)


def test_random_payload_fits_the_model():
    payload = build_payload([FP32_NCHW], 16, 4)
    (batch,) = payload.batches
    assert batch["input__0"].shape == (4, 3, 32, 32) and batch["input__0"].dtype == np.float32
    assert payload.batch_size == 4 and payload.nbytes == 4 * 3 * 32 * 32 * 4
    frames = build_payload([UINT8_NHWC], 16, 2, "uint8").batches[0]["input__0"]
    assert frames.shape == (2, 32, 32, 3) and frames.dtype == np.uint8 and frames.max() > 200


def test_payload_errors():
    with pytest.raises(InvalidInput, match="batch size 32 is over the max_batch_size 16 of model 'm'"):
        build_payload([FP32_NCHW], 16, 32, model="m")
    with pytest.raises(InvalidInput, match="takes FP32: export the model with --uint8-input"):
        build_payload([FP32_NCHW], 16, 1, "uint8")
    with pytest.raises(InvalidInput, match="has a variable dim and the model says no lengths"):
        build_payload([InputSpec("x", "FP32", [-1, -1])], 16, 1)
    with pytest.raises(InvalidInput, match="does not batch"):
        build_payload([InputSpec("x", "FP32", [3])], 0, 2)
    with pytest.raises(InvalidInput, match="random payloads cannot fill BYTES input"):
        build_payload([InputSpec("x", "BYTES", [-1, 1])], 4, 1)


def _write_images(folder: Path) -> None:
    from PIL import Image

    folder.mkdir()
    Image.new("RGB", (40, 30), (255, 0, 0)).save(folder / "red.png")
    Image.new("RGB", (64, 48), (255, 0, 0)).save(folder / "red.jpg", quality=100)
    (folder / "notes.txt").write_text("not an image")


def test_image_payload_layouts_and_normalisation(tmp_path):
    _write_images(tmp_path / "images")
    nchw = build_payload([FP32_NCHW], 16, 3, str(tmp_path / "images"))
    assert nchw.source.startswith("2 image(s)")
    # 2 images in batches of 3: rows cycle through them (red, red, red), then one batch is enough for variety.
    array = nchw.batches[0]["input__0"]
    assert array.shape == (3, 3, 32, 32) and array.dtype == np.float32
    red = np.array([(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (0 - 0.406) / 0.225], dtype=np.float32)
    np.testing.assert_allclose(array[0, :, 16, 16], red, atol=0.05)
    nhwc = build_payload([UINT8_NHWC], 16, 1, str(tmp_path / "images" / "*.png")).batches[0]["input__0"]
    assert nhwc.shape == (1, 32, 32, 3) and nhwc.dtype == np.uint8
    assert nhwc[0, 16, 16].tolist() == [255, 0, 0]


def test_image_payload_errors(tmp_path):
    with pytest.raises(InvalidInput, match="no image files matching it"):
        build_payload([FP32_NCHW], 16, 1, str(tmp_path / "*.png"))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(InvalidInput, match=r"broken\.png: not an image Pillow can read"):
        build_payload([FP32_NCHW], 16, 1, str(tmp_path / "broken.png"))
    _write_images(tmp_path / "images")
    with pytest.raises(InvalidInput, match="not an image"):
        build_payload([InputSpec("x", "FP32", [-1, 10])], 16, 1, str(tmp_path / "images"))


def test_histogram_percentile():
    assert histogram_percentile({10: 98, 50: 1, 200: 1}, 0.99) == 50
    assert histogram_percentile({10: 98, 50: 1, 200: 1}, 0.5) == 10
    assert histogram_percentile({10: 1}, 0.99) == 10
    assert math.isnan(histogram_percentile({}, 0.99))


def test_step_controller_steps_until_the_budget():
    step = StepController(step_users=2, step_time_s=5, p99_budget_ms=50)
    assert step.tick(0, running_users=0, histogram={}, requests=0, failures=0) == 2  # ramping: not measured yet
    assert step.tick(1, running_users=2, histogram={}, requests=0, failures=0) == 2  # all running: measure from here
    assert step.tick(3, running_users=2, histogram={10: 50}, requests=50, failures=0) == 2
    assert step.tick(6, running_users=2, histogram={10: 100}, requests=100, failures=0) == 4
    assert step.results[0].users == 2 and step.results[0].requests == 100 and step.results[0].within_budget
    assert step.results[0].requests_per_s == 20
    assert step.tick(7, running_users=4, histogram={10: 110}, requests=110, failures=0) == 4
    # The second step is measured on its own requests: 100 fast ones before it do not hide its slow tail.
    assert step.tick(12, running_users=4, histogram={10: 200, 80: 10}, requests=210, failures=0) is None
    second = step.results[1]
    assert (second.users, second.requests, second.p99_ms, second.within_budget) == (4, 100, 80, False)
    assert step.stop_reason == "p99 budget of 50 ms passed at 4 users"
    assert step.best == step.results[0]
    assert "the most load within budget: 2 users" in step.summary()
    assert step.tick(13, running_users=4, histogram={}, requests=0, failures=0) is None


def test_step_controller_stops_on_failures_silence_and_the_cap():
    failing = StepController(1, 1, 100)
    failing.tick(0, 1, {}, 0, 0)
    assert failing.tick(2, 1, {5: 10}, 10, 1) is None
    assert failing.stop_reason == "1 request(s) failed at 1 users"
    silent = StepController(1, 1, 100)
    silent.tick(0, 1, {}, 0, 0)
    assert silent.tick(2, 1, {}, 0, 0) is None and silent.results[0].p99_ms == math.inf
    assert "no step stayed within the budget" in silent.summary()
    capped = StepController(3, 1, 100, max_users=4)
    capped.tick(0, 3, {}, 0, 0)
    assert capped.tick(2, 3, {5: 10}, 10, 0) == 4
    capped.tick(3, 4, {5: 10}, 10, 0)
    assert capped.tick(5, 4, {5: 20}, 20, 0) is None
    assert capped.stop_reason == "reached --step-max-users 4 within the budget"


def test_steps_csv_round_trip(tmp_path):
    step = StepController(2, 1, 50)
    step.tick(0, 2, {}, 0, 0)
    step.tick(2, 2, {10: 30}, 30, 0)
    write_steps_csv(tmp_path / "x_steps.csv", step.results)
    assert read_steps_csv(tmp_path / "x_steps.csv") == step.results


def test_find_locustfile():
    # The packaged file, in a checkout too: loadtest/locustfile.py only re-exports it.
    assert find_locustfile() == Path(tritonkit.loadtest.__file__).resolve().parent / "locustfile.py"
    assert find_locustfile().is_file()
    with pytest.raises(TritonkitError, match=r"locustfile /nowhere/locustfile\.py does not exist"):
        find_locustfile("/nowhere/locustfile.py")


def test_locust_command_plain_and_step():
    plain = LoadSettings(host="127.0.0.1:8001", model="tiny", batch_size=4)
    argv = locust_command("lf.py", plain, users=8, spawn_rate=8, run_time_s=2.4, processes=2, csv_prefix="out/x")
    assert argv[1:] == [
        "-m", "locust", "-f", "lf.py", "--headless", "--only-summary", "--host", "127.0.0.1:8001",
        "--model", "tiny", "--batch-size", "4", "--users", "8", "--spawn-rate", "8", "--run-time", "2s",
        "--stop-timeout", "10s", "--processes", "2", "--csv", "out/x",
    ]  # fmt: skip
    step = LoadSettings(host="h:1", model="m", step_users=2, p99_budget_ms=50)
    argv = locust_command("lf.py", step, users=8)
    assert "--users" not in argv and argv[argv.index("--step-users") + 1] == "2"
    assert argv[argv.index("--p99-budget-ms") + 1] == "50"
