"""The span parser and patch_text: minimal, comment-preserving edits of protobuf text."""

from __future__ import annotations

import warnings

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from tritonkit.repository.pbtxt import PbtxtSyntaxError, parse_spans, patch_text
from tritonkit.repository.pbtxt_spans import tokenize


def parse(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def edit(text: str, change) -> str:
    """Apply ``change`` to the parsed ``text`` and patch; any fallback warning fails the test."""
    original = parse(text)
    updated = model_config_pb2.ModelConfig()
    updated.CopyFrom(original)
    change(updated)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        patched = patch_text(text, original, updated)
    assert parse(patched) == updated
    return patched


# --- span parser ----------------------------------------------------------------------------------------


def test_tokenize_keeps_hash_inside_strings_and_drops_comments():
    tokens = tokenize("name: \"a#b\"  # a comment\nlabel: 'it\\'s'")
    assert [token.text for token in tokens] == ["name", ":", '"a#b"', "label", ":", "'it\\'s'"]


def test_tokenize_reads_numbers_like_text_format():
    tokens = tokenize("a: -inf b: 1e-5 c: 0x1F d: .5 e: -3")
    assert [token.text for token in tokens if token.kind == "word"] == [
        "a", "-inf", "b", "1e-5", "c", "0x1F", "d", ".5", "e", "-3",
    ]  # fmt: skip


def test_parse_spans_records_field_value_and_block_spans():
    text = 'a: 1, b { c: [1, 2]; d: "x" "y" }\ne < f: -inf >\ng: [ {h: 1}, {h: 2} ]\n'
    root = parse_spans(text)
    assert [node.name for node in root.fields] == ["a", "b", "e", "g"]
    a, b, e, g = root.fields
    assert text[a.start : a.end] == "a: 1"
    assert text[a.start : a.end_with_separator] == "a: 1,"
    assert text[b.start : b.end] == 'b { c: [1, 2]; d: "x" "y" }'
    block = b.elements[0].block
    assert block is not None
    c, d = block.fields
    assert [text[element.start : element.end] for element in c.elements] == ["1", "2"]
    assert c.list_span is not None and text[c.list_span[0] : c.list_span[1]] == "1, 2"
    assert text[d.elements[0].start : d.elements[0].end] == '"x" "y"'
    assert text[block.inner_start : block.inner_end] == ' c: [1, 2]; d: "x" "y" '
    e_block = e.elements[0].block
    assert e_block is not None and text[e_block.fields[0].elements[0].start : e_block.fields[0].end] == "-inf"
    assert len(g.elements) == 2
    assert [text[element.start : element.end] for element in g.elements] == ["{h: 1}", "{h: 2}"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[ext.field]: 1", "expected a field name at offset 0, found '['"),
        ("a { b: 1", "missing '}' at end of text"),
        ("a 1", "expected ':' before a scalar value at offset 2"),
        ("a: }", "expected a value at offset 3, found '}'"),
        ("a: [1 2]", "expected ',' at offset 6, found '2'"),
        ("a: 1 @", "expected a field name at offset 5, found '@'"),
        ("a:", "unexpected end of text"),
    ],
)
def test_parse_spans_errors(text, message):
    with pytest.raises(PbtxtSyntaxError, match="^" + message.replace("[", r"\[").replace("{", r"\{") + "$"):
        parse_spans(text)


# --- patch_text -----------------------------------------------------------------------------------------


def test_unchanged_message_returns_the_text_untouched():
    text = 'name: "x"   # odd   spacing\n\n\nmax_batch_size:8'
    assert patch_text(text, parse(text), parse(text)) is text


def test_scalar_edit_replaces_only_the_value():
    text = "# header\nmax_batch_size:   8  # up to eight\nname: 'm'\n"
    patched = edit(text, lambda config: setattr(config, "max_batch_size", 16))
    assert patched == "# header\nmax_batch_size:   16  # up to eight\nname: 'm'\n"


def test_scalar_set_to_its_default_stays_written():
    text = "max_batch_size: 8  # batching on\n"
    assert edit(text, lambda config: setattr(config, "max_batch_size", 0)) == "max_batch_size: 0  # batching on\n"


def test_enum_and_string_values_are_spelled_by_text_format():
    text = 'input { name: "a" data_type: TYPE_FP32 }\n'

    def change(config):
        config.input[0].name = 'say "hi"\n'
        config.input[0].data_type = model_config_pb2.TYPE_STRING

    assert edit(text, change) == 'input { name: "say \\"hi\\"\\n" data_type: TYPE_STRING }\n'


