"""Every ExportError a user of ``tritonkit export`` can hit, with the message it gets."""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from tritonkit.errors import ConfigError, ExportError
from tritonkit.export import ExportOptions, ExportResult, export_model, load_model, parse_input_shape, verify_artifact
from tritonkit.export.precision import export_error, is_half_unsupported

TINY = "tritonkit.export.zoo:tiny_cnn"
SHAPE = (3, 32, 32)
needs_no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="with a CUDA GPU, fp16 runs there")


def export(model: str, repository: Path, **options: object) -> ExportResult:
    settings: dict[str, object] = {"repository": repository, "input_shape": SHAPE, "name": "m"}
    settings.update(options)
    return export_model(model, ExportOptions(**settings))  # type: ignore[arg-type]


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], str]]:
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


# --- model references -----------------------------------------------------------------------------


def test_unknown_torchvision_name_suggests_close_matches() -> None:
    with pytest.raises(ExportError, match=r"unknown torchvision model 'resnet51'; did you mean .*resnet50"):
        load_model("resnet51")


def test_unknown_torchvision_name_without_close_match_points_to_the_list() -> None:
    with pytest.raises(ExportError, match=r"unknown torchvision model 'qqqqzzzz'; see torchvision.models.list_models"):
        load_model("qqqqzzzz")


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        (
            "no_such_pkg_tk.models:build",
            r"cannot import module 'no_such_pkg_tk.models' .*is its directory on PYTHONPATH",
        ),
        (
            "tritonkit.export.zoo:tiny_cnnn",
            r"'tritonkit.export.zoo' has no attribute 'tiny_cnnn'; did you mean tiny_cnn",
        ),
        ("tritonkit.export.zoo:__all__", r"'tritonkit.export.zoo:__all__' is a list, not a callable"),
        ("a:b:c", r"bad model reference 'a:b:c'"),
        ("tritonkit.export.zoo:", r"bad model reference 'tritonkit.export.zoo:'"),
        (":tiny_cnn", r"bad model reference ':tiny_cnn'"),
    ],
)
def test_bad_factory_reference(ref: str, message: str) -> None:
    with pytest.raises(ExportError, match=message):
        load_model(ref)


def test_factory_module_with_a_missing_dependency(user_module) -> None:
    name = user_module("import tk_missing_dependency_xyz\n\ndef build():\n    pass\n")
    with pytest.raises(ExportError, match=rf"importing '{name}' failed: a module it imports is missing: .*xyz"):
        load_model(f"{name}:build")


def test_factory_module_that_does_not_import(user_module) -> None:
    name = user_module("def build(:\n")
    with pytest.raises(ExportError, match=rf"importing '{name}' failed: SyntaxError"):
        load_model(f"{name}:build")


def test_factory_returning_a_non_module(user_module) -> None:
    name = user_module("def build():\n    return {'weights': 1}\n")
    with pytest.raises(ExportError, match=rf"factory '{name}:build' returned dict, not a torch.nn.Module"):
        load_model(f"{name}:build")


def test_factory_that_raises(user_module) -> None:
    name = user_module("def build():\n    raise ValueError('needs a config file')\n")
    with pytest.raises(ExportError, match=rf"building factory '{name}:build' failed: ValueError: needs a config file"):
        load_model(f"{name}:build")


# --- weights --------------------------------------------------------------------------------------


def test_missing_weights_file(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"weights file .*nope\.pt does not exist"):
        export(TINY, tmp_path / "repo", weights=tmp_path / "nope.pt")
    assert not (tmp_path / "repo").exists()


def test_state_dict_with_missing_and_unexpected_keys(tmp_path: Path) -> None:
    state = load_model(TINY).state_dict()
    del state["8.bias"]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "w.pt"
    torch.save(state, path)
    with pytest.raises(
        ExportError, match=r"does not fit the model: missing keys: 8\.bias; unexpected keys: extra\.weight"
    ):
        load_model(TINY, weights=path)


def test_state_dict_of_a_data_parallel_model_gets_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    torch.save({f"module.{k}": v for k, v in load_model(TINY).state_dict().items()}, path)
    with pytest.raises(ExportError, match=r"missing keys: 0\.weight, .* \(and \d+ more\).*strip the 'module\.' prefix"):
        load_model(TINY, weights=path)


def test_state_dict_with_wrong_shapes(tmp_path: Path, user_module) -> None:
    name = user_module("from tritonkit.export.zoo import tiny_cnn\n\ndef five():\n    return tiny_cnn(num_classes=5)\n")
    path = tmp_path / "w.pt"
    torch.save(load_model(f"{name}:five").state_dict(), path)
    with pytest.raises(ExportError, match=r"wrong shape: 8\.weight \(5, 16\) != \(10, 16\), 8\.bias \(5,\) != \(10,\)"):
        load_model(TINY, weights=path)


def test_weights_file_that_is_not_a_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(ExportError, match=r"holds list, not a state dict"):
        load_model(TINY, weights=path)


