"""tritonkit.export end to end: real exports into a temporary repository, checked through their runtimes."""

from __future__ import annotations

import json
import math
import sys
import textwrap
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from tritonclient.grpc import model_config_pb2

from tritonkit.export import (
    ExportOptions,
    ExportResult,
    HalfPrecision,
    load_model,
    to_onnx,
    to_torchscript,
    verify_artifact,
)
from tritonkit.export import export_model as _export_model
from tritonkit.repository import ModelConfig, read_signature, validate_model

TINY = "tritonkit.export.zoo:tiny_cnn"
SHAPE = (3, 32, 32)
RESNET_SHAPE = (3, 64, 64)
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def export(model: str, repository: Path, **options: object) -> ExportResult:
    settings: dict[str, object] = {"repository": repository, "input_shape": SHAPE}
    settings.update(options)
    return _export_model(model, ExportOptions(**settings))  # type: ignore[arg-type]


def ort_session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def jit_load(path: Path, extra_files: dict[str, str] | None = None) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location="cpu", _extra_files=extra_files or {})


def run_artifact(path: Path, batch: np.ndarray) -> list[np.ndarray]:
    if path.suffix == ".onnx":
        return ort_session(path).run(None, {"input__0": batch})
    with torch.no_grad():
        result = jit_load(path)(torch.from_numpy(batch))
    return [t.numpy() for t in (result if isinstance(result, tuple) else (result,))]


def eager(module: torch.nn.Module, batch: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(batch)).numpy()


def normalise_frames(frames: np.ndarray) -> np.ndarray:
    """The textbook ImageNet preprocessing, written independently of UInt8Frames."""
    x = frames.astype(np.float32) / 255.0
    x = (x - MEAN) / STD
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], str]]:
    """Writes an importable module with a unique name and returns its name (for ``name:factory`` refs)."""
    folder = tmp_path / "user_code"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    written: list[str] = []

    def write(source: str) -> str:
        name = f"tk_user_{uuid.uuid4().hex[:8]}"
        (folder / f"{name}.py").write_text(textwrap.dedent(source))
        written.append(name)
        return name

    yield write
    for name in written:
        sys.modules.pop(name, None)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_tiny_cnn_export_writes_verified_model_directory(tmp_path: Path, fmt: str) -> None:
    steps: list[str] = []
    result = _export_model(
        TINY,
        ExportOptions(format=fmt, repository=tmp_path / "repo", input_shape=SHAPE),  # type: ignore[arg-type]
        on_step=steps.append,
    )

    model_dir = tmp_path / "repo" / "tritonkit_export_zoo_tiny_cnn"
    filename = "model.onnx" if fmt == "onnx" else "model.pt"
    assert result.model_dir == model_dir
    assert result.artifact == model_dir / "1" / filename
    assert result.artifact.is_file()
    # Nothing but the version folder and the config: the staging folder is gone.
    assert sorted(p.name for p in model_dir.iterdir()) == ["1", "config.pbtxt"]
    assert sorted(p.name for p in (model_dir / "1").iterdir()) == [filename]

    report = result.report
    assert report.passed
    assert report.artifact == result.artifact
    assert [(c.batch_size, c.output) for c in report.checks] == [(1, "output__0"), (8, "output__0")]
    for check in report.checks:
        assert math.isfinite(check.max_abs_error) and check.max_abs_error < 1e-4
        assert math.isfinite(check.max_rel_error) and check.max_rel_error < 1e-2
    assert "batch    8" in report.summary() and "FAILED" not in report.summary()

    assert steps[0] == f"building {TINY}"
    assert f"exporting {'ONNX' if fmt == 'onnx' else 'TorchScript'}" in steps
    assert {"verifying batch 1", "verifying batch 8"} <= set(steps)

    proto = ModelConfig.load(model_dir / "config.pbtxt").proto
    assert proto.name == "tritonkit_export_zoo_tiny_cnn"
    assert proto.backend == ("onnxruntime" if fmt == "onnx" else "pytorch")
    assert proto.max_batch_size == 8
    assert [(t.name, t.data_type, list(t.dims)) for t in proto.input] == [
        ("input__0", model_config_pb2.TYPE_FP32, [3, 32, 32])
    ]
    assert [(t.name, t.data_type, list(t.dims)) for t in proto.output] == [
        ("output__0", model_config_pb2.TYPE_FP32, [10])
    ]
    assert proto.dynamic_batching.max_queue_delay_microseconds == 250
    assert [(g.count, g.kind) for g in proto.instance_group] == [(1, model_config_pb2.ModelInstanceGroup.KIND_AUTO)]
    assert [(w.name, w.batch_size, list(w.inputs["input__0"].dims)) for w in proto.model_warmup] == [
        ("batch_1", 1, [3, 32, 32]),
        ("batch_8", 8, [3, 32, 32]),
    ]
    assert all(w.inputs["input__0"].random_data for w in proto.model_warmup)
    # The repository's own validator (config vs model file) accepts what the export wrote.
    validate_model(model_dir)

    batch = np.random.default_rng(5).standard_normal((5, *SHAPE)).astype(np.float32)
    np.testing.assert_allclose(run_artifact(result.artifact, batch)[0], eager(load_model(TINY), batch), atol=1e-5)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_resnet18_export_matches_eager_at_an_unverified_batch_size(tmp_path: Path, fmt: str) -> None:
    result = export("resnet18", tmp_path, format=fmt, input_shape=RESNET_SHAPE, name="r18", max_batch_size=4)

    assert result.report.passed
    assert [c.batch_size for c in result.report.checks] == [1, 4]
    assert all(0 <= c.max_abs_error < 1e-4 for c in result.report.checks)
    # Batch 3 was neither traced (2) nor verified (1, 4): the batch axis really is dynamic.
    batch = np.random.default_rng(3).standard_normal((3, *RESNET_SHAPE)).astype(np.float32)
    got = run_artifact(result.artifact, batch)[0]
    assert got.shape == (3, 1000)
    np.testing.assert_allclose(got, eager(load_model("resnet18"), batch), atol=1e-4, rtol=1e-3)
    validate_model(result.model_dir)