def test_non_ascii_text_stays_readable():
    assert edit('name: "a"\n', lambda config: setattr(config, "name", "café")) == 'name: "café"\n'


def test_new_field_goes_after_the_last_field_and_its_comment():
    text = '# header\nname: "x"  # the model\n\n# footer\n'
    patched = edit(text, lambda config: setattr(config, "max_batch_size", 4))
    assert patched == '# header\nname: "x"  # the model\nmax_batch_size: 4\n\n# footer\n'


def test_new_field_at_end_of_text_without_newline():
    assert edit('name: "x"', lambda config: setattr(config, "max_batch_size", 4)) == 'name: "x"\nmax_batch_size: 4'


def test_new_field_in_a_document_with_only_comments():
    assert edit("# nothing yet\n", lambda config: setattr(config, "name", "x")) == '# nothing yet\nname: "x"\n'


def test_new_nested_field_matches_the_block_indentation():
    text = "dynamic_batching {\n    max_queue_delay_microseconds: 100\n}\n"
    patched = edit(text, lambda config: config.dynamic_batching.default_queue_policy.SetInParent())
    assert patched == (
        "dynamic_batching {\n    max_queue_delay_microseconds: 100\n    default_queue_policy {\n    }\n}\n"
    )


def test_new_field_in_an_empty_multiline_block_keeps_its_comment():
    text = "  dynamic_batching {\n    # tuned later\n  }\n"
    patched = edit(text, lambda config: setattr(config.dynamic_batching, "max_queue_delay_microseconds", 5))
    assert patched == "  dynamic_batching {\n    # tuned later\n    max_queue_delay_microseconds: 5\n  }\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("dynamic_batching { }\n", "dynamic_batching { max_queue_delay_microseconds: 5 }\n"),
        ("dynamic_batching {}\n", "dynamic_batching { max_queue_delay_microseconds: 5 }\n"),
        (
            "dynamic_batching { preferred_batch_size: 2 }\n",
            "dynamic_batching { preferred_batch_size: 2 max_queue_delay_microseconds: 5 }\n",
        ),
    ],
)
def test_new_field_in_a_one_line_block_stays_on_that_line(text, expected):
    assert edit(text, lambda config: setattr(config.dynamic_batching, "max_queue_delay_microseconds", 5)) == expected


def test_cleared_block_loses_its_lines_but_not_the_comments_around_it():
    text = (
        "# batching below\n"
        "dynamic_batching {  # on\n"
        "  max_queue_delay_microseconds: 100\n"
        "}  # end of batching\n"
        "# the name\n"
        'name: "x"\n'
    )
    patched = edit(text, lambda config: config.ClearField("dynamic_batching"))
    assert patched == '# batching below\n# the name\nname: "x"\n'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('input { dims: 1 name: "a" }\n', 'input { name: "a" }\n'),
        ('input { name: "a" dims: [1, 2] }\n', 'input { name: "a" }\n'),
        ('input { name: "a" dims: [1, 2] }  # kept\n', 'input { name: "a" }  # kept\n'),
        ('input { name: "a" dims: 1 dims: 2 }\n', 'input { name: "a" }\n'),
    ],
)
def test_removing_a_field_inside_a_line_keeps_the_rest_of_the_line(text, expected):
    assert edit(text, lambda config: config.input[0].ClearField("dims")) == expected


def test_list_of_scalars_changes_in_place_when_its_length_does():
    text = "input {\n  dims: [ 3, 224, 224 ]  # CHW\n}\n"
    patched = edit(text, lambda config: config.input[0].dims.__setitem__(slice(None), [3, 256]))
    assert patched == "input {\n  dims: [ 3, 256 ]  # CHW\n}\n"


def test_same_length_list_edits_element_by_element():
    text = "input { dims: [ 3,224 , 224 ] }\n"
    patched = edit(text, lambda config: config.input[0].dims.__setitem__(1, 256))
    assert patched == "input { dims: [ 3,256 , 224 ] }\n"


def test_repeated_occurrences_grow_after_the_last_one():
    text = "instance_group {\n  gpus: 0  # first\n  gpus: 1\n  count: 1\n}\n"
    patched = edit(text, lambda config: config.instance_group[0].gpus.append(2))
    assert patched == "instance_group {\n  gpus: 0  # first\n  gpus: 1\n  gpus: 2\n  count: 1\n}\n"