def test_weights_file_that_is_not_readable(tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    path.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(ExportError, match=r"cannot read weights file .*w\.pt"):
        load_model(TINY, weights=path)


# --- options --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("3,a,224", r"input shape '3,a,224' is not a comma-separated list of integers; expected C,H,W"),
        ("3x224x224", r"is not a comma-separated list of integers"),
        ("", r"the input shape is empty"),
        ("3,0,224", r"input shape 3,0,224 has a dimension < 1"),
    ],
)
def test_bad_input_shape_string(text: str, message: str) -> None:
    with pytest.raises(ExportError, match=message):
        parse_input_shape(text)
    with pytest.raises(ExportError, match=message):
        ExportOptions(input_shape=text)  # type: ignore[arg-type]


def test_input_shape_strings_parse() -> None:
    assert parse_input_shape(" 3, 224,224 ") == (3, 224, 224)
    assert ExportOptions(input_shape="1,28,28").input_shape == (1, 28, 28)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"input_shape": ()}, r"the input shape is empty"),
        ({"format": "tflite"}, r"unknown format 'tflite'; choose onnx or torchscript"),
        ({"precision": "int8"}, r"unknown precision 'int8'; choose fp32 or fp16"),
        ({"name": "a/b"}, r"model name 'a/b' is not a usable directory name"),
        ({"name": ".hidden"}, r"model name '.hidden' is not a usable directory name"),
        ({"version": 0}, r"version must be >= 1, got 0"),
        ({"max_batch_size": 0}, r"max_batch_size must be >= 1"),
        ({"instances": 0}, r"instances must be >= 1, got 0"),
        ({"kind": "tpu"}, r"unknown instance kind 'tpu'"),
        ({"queue_delay_us": -1}, r"queue_delay_us must be >= 0"),
        ({"atol": -1.0}, r"tolerances must be >= 0, got atol=-1.0"),
        ({"uint8_input": True, "input_shape": (1, 28, 28)}, r"--uint8-input takes RGB images.*got 1,28,28"),
        ({"uint8_input": True, "input_shape": (3, 28)}, r"--uint8-input takes RGB images.*got 3,28"),
    ],
)
def test_bad_options(options: dict[str, object], message: str) -> None:
    with pytest.raises(ExportError, match=message):
        ExportOptions(**options)  # type: ignore[arg-type]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_device_without_a_gpu(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"device 'cuda' was asked for, but torch sees no CUDA GPU"):
        export(TINY, tmp_path, device="cuda")


def test_too_old_opset(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"ONNX opset 13 is too old; tritonkit needs opset 17 or newer"):
        export(TINY, tmp_path / "repo", opset=13)
    assert not (tmp_path / "repo").exists()


# --- models the export cannot take ----------------------------------------------------------------


def test_input_shape_the_model_cannot_take(tmp_path: Path) -> None:
    with pytest.raises(
        ExportError, match=r"running the model on a torch.float32 batch of shape \(2, 1, 32, 32\) failed: RuntimeError"
    ):
        export(TINY, tmp_path, input_shape=(1, 32, 32))


def test_model_returning_a_dict(tmp_path: Path, user_module) -> None:
    name = user_module(
        """
        from torch import nn

        class Detector(nn.Module):
            def forward(self, x):
                return {"boxes": x.flatten(1)}

        def build():
            return Detector()
        """
    )
    with pytest.raises(ExportError, match=r"the model returns a dict; tritonkit exports models that return a tensor"):
        export(f"{name}:build", tmp_path)


def test_output_without_batch_dimension(tmp_path: Path, user_module) -> None:
    name = user_module(
        """
        from torch import nn

        class Total(nn.Module):
            def forward(self, x):
                return x.sum()

        def build():
            return Total()
        """
    )
    with pytest.raises(
        ExportError, match=r"output__0 has shape \(\) for a batch of 2; every output must have the batch"
    ):
        export(f"{name}:build", tmp_path)


# --- verification -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_verification_past_tolerance_fails_and_writes_nothing(tmp_path: Path, fmt: str) -> None:
    # fp16 differs from the fp32 eager reference by ~1e-3, far past a 1e-7 tolerance.
    with pytest.raises(
        ExportError,
        match=r"verification failed at batch size 1, output output__0: max abs error \S+, max rel error \S+ "
        r"exceed the tolerance atol=1e-07, rtol=1e-07",
    ):
        export(TINY, tmp_path / "repo", format=fmt, precision="fp16", atol=1e-7, rtol=1e-7)
    assert not (tmp_path / "repo").exists()