def test_onnx_graph_names_dynamic_batch_and_opset(tmp_path: Path) -> None:
    result = export(TINY, tmp_path, format="onnx")

    model = onnx.load(str(result.artifact))
    onnx.checker.check_model(model)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 17
    initializers = {i.name for i in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in initializers]
    assert [i.name for i in graph_inputs] == ["input__0"]
    assert [o.name for o in model.graph.output] == ["output__0"]
    for value in [*graph_inputs, *model.graph.output]:
        first = value.type.tensor_type.shape.dim[0]
        assert first.dim_param and not first.HasField("dim_value"), value.name
    session = ort_session(result.artifact)
    assert session.run(None, {"input__0": np.zeros((3, *SHAPE), np.float32)})[0].shape == (3, 10)


def test_dynamo_exporter_gives_the_same_contract(tmp_path: Path) -> None:
    result = export(TINY, tmp_path, format="onnx", onnx_exporter="dynamo")

    model = onnx.load(str(result.artifact))
    # onnxscript (the dynamo exporter's backend) starts at opset 18, the TorchScript exporter gives 17.
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 18
    assert [i.name for i in model.graph.input] == ["input__0"]
    assert [o.name for o in model.graph.output] == ["output__0"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    assert result.report.passed
    batch = np.ones((3, *SHAPE), np.float32)
    np.testing.assert_allclose(run_artifact(result.artifact, batch)[0], eager(load_model(TINY), batch), atol=1e-5)


def signature_dict(artifact: Path) -> dict[str, list[dict[str, object]]]:
    """The signature the repository validator reads from the artifact, in the JSON form the export stores."""
    signature = read_signature(artifact)
    assert signature is not None
    return {
        kind: [{"name": t.name, "data_type": t.data_type, "dims": list(t.dims)} for t in tensors]
        for kind, tensors in (("inputs", signature.inputs), ("outputs", signature.outputs))
    }


def test_torchscript_carries_its_signature(tmp_path: Path) -> None:
    result = export("resnet18", tmp_path, format="torchscript", input_shape=RESNET_SHAPE, max_batch_size=2)

    extra = {"tritonkit.json": ""}
    loaded = jit_load(result.artifact, extra)
    expected = {
        "inputs": [{"name": "input__0", "data_type": "FP32", "dims": [-1, 3, 64, 64]}],
        "outputs": [{"name": "output__0", "data_type": "FP32", "dims": [-1, 1000]}],
    }
    assert json.loads(extra["tritonkit.json"]) == expected
    assert signature_dict(result.artifact) == expected
    # Frozen: weights are inlined constants, the graph reads no attributes of the module.
    assert list(loaded.parameters()) == []
    assert "prim::GetAttr" not in str(loaded.graph)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_uint8_input_normalises_frames_inside_the_graph(tmp_path: Path, fmt: str) -> None:
    result = export(TINY, tmp_path, format=fmt, uint8_input=True, max_batch_size=4)

    proto = result.config.proto
    assert [(t.name, t.data_type, list(t.dims)) for t in proto.input] == [
        ("input__0", model_config_pb2.TYPE_UINT8, [32, 32, 3])
    ]
    assert proto.output[0].data_type == model_config_pb2.TYPE_FP32
    assert proto.model_warmup[0].inputs["input__0"].data_type == model_config_pb2.TYPE_UINT8
    if fmt == "onnx":
        graph_input = ort_session(result.artifact).get_inputs()[0]
        assert graph_input.type == "tensor(uint8)"
        assert graph_input.shape[1:] == [32, 32, 3]
    else:
        assert signature_dict(result.artifact)["inputs"] == [
            {"name": "input__0", "data_type": "UINT8", "dims": [-1, 32, 32, 3]}
        ]
    frames = np.random.default_rng(0).integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    got = run_artifact(result.artifact, frames)[0]
    np.testing.assert_allclose(got, eager(load_model(TINY), normalise_frames(frames)), atol=1e-5, rtol=1e-4)
    validate_model(result.model_dir)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_fp16_runs_half_inside_with_fp32_io(tmp_path: Path, fmt: str) -> None:
    fp32 = export("resnet18", tmp_path, format=fmt, input_shape=RESNET_SHAPE, name="r18_fp32", max_batch_size=2)
    fp16 = export(
        "resnet18", tmp_path, format=fmt, input_shape=RESNET_SHAPE, name="r18_fp16", max_batch_size=2, precision="fp16"
    )

    proto = fp16.config.proto
    assert proto.input[0].data_type == model_config_pb2.TYPE_FP32
    assert proto.output[0].data_type == model_config_pb2.TYPE_FP32
    # Half-precision weights: the file is about half the size.
    assert fp16.artifact.stat().st_size < 0.6 * fp32.artifact.stat().st_size
    if fmt == "onnx":
        weights = onnx.load(str(fp16.artifact)).graph.initializer
        assert any(w.data_type == onnx.TensorProto.FLOAT16 for w in weights)
    # Verified against the fp32 eager model with the looser fp16 tolerance, and visibly less exact than fp32.
    assert (fp16.report.tolerance.atol, fp16.report.tolerance.rtol) == (5e-2, 5e-2)
    assert fp16.report.passed
    assert fp32.report.max_abs_error < fp16.report.max_abs_error < 5e-2
    batch = np.random.default_rng(1).standard_normal((2, *RESNET_SHAPE)).astype(np.float32)
    got = run_artifact(fp16.artifact, batch)[0]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, eager(load_model("resnet18"), batch), atol=5e-2, rtol=5e-2)