def test_repeated_occurrences_shrink_from_the_end():
    text = "instance_group {\n  gpus: 0  # first\n  gpus: 1  # second\n}\n"
    patched = edit(text, lambda config: config.instance_group[0].gpus.pop())
    assert patched == "instance_group {\n  gpus: 0  # first\n}\n"


def test_repeated_messages_of_same_length_keep_their_comments():
    text = 'input {\n  name: "a"  # image\n  dims: 3\n}\n# second input\ninput {\n  name: "b"\n}\n'
    patched = edit(text, lambda config: setattr(config.input[1], "name", "c"))
    assert patched == 'input {\n  name: "a"  # image\n  dims: 3\n}\n# second input\ninput {\n  name: "c"\n}\n'


def test_reordered_repeated_messages_are_rendered_at_the_first_position():
    text = 'input { name: "a" }  # first\n# between\ninput { name: "b" }\nmax_batch_size: 1\n'

    def change(config):
        del config.input[:]
        config.input.add(name="c")

    patched = edit(text, change)
    assert patched == 'input {\n  name: "c"\n}  # first\n# between\nmax_batch_size: 1\n'


def test_map_entries_are_matched_by_key():
    text = (
        "parameters {  # threads\n"
        '  key: "a"\n'
        '  value { string_value: "1" }  # one\n'
        "}\n"
        '# b goes away\nparameters { key: "b" value { string_value: "2" } }\n'
        'parameters { key: "c" value { string_value: "3" } }  # untouched\n'
    )

    def change(config):
        config.parameters["a"].string_value = "10"
        del config.parameters["b"]
        config.parameters["d"].string_value = "4"

    assert edit(text, change) == (
        "parameters {  # threads\n"
        '  key: "a"\n'
        '  value { string_value: "10" }  # one\n'
        "}\n"
        "# b goes away\n"
        'parameters { key: "c" value { string_value: "3" } }  # untouched\n'
        'parameters {\n  key: "d"\n  value {\n    string_value: "4"\n  }\n}\n'
    )


def test_insertion_next_to_a_removal_on_the_same_line():
    text = "dynamic_batching {\n  max_queue_delay_microseconds: 5 preferred_batch_size: 4  # tuned\n}\n"

    def change(config):
        del config.dynamic_batching.preferred_batch_size[:]
        config.dynamic_batching.default_queue_policy.max_queue_size = 3

    patched = edit(text, change)
    assert patched == (
        "dynamic_batching {\n  max_queue_delay_microseconds: 5 default_queue_policy { max_queue_size: 3 }  # tuned\n}\n"
    )


def test_emptied_map_loses_every_entry():
    text = 'name: "m"\nparameters { key: "a" value { string_value: "1" } }\nparameters { key: "b" value { } }\n'
    assert edit(text, lambda config: config.ClearField("parameters")) == 'name: "m"\n'


def test_switching_a_oneof_removes_the_old_choice():
    text = "version_policy: { latest: { num_versions: 2 } }  # keep two\n"
    patched = edit(text, lambda config: config.version_policy.all.SetInParent())
    assert patched == "version_policy: { all { } }  # keep two\n"


def test_text_that_disagrees_with_the_original_falls_back_with_a_warning():
    text = "max_batch_size: 4  # a comment\n"
    claimed_original = model_config_pb2.ModelConfig(max_batch_size=8)
    updated = model_config_pb2.ModelConfig(name="x", max_batch_size=8)
    with pytest.warns(UserWarning, match="the patched text does not match the edited config; writing a fresh"):
        patched = patch_text(text, claimed_original, updated)
    assert patched == 'name: "x"\nmax_batch_size: 8\n'


def test_text_that_cannot_be_lined_up_falls_back_with_a_warning():
    text = "input { dims: [1, 2] }\n"
    claimed_original = model_config_pb2.ModelConfig()
    claimed_original.input.add(dims=[1, 2, 3])
    updated = model_config_pb2.ModelConfig()
    updated.input.add(dims=[1, 2, 3, 4])
    with pytest.warns(UserWarning, match=r"could not patch the text in place \(field dims has 2 values in the text, 3"):
        patched = patch_text(text, claimed_original, updated)
    assert parse(patched) == updated
