"""ModelConfig: parsing with located errors, byte-exact round trips, golden edits, atomic saves."""

from __future__ import annotations

import random
import stat
import warnings
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from tritonkit.errors import ConfigError
from tritonkit.repository import (
    DynamicBatching,
    ModelConfig,
    ModelSpec,
    TensorSpec,
    VersionPolicy,
    Warmup,
    apply_settings,
    config_data_type,
    instance_groups,
)

ASSETS = Path(__file__).parent / "assets" / "configs"
HAND_WRITTEN = ["resnet.pbtxt", "densenet.pbtxt", "minimal.pbtxt"]


def load_asset(name: str) -> ModelConfig:
    return ModelConfig.load(ASSETS / name)


def expected(name: str) -> str:
    return (ASSETS / name).read_text(encoding="utf-8")


def render_strictly(config: ModelConfig) -> str:
    """render(), failing the test if patching fell back to a full rendering."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return config.render()


# --- parsing and loading --------------------------------------------------------------------------------


def test_parse_error_names_file_line_and_column():
    text = 'name: "resnet18"\nbackend: "onnxruntime"\n\n# batching\n\n\n  max_batch: 8\n'
    path = Path("model_repository/resnet18/config.pbtxt")
    with pytest.raises(ConfigError) as caught:
        ModelConfig.parse(text, path=path)
    assert str(caught.value) == (
        "model_repository/resnet18/config.pbtxt:7:3: "
        'Message type "inference.ModelConfig" has no field named "max_batch"'
    )


def test_parse_error_without_a_path_names_config_pbtxt():
    with pytest.raises(ConfigError, match=r"^config\.pbtxt:2:\d+: .*Enum type \"inference\.DataType\" has no value"):
        ModelConfig.parse('name: "a"\ninput { name: "x" data_type: TYPE_FOO }\n')


def test_parse_error_for_a_repeated_singular_field():
    with pytest.raises(ConfigError, match=r'^config\.pbtxt:2:\d+: .*should not have multiple "max_batch_size" fields'):
        ModelConfig.parse("max_batch_size: 1\nmax_batch_size: 2\n")


def test_load_accepts_the_file_or_its_model_directory(tmp_path):
    (tmp_path / "config.pbtxt").write_text('name: "m"\nmax_batch_size: 4\n')
    by_dir, by_file = ModelConfig.load(tmp_path), ModelConfig.load(tmp_path / "config.pbtxt")
    assert by_dir.path == by_file.path == tmp_path / "config.pbtxt"
    assert by_dir.proto == by_file.proto == model_config_pb2.ModelConfig(name="m", max_batch_size=4)


def test_load_missing_file_names_the_path(tmp_path):
    with pytest.raises(ConfigError, match=f"^{tmp_path / 'config.pbtxt'}: no such file$"):
        ModelConfig.load(tmp_path)


def test_load_rejects_non_utf8_text(tmp_path):
    (tmp_path / "config.pbtxt").write_bytes(b'name: "\xff"\n')
    with pytest.raises(ConfigError, match=r"config\.pbtxt: not UTF-8 text \(invalid start byte at byte 7\)$"):
        ModelConfig.load(tmp_path)


def test_properties_resolve_platform_to_backend():
    assert ModelConfig.parse('platform: "onnxruntime_onnx"').backend == "onnxruntime"
    assert ModelConfig.parse('platform: "pytorch_libtorch"').backend == "pytorch"
    assert ModelConfig.parse('platform: "tensorrt_plan"').backend == "tensorrt"
    config = ModelConfig.parse('name: "m" backend: "pytorch" max_batch_size: 3')
    assert (config.name, config.backend, config.max_batch_size) == ("m", "pytorch", 3)
    assert ModelConfig.parse("").backend == ""


# --- round trips and golden edits -----------------------------------------------------------------------


@pytest.mark.parametrize("name", HAND_WRITTEN)
def test_render_without_edits_is_byte_identical(name):
    config = load_asset(name)
    assert not config.is_modified
    assert config.render() == expected(name)


def test_resnet_batching_and_instance_edit_matches_golden():
    config = load_asset("resnet.pbtxt")
    apply_settings(
        config.proto,
        max_batch_size=16,
        instances=4,
        queue_delay_us=500,
        preferred_batch_sizes=[4, 8, 16],
        max_queue_size=128,
    )
    assert config.is_modified
    assert render_strictly(config) == expected("resnet_edited_expected.pbtxt")


def test_resnet_gpu_spread_matches_golden():
    config = load_asset("resnet.pbtxt")
    apply_settings(config.proto, gpus=[0, 1])
    assert render_strictly(config) == expected("resnet_gpus_expected.pbtxt")


def test_minimal_config_gains_new_blocks_matches_golden():
    config = load_asset("minimal.pbtxt")
    apply_settings(config.proto, queue_delay_us=100, instances=2, kind="gpu", gpus=[1])
    assert render_strictly(config) == expected("minimal_edited_expected.pbtxt")


def test_windows_line_endings_are_kept_for_new_lines():
    crlf_text = expected("minimal.pbtxt").replace("\n", "\r\n")
    config = ModelConfig.parse(crlf_text)
    apply_settings(config.proto, queue_delay_us=100, instances=2, kind="gpu", gpus=[1])
    assert render_strictly(config) == expected("minimal_edited_expected.pbtxt").replace("\n", "\r\n")
    config.proto.ClearField("output")
    assert "output {" not in render_strictly(config)
    assert "\n" not in render_strictly(config).replace("\r\n", "")


def test_densenet_unusual_syntax_edit_matches_golden():
    config = load_asset("densenet.pbtxt")
    proto = config.proto
    proto.name = "densenet"
    proto.input[1].data_type = config_data_type("FP32")
    proto.output[0].reshape.shape[:] = [1000, 1, 1]
    proto.instance_group[0].count = 3
    del proto.parameters["execution_mode"]
    proto.parameters['path\twith"escapes'].string_value = "abcd"
    proto.model_metrics.metric_control[0].histogram_options.buckets[1] = 0.25
    proto.model_warmup[0].inputs["data_0"].random_data = True
    proto.version_policy.specific.versions[:] = [1, 3]
    assert render_strictly(config) == expected("densenet_edited_expected.pbtxt")


def test_spec_renders_to_golden_and_parses_back_equal():
    spec = ModelSpec(
        name="resnet18",
        backend="onnxruntime",
        max_batch_size=8,
        inputs=(TensorSpec("input__0", "FP32", (3, 224, 224)),),
        outputs=(TensorSpec("output__0", "FP32", (1000,)),),
        dynamic_batching=DynamicBatching(
            max_queue_delay_microseconds=100, preferred_batch_sizes=(4, 8), max_queue_size=64
        ),
        instance_groups=instance_groups(2, "gpu", [0, 1]),
        warmup=(Warmup("random_batch", 8, (TensorSpec("input__0", "FP32", (3, 224, 224)),)),),
        version_policy=VersionPolicy.latest(2),
        parameters={"intra_op_thread_count": "4"},
        default_model_filename="resnet18.onnx",
    )
    config = ModelConfig.from_spec(spec)
    text = config.render()
    assert text == expected("spec_expected.pbtxt")
    assert ModelConfig.parse(text).proto == spec.to_proto()


def _random_edit(proto: model_config_pb2.ModelConfig, rng: random.Random) -> None:
    choice = rng.randrange(9)
    if choice == 0:
        proto.max_batch_size = rng.choice([0, 1, 8, 64])
    elif choice == 1 and proto.input:
        tensor = rng.choice(proto.input)
        tensor.dims[:] = [rng.choice([-1, 1, 3, 224]) for _ in range(rng.randrange(0, 4))]
    elif choice == 2:
        proto.input.add(name=f"extra{rng.randrange(100)}", data_type=model_config_pb2.TYPE_INT32, dims=[1])
    elif choice == 3 and proto.input:
        del proto.input[rng.randrange(len(proto.input))]
    elif choice == 4:
        if proto.HasField("dynamic_batching"):
            proto.ClearField("dynamic_batching")
        else:
            proto.dynamic_batching.max_queue_delay_microseconds = rng.randrange(1, 1000)
    elif choice == 5:
        key = rng.choice(["a", "execution_mode", "intra_op_thread_count", "z"])
        if key in proto.parameters and rng.random() < 0.5:
            del proto.parameters[key]
        else:
            proto.parameters[key].string_value = str(rng.randrange(10))
    elif choice == 6:
        apply_settings(proto, instances=rng.randrange(1, 4), gpus=rng.choice([None, [0], [0, 1]]))
    elif choice == 7:
        proto.ClearField(rng.choice(["optimization", "response_cache", "model_warmup", "version_policy"]))
    else:
        proto.name = rng.choice(["", "renamed", 'with "quotes"'])


@pytest.mark.parametrize("name", HAND_WRITTEN)
def test_random_edit_sequences_patch_without_falling_back(name):
    rng = random.Random(name)
    for _ in range(40):
        config = load_asset(name)
        for _ in range(rng.randrange(1, 5)):
            _random_edit(config.proto, rng)
        text = render_strictly(config)
        assert text_format.Parse(text, model_config_pb2.ModelConfig()) == config.proto


# --- saving ---------------------------------------------------------------------------------------------


def test_save_writes_the_patched_text_and_becomes_the_new_source(tmp_path):
    path = tmp_path / "config.pbtxt"
    path.write_text(expected("resnet.pbtxt"))
    config = ModelConfig.load(tmp_path)
    config.proto.max_batch_size = 16
    assert config.save() == path
    assert path.read_text() == expected("resnet.pbtxt").replace("max_batch_size: 8 ", "max_batch_size: 16 ")
    assert not config.is_modified
    config.proto.max_batch_size = 4
    config.save()
    assert "max_batch_size: 4   # clients send up to 8 images\n" in path.read_text()
    assert [entry.name for entry in tmp_path.iterdir()] == ["config.pbtxt"]  # no temporary file left


def test_save_keeps_the_file_mode_and_gives_new_files_a_readable_one(tmp_path):
    path = tmp_path / "config.pbtxt"
    path.write_text('name: "m"\n')
    path.chmod(0o640)
    config = ModelConfig.load(path)
    config.proto.max_batch_size = 2
    config.save()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    fresh = ModelConfig(model_config_pb2.ModelConfig(name="n"))
    target = fresh.save(tmp_path / "other.pbtxt")
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert target.read_text() == 'name: "n"\n'
    assert fresh.path == target


def test_save_into_a_model_directory_writes_config_pbtxt(tmp_path):
    config = ModelConfig(model_config_pb2.ModelConfig(name="m"))
    assert config.save(tmp_path) == tmp_path / "config.pbtxt"


def test_save_without_any_path_is_an_error():
    config = ModelConfig(model_config_pb2.ModelConfig(name="m"))
    with pytest.raises(ConfigError, match=r"^config 'm' was not read from a file; pass the path to save it to$"):
        config.save()


def test_save_into_a_missing_directory_names_it(tmp_path):
    target = tmp_path / "missing" / "config.pbtxt"
    with pytest.raises(ConfigError, match=f"^{target}: cannot write it "):
        ModelConfig(model_config_pb2.ModelConfig(name="m")).save(target)