def test_fp16_with_uint8_input(tmp_path: Path) -> None:
    result = export(TINY, tmp_path, format="onnx", precision="fp16", uint8_input=True, max_batch_size=2)

    assert result.config.proto.input[0].data_type == model_config_pb2.TYPE_UINT8
    frames = np.random.default_rng(2).integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
    got = run_artifact(result.artifact, frames)[0]
    np.testing.assert_allclose(got, eager(load_model(TINY), normalise_frames(frames)), atol=5e-2, rtol=5e-2)


def test_custom_factory_with_weights_file(tmp_path: Path, user_module) -> None:
    module_name = user_module(
        """
        from tritonkit.export.zoo import tiny_cnn

        def build():
            return tiny_cnn(num_classes=4)
        """
    )
    ref = f"{module_name}:build"
    trained = load_model(ref, seed=123)
    weights = tmp_path / "weights.pt"
    torch.save(trained.state_dict(), weights)

    result = export(ref, tmp_path / "repo", format="onnx", weights=weights)

    assert result.model_dir.name == f"{module_name}_build"
    assert list(result.config.proto.output[0].dims) == [4]
    batch = np.random.default_rng(4).standard_normal((2, *SHAPE)).astype(np.float32)
    got = run_artifact(result.artifact, batch)[0]
    np.testing.assert_allclose(got, eager(trained, batch), atol=1e-5)
    # The weights file, not the seeded random initialisation, is what got exported.
    assert not np.allclose(got, eager(load_model(ref), batch), atol=1e-3)