def test_failed_reexport_leaves_the_previous_export_untouched(tmp_path: Path) -> None:
    good = export(TINY, tmp_path, format="onnx")
    artifact, config = good.artifact.read_bytes(), (good.model_dir / "config.pbtxt").read_text()

    with pytest.raises(ExportError, match=r"verification failed"):
        export(TINY, tmp_path, format="onnx", seed=1, precision="fp16", atol=0.0, rtol=0.0)

    assert good.artifact.read_bytes() == artifact
    assert (good.model_dir / "config.pbtxt").read_text() == config
    assert sorted(p.name for p in good.model_dir.iterdir()) == ["1", "config.pbtxt"]


def test_nondeterministic_model_fails_onnx_verification(tmp_path: Path, user_module) -> None:
    name = user_module(
        """
        import torch
        from torch import nn

        class Noisy(nn.Module):
            def forward(self, x):
                return x.flatten(1).mean(1, keepdim=True) + torch.rand(x.shape[0], 1)

        def build():
            return Noisy()
        """
    )
    with pytest.raises(ExportError, match=r"verification failed at batch size 1, output output__0: max abs error"):
        export(f"{name}:build", tmp_path, format="onnx")


def test_nondeterministic_model_fails_the_torchscript_trace_check(tmp_path: Path, user_module) -> None:
    name = user_module(
        """
        import torch
        from torch import nn

        class Noisy(nn.Module):
            def forward(self, x):
                return x.flatten(1).mean(1, keepdim=True) + torch.rand(x.shape[0], 1)

        def build():
            return Noisy()
        """
    )
    with pytest.raises(ExportError, match=r"the TorchScript trace does not reproduce the eager model"):
        export(f"{name}:build", tmp_path / "repo", format="torchscript")
    assert not (tmp_path / "repo").exists()


def test_broken_existing_config_fails_before_exporting(tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "config.pbtxt").write_text('name: "m"\nmax_batch_size: eight\n')
    with pytest.raises(ConfigError, match=r"config\.pbtxt:2"):
        export(TINY, tmp_path)
    assert sorted(p.name for p in model_dir.iterdir()) == ["config.pbtxt"]


# --- fp16 on a CPU-only machine ---------------------------------------------------------------------

CDIST_MODEL = """
import torch
from torch import nn

class Nearest(nn.Module):
    def __init__(self):
        super().__init__()
        self.centers = nn.Parameter(torch.randn(4, 12))

    def forward(self, x):
        return torch.cdist(x, self.centers)

def build():
    return Nearest()
"""


@needs_no_gpu
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_fp16_without_cpu_kernels_says_it_needs_a_gpu(tmp_path: Path, user_module, fmt: str) -> None:
    name = user_module(CDIST_MODEL)
    # The same model exports in fp32: the failure is about float16 on the CPU, nothing else.
    assert export(f"{name}:build", tmp_path, format=fmt, input_shape=(12,), name="fp32").report.passed
    with pytest.raises(ExportError, match=r"^fp16 verification needs a GPU: .*\"cdist\" not implemented for 'Half'"):
        export(f"{name}:build", tmp_path, format=fmt, input_shape=(12,), name="fp16", precision="fp16")
    assert not (tmp_path / "fp16").exists()


def test_half_kernel_errors_are_recognised() -> None:
    with pytest.raises(RuntimeError) as raised:
        torch.cdist(torch.ones(2, 3, dtype=torch.half), torch.ones(2, 3, dtype=torch.half))
    assert is_half_unsupported(raised.value)
    wrapped = ExportError("TorchScript export failed")
    wrapped.__cause__ = raised.value
    assert is_half_unsupported(wrapped)
    assert not is_half_unsupported(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert str(export_error("step", raised.value)).startswith("fp16 verification needs a GPU: step failed")
    # On a GPU the same error is a plain failure: advising a GPU would be wrong.
    assert str(export_error("step", raised.value, device="cuda")).startswith("step failed: NotImplementedError")


def test_verify_artifact_needs_a_model_file(tmp_path: Path) -> None:
    module = load_model(TINY)
    with pytest.raises(ExportError, match=r"artifact .*missing\.onnx does not exist"):
        verify_artifact(tmp_path / "missing.onnx", module, input_shape=SHAPE, batch_sizes=[1])
    (tmp_path / "model.savedmodel").write_text("x")
    with pytest.raises(
        ExportError,
        match=r"cannot verify model\.savedmodel: expected a \.onnx, a TorchScript \.pt or a torch\.export \.pt2",
    ):
        verify_artifact(tmp_path / "model.savedmodel", module, input_shape=SHAPE, batch_sizes=[1])
    (tmp_path / "model.pt2").write_bytes(b"not a program")
    with pytest.raises(ExportError, match=r"loading model\.pt2 with torch\.export\.load failed"):
        verify_artifact(tmp_path / "model.pt2", module, input_shape=SHAPE, batch_sizes=[1])
    (tmp_path / "model.onnx").write_bytes(b"not onnx")
    with pytest.raises(ExportError, match=r"loading model\.onnx into onnxruntime failed"):
        verify_artifact(tmp_path / "model.onnx", module, input_shape=SHAPE, batch_sizes=[1])
