"""``tritonkit infer`` against the real embedded server, as a user sees it."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tritonkit.cli import app
from tritonkit.cli.infer_cmd import _report, load_images
from tritonkit.server import free_port

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    """Exit code and output, with rich's line wrapping and box borders folded away."""
    result = runner.invoke(app, ["infer", *args])
    return result.exit_code, re.sub(r"[\s│┃]+", " ", result.output)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three files Pillow reads, none of them the model's 32x32 RGB: a JPEG, a grayscale PNG, a wide JPEG."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = [folder / "photo.jpg", folder / "gray.png", folder / "wide.jpg"]
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(paths[0])
    Image.fromarray(rng.integers(0, 256, (20, 20), dtype=np.uint8), mode="L").save(paths[1])
    Image.fromarray(rng.integers(0, 256, (30, 90, 3), dtype=np.uint8)).save(paths[2])
    return paths


def test_random_frames_print_top5_and_round_trip(server):
    code, output = run("tiny_onnx", "--url", server.grpc_url, "--random")
    assert code == 0, output
    assert "tiny_onnx: output__0 [1, 10]; top-5 classes (score) per input:" in output
    assert re.search(r"sample #0: (\d+ \(-?\d+\.\d{3}\),? ){5}", output), output
    assert re.search(r"round trip: \d+\.\d ms for 1 sample\(s\) in 1 request\(s\) over grpc", output), output


def test_random_batch_over_http(server):
    code, output = run("tiny_pt", "--url", server.http_url, "--protocol", "http", "--random", "--batch", "3")
    assert code == 0, output
    assert all(f"sample #{index}" in output for index in range(3)), output
    assert "for 3 sample(s) in 1 request(s) over http" in output


def test_images_are_resized_laid_out_and_classified(server, eager_tiny, images):
    code, output = run("tiny_pt", *map(str, images), "--url", server.grpc_url, "--batch", "2")
    assert code == 0, output
    assert re.search(r"for 3 sample\(s\) in 2 request\(s\) over grpc, \d+\.\d ms per request", output), output
    # The classes printed for each file are the eager model's top-5 for that file, decoded the same way.
    frames = load_images(images, np.dtype(np.float32), (3, 32, 32), "input__0")
    for path, scores in zip(images, eager_tiny(frames)):
        top5 = ", ".join(f"{int(i)} ({scores[i]:.3f})" for i in np.argsort(scores)[::-1][:5])
        assert f" {path}: {top5} " in output, (path, top5, output)


def test_load_images_lays_out_float_and_uint8_inputs(images):
    from PIL import Image

    floats = load_images(images[:1], np.dtype(np.float32), (3, 32, 32), "input__0")
    assert floats.shape == (1, 3, 32, 32) and floats.dtype == np.float32
    with Image.open(images[0]) as image:
        pixels = np.asarray(image.convert("RGB").resize((32, 32), Image.BILINEAR), dtype=np.float32) / 255.0
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(floats[0], ((pixels - mean) / std).transpose(2, 0, 1), rtol=1e-5, atol=1e-5)

    raw = load_images(images, np.dtype(np.uint8), (224, 200, 3), "input__0")  # --uint8-input exports: N,H,W,C
    assert raw.shape == (3, 224, 200, 3) and raw.dtype == np.uint8
    with Image.open(images[1]) as gray:
        expected = np.asarray(gray.convert("RGB").resize((200, 224), Image.BILINEAR))
    np.testing.assert_array_equal(raw[1], expected)


def test_outputs_that_are_not_scores_get_a_summary(capsys):
    values = np.array([[0.5], [1.5]], np.float32)
    _report("no_work", ["a", "b"], {"output__0": values}, 0.0123, 1, "grpc")
    printed = capsys.readouterr().out
    assert "no_work: output__0 [2, 1] float32: [0.5, 1.5] (min 0.5, mean 1, max 1.5)" in printed
    assert "round trip: 12.3 ms for 2 sample(s) in 1 request(s) over grpc" in printed


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        ((), 2, "give --random, --input NAME=FILE.npy, or image files"),
        (("--random", "photo.jpg"), 2, "give --random, --input NAME=FILE.npy, or image files"),
        (("--random", "--protocol", "tcp"), 2, "'tcp' is neither grpc nor http"),
        (
            ("--random", "--batch", "17"),
            1,
            "InvalidInput: input 'input__0': batch of 17 given, the model takes 1 to 16",
        ),
    ],
)
def test_usage_errors(server, args, code, message):
    exit_code, output = run("tiny_onnx", "--url", server.grpc_url, *args)
    assert exit_code == code, output
    assert message in output


def test_server_errors_are_one_clean_line(server, tmp_path):
    code, output = run("nope", "--url", server.grpc_url, "--random")
    assert code == 1
    assert "error: ModelNotReady: Request for unknown model: 'nope' is not found" in output
    assert "Traceback" not in output

    code, output = run("tiny_onnx", "--url", f"127.0.0.1:{free_port()}", "--random")
    assert code == 1
    assert "error: ServerUnavailable:" in output and "Traceback" not in output

    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("hello")
    code, output = run("tiny_onnx", str(not_an_image), "--url", server.grpc_url)
    assert code == 1
    assert f"error: InvalidInput: {not_an_image}: not an image Pillow can read" in output