def test_checkpoint_with_nested_state_dict_loads(tmp_path: Path) -> None:
    trained = load_model(TINY, seed=7)
    checkpoint = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "state_dict": trained.state_dict()}, checkpoint)

    loaded = load_model(TINY, weights=checkpoint)

    for key, value in trained.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_multi_output_model_names_every_output(tmp_path: Path, user_module) -> None:
    module_name = user_module(
        """
        import torch
        from torch import nn

        class TwoHeads(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = nn.Conv2d(3, 4, 3)
                self.head = nn.Linear(4, 6)

            def forward(self, x):
                features = self.body(x).mean(dim=(2, 3))
                return self.head(features), features

        def build():
            return TwoHeads()
        """
    )
    for fmt in ("onnx", "torchscript"):
        result = export(f"{module_name}:build", tmp_path, format=fmt, name=f"two_{fmt}", max_batch_size=2)

        outputs = [(t.name, list(t.dims)) for t in result.config.proto.output]
        assert outputs == [("output__0", [6]), ("output__1", [4])]
        assert [(c.batch_size, c.output) for c in result.report.checks] == [
            (1, "output__0"),
            (1, "output__1"),
            (2, "output__0"),
            (2, "output__1"),
        ]
        batch = np.ones((3, *SHAPE), np.float32)
        assert [o.shape for o in run_artifact(result.artifact, batch)] == [(3, 6), (3, 4)]
        validate_model(result.model_dir)


def test_no_work_returns_per_sample_mean(tmp_path: Path) -> None:
    result = export("tritonkit.export.zoo:no_work", tmp_path, format="onnx", uint8_input=True)

    assert [list(t.dims) for t in result.config.proto.output] == [[1]]
    frames = np.random.default_rng(6).integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
    expected = normalise_frames(frames).reshape(2, -1).mean(axis=1, keepdims=True)
    np.testing.assert_allclose(run_artifact(result.artifact, frames)[0], expected, atol=1e-5)


def test_exports_are_reproducible_and_seeded(tmp_path: Path) -> None:
    first = export(TINY, tmp_path / "a", format="onnx")
    second = export(TINY, tmp_path / "b", format="onnx")
    other_seed = export(TINY, tmp_path / "c", format="onnx", seed=1)

    assert first.artifact.read_bytes() == second.artifact.read_bytes()
    assert first.artifact.read_bytes() != other_seed.artifact.read_bytes()
    # Seeding did not touch the caller's global RNG.
    torch.manual_seed(99)
    expected = torch.rand(3)
    torch.manual_seed(99)
    load_model(TINY, seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_reexport_keeps_a_hand_edited_config(tmp_path: Path) -> None:
    first = export(TINY, tmp_path, format="onnx", name="tiny")
    config_path = first.model_dir / "config.pbtxt"
    text = config_path.read_text()
    assert "max_queue_delay_microseconds: 250" in text and "count: 1" in text
    edited = "# tuned by hand on the A100 box: keep this\n" + text.replace(
        "max_queue_delay_microseconds: 250", "max_queue_delay_microseconds: 5000  # measured"
    ).replace("count: 1", "count: 3")
    config_path.write_text(edited)

    second = export(TINY, tmp_path, format="torchscript", name="tiny", max_batch_size=4, version=2)

    text = config_path.read_text()
    assert text.startswith("# tuned by hand on the A100 box: keep this\n")
    assert "max_queue_delay_microseconds: 5000  # measured" in text
    proto = ModelConfig.load(config_path).proto
    assert proto.dynamic_batching.max_queue_delay_microseconds == 5000
    assert proto.instance_group[0].count == 3
    # The fields the export determines did change.
    assert proto.backend == "pytorch"
    assert proto.max_batch_size == 4
    # The batch_8 warmup no longer fits max_batch_size 4, so the warmups were regenerated.
    assert [w.batch_size for w in proto.model_warmup] == [1, 4]
    assert second.artifact == tmp_path / "tiny" / "2" / "model.pt"
    assert (tmp_path / "tiny" / "1" / "model.onnx").is_file()


def test_reexport_keeps_warmup_that_still_fits(tmp_path: Path) -> None:
    first = export(TINY, tmp_path, format="onnx", name="tiny")
    config_path = first.model_dir / "config.pbtxt"
    config = ModelConfig.load(config_path)
    del config.proto.model_warmup[1:]
    config.proto.model_warmup[0].name = "my_warmup"
    config.save()

    export(TINY, tmp_path, format="onnx", name="tiny")

    assert [w.name for w in ModelConfig.load(config_path).proto.model_warmup] == ["my_warmup"]


def test_verify_artifact_reports_each_batch_and_output(tmp_path: Path) -> None:
    module = load_model(TINY)
    sample = torch.randn(2, *SHAPE)
    path = to_onnx(module, sample, tmp_path / "tiny.onnx")

    report = verify_artifact(path, module, input_shape=SHAPE, batch_sizes=[4, 1, 4])

    assert [c.batch_size for c in report.checks] == [1, 4]
    assert report.runtime.startswith("onnxruntime") and "CPUExecutionProvider" in report.runtime
    assert report.max_abs_error == max(c.max_abs_error for c in report.checks)
    assert report.failures() == ()


def test_exporting_leaves_the_module_as_it_was(tmp_path: Path) -> None:
    module = load_model(TINY).train()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    sample = torch.randn(2, *SHAPE)

    to_torchscript(module, sample, tmp_path / "m.pt")
    to_onnx(module, sample, tmp_path / "m.onnx")
    HalfPrecision(module)

    assert all(m.training for m in module.modules())
    after = module.state_dict()
    assert all(after[k].dtype == v.dtype and torch.equal(after[k], v) for k, v in before.items())
    # Traced in eval mode all the same: BatchNorm used its running statistics, not the batch's.
    batch = np.random.default_rng(8).standard_normal((3, *SHAPE)).astype(np.float32)
    module.eval()
    np.testing.assert_allclose(run_artifact(tmp_path / "m.pt", batch)[0], eager(module, batch), atol=1e-5)
    np.testing.assert_allclose(run_artifact(tmp_path / "m.onnx", batch)[0], eager(module, batch), atol=1e-5)
