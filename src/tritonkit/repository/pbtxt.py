"""Edit a hand-written config.pbtxt so it says what a changed message says, keeping everything else.

``patch_text`` compares the message the text was parsed into with the edited one, field by field, and
changes only the text of fields whose value differs. Unchanged fields keep their formatting, order and
comments byte for byte; new text always comes from ``text_format``. The result is re-parsed and compared
with the edited message, and if they disagree the whole config is re-rendered instead, with a warning:
losing comments is acceptable, writing a config that means something else is not.
"""

from __future__ import annotations

import re
import warnings
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from google.protobuf import text_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from tritonkit.repository.pbtxt_spans import Block, FieldNode, PbtxtSyntaxError, parse_spans

__all__ = ["PbtxtSyntaxError", "parse_spans", "patch_text", "render_text"]

_INDENT_STEP = "  "  # what text_format uses, so inserted blocks look like rendered ones
_LEADING_WHITESPACE = re.compile(r"[ \t]*")
_BLANKS_AND_COMMENT = re.compile(r"[ \t]*(?:#[^\r\n]*)?")


class _PatchFailed(Exception):
    """The text and the original message do not line up; patching gives way to a full render."""


@dataclass(frozen=True)
class _Edit:
    start: int
    end: int
    text: str


def _is_repeated(field: FieldDescriptor) -> bool:
    # protobuf 6 deprecates ``label`` in favour of ``is_repeated``, which protobuf 4 lacks.
    is_repeated = getattr(field, "is_repeated", None)
    return bool(is_repeated) if is_repeated is not None else field.label == FieldDescriptor.LABEL_REPEATED


def render_text(message: Message) -> str:
    """The text_format rendering tritonkit writes for a config with no source text.

    Non-ASCII text stays readable rather than octal-escaped; Triton reads config.pbtxt as UTF-8.
    """
    return text_format.MessageToString(message, as_utf8=True)


def patch_text(original_text: str, original: Message, updated: Message) -> str:
    """Text for ``updated``, made by editing ``original_text`` (which parses to ``original``) minimally."""
    if original == updated:
        return original_text
    try:
        patched = _Patcher(original_text).patch(original, updated)
    except (PbtxtSyntaxError, _PatchFailed, text_format.ParseError) as error:
        return _fallback(updated, f"could not patch the text in place ({error})")
    check = type(updated)()
    try:
        text_format.Parse(patched, check)
    except text_format.ParseError as error:
        return _fallback(updated, f"the patched text does not parse ({error})")
    if check != updated:
        return _fallback(updated, "the patched text does not match the edited config")
    return patched


def _fallback(updated: Message, reason: str) -> str:
    warnings.warn(
        f"{reason}; writing a fresh rendering of the config instead, which drops its comments and layout",
        stacklevel=3,
    )
    return render_text(updated)


def _values_equal(field: FieldDescriptor, original: Message, updated: Message) -> bool:
    if _is_repeated(field):
        old, new = getattr(original, field.name), getattr(updated, field.name)
        if _is_map(field):
            return dict(old) == dict(new)
        return list(old) == list(new)
    if field.has_presence and original.HasField(field.name) != updated.HasField(field.name):
        return False
    return bool(getattr(original, field.name) == getattr(updated, field.name))


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _only_field(message: Message, field: FieldDescriptor) -> Message:
    """A copy of ``message`` with every field but ``field`` cleared."""
    copy = type(message)()
    copy.CopyFrom(message)
    for other, _ in copy.ListFields():
        if other.name != field.name:
            copy.ClearField(other.name)
    return copy


def _with_elements(message: Message, field: FieldDescriptor, values: list[Any]) -> Message:
    """A message of ``message``'s type whose only field is repeated ``field`` holding ``values``."""
    holder = type(message)()
    getattr(holder, field.name).extend(values)
    return holder


def _with_map_entries(message: Message, field: FieldDescriptor, keys: list[Any]) -> Message:
    holder = type(message)()
    source, target = getattr(message, field.name), getattr(holder, field.name)
    value_is_message = field.message_type.fields_by_name["value"].message_type is not None
    for key in keys:
        if value_is_message:
            target[key].CopyFrom(source[key])
        else:
            target[key] = source[key]
    return holder


def _scalar_token(message: Message, field: FieldDescriptor, value: Any) -> str:
    """The text of one value of ``message``'s scalar ``field``, spelled the way text_format spells it."""
    holder = type(message)()
    if _is_repeated(field):
        getattr(holder, field.name).append(value)
    else:
        setattr(holder, field.name, value)
    rendered = text_format.MessageToString(holder, as_one_line=True, as_utf8=True)
    if rendered:
        prefix = f"{field.name}: "
        if not rendered.startswith(prefix):
            raise _PatchFailed(f"unexpected rendering {rendered!r} of field {field.name}")
        return rendered[len(prefix) :]
    # proto3 does not print a default value, so spell it out; the user had written this field.
    if field.type == FieldDescriptor.TYPE_ENUM:
        return str(field.enum_type.values_by_number[value].name)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return "false"
    if field.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
        return '""'
    return "0"


class _Patcher:
    def __init__(self, text: str) -> None:
        self.text = text
        # New lines follow the file's convention, so a Windows-edited config does not end up mixed.
        self.newline = "\r\n" if "\r\n" in text else "\n"
        self.edits: list[_Edit] = []
        self.removed: set[int] = set()

    def patch(self, original: Message, updated: Message) -> str:
        self.patch_block(parse_spans(self.text), original, updated)
        return self.apply()

    # --- walking the message ---------------------------------------------------------------------------

    def patch_block(self, block: Block, original: Message, updated: Message) -> None:
        occurrences: dict[str, list[FieldNode]] = defaultdict(list)
        for node in block.fields:
            occurrences[node.name].append(node)
        unknown = set(occurrences) - set(updated.DESCRIPTOR.fields_by_name)
        if unknown:
            raise _PatchFailed(f"the text has fields {sorted(unknown)} the message type does not")
        additions: list[str] = []
        for field in updated.DESCRIPTOR.fields:
            if _values_equal(field, original, updated):
                continue
            nodes = occurrences.get(field.name, [])
            if not nodes:
                rendered = render_text(_only_field(updated, field))
                if rendered:
                    additions.append(rendered)
            elif _is_repeated(field):
                self.patch_repeated(field, nodes, original, updated)
            elif len(nodes) != 1 or len(nodes[0].elements) != 1:
                raise _PatchFailed(f"singular field {field.name} appears more than once")
            elif field.has_presence and not updated.HasField(field.name):
                self.remove(nodes[0])
            elif field.message_type is not None:
                child_block = nodes[0].elements[0].block
                if child_block is None:
                    raise _PatchFailed(f"message field {field.name} has a scalar value in the text")
                self.patch_block(child_block, getattr(original, field.name), getattr(updated, field.name))
            else:
                element = nodes[0].elements[0]
                self.replace(element.start, element.end, _scalar_token(updated, field, getattr(updated, field.name)))
        if additions:
            self.insert_at_end(block, "".join(additions))

    def patch_repeated(
        self, field: FieldDescriptor, nodes: list[FieldNode], original: Message, updated: Message
    ) -> None:
        if _is_map(field):
            self.patch_map(field, nodes, updated)
            return
        old, new = list(getattr(original, field.name)), list(getattr(updated, field.name))
        elements = [element for node in nodes for element in node.elements]
        if len(elements) != len(old):
            raise _PatchFailed(f"field {field.name} has {len(elements)} values in the text, {len(old)} parsed")
        is_message = field.message_type is not None
        uses_lists = any(node.list_span is not None for node in nodes)
        if not new:
            for node in nodes:
                self.remove(node)
        elif len(new) == len(old):
            # Same count: edit element by element, so comments inside unchanged parts survive.
            for element, old_value, new_value in zip(elements, old, new):
                if old_value == new_value:
                    continue
                if is_message:
                    if element.block is None:
                        raise _PatchFailed(f"message field {field.name} has a scalar value in the text")
                    self.patch_block(element.block, old_value, new_value)
                else:
                    self.replace(element.start, element.end, _scalar_token(updated, field, new_value))
        elif not is_message and len(nodes) == 1 and nodes[0].list_span is not None:
            tokens = ", ".join(_scalar_token(updated, field, value) for value in new)
            start, end = (elements[0].start, elements[-1].end) if elements else nodes[0].list_span
            self.replace(start, end, tokens)
        elif not uses_lists and new[: len(old)] == old:
            self.insert_after(nodes[-1], render_text(_with_elements(updated, field, new[len(old) :])))
        elif not uses_lists and old[: len(new)] == new:
            for node in nodes[len(new) :]:
                self.remove(node)
        else:
            self.replace_all(nodes, render_text(_only_field(updated, field)))

    def patch_map(self, field: FieldDescriptor, nodes: list[FieldNode], updated: Message) -> None:
        """Match map entries by key, so editing one entry leaves the others' text alone."""
        new_map = getattr(updated, field.name)
        if not new_map:
            for node in nodes:
                self.remove(node)
            return
        if any(node.list_span is not None for node in nodes):
            self.replace_all(nodes, render_text(_only_field(updated, field)))
            return
        entry_class = new_map.GetEntryClass()
        keyed: list[tuple[Any, FieldNode, Message]] = []
        for node in nodes:
            entry_block = node.elements[0].block
            if entry_block is None:
                raise _PatchFailed(f"map field {field.name} has a scalar value in the text")
            entry = entry_class()
            text_format.Parse(self.text[entry_block.inner_start : entry_block.inner_end], entry)
            keyed.append((entry.key, node, entry))
        keys_in_text = [key for key, _, _ in keyed]
        if len(set(keys_in_text)) != len(keys_in_text):
            self.replace_all(nodes, render_text(_only_field(updated, field)))
            return
        survivors = [node for key, node, _ in keyed if key in new_map]
        if not survivors:
            self.replace_all(nodes, render_text(_only_field(updated, field)))
            return
        for key, node, old_entry in keyed:
            if key not in new_map:
                self.remove(node)
                continue
            new_entry = entry_class()
            _fill_entry(new_entry, field, key, new_map[key])
            if new_entry != old_entry:
                assert node.elements[0].block is not None
                self.patch_block(node.elements[0].block, old_entry, new_entry)
        added = sorted(key for key in new_map if key not in set(keys_in_text))
        if added:
            self.insert_after(survivors[-1], render_text(_with_map_entries(updated, field, added)))

    # --- text edits ------------------------------------------------------------------------------------

    def replace(self, start: int, end: int, text: str) -> None:
        self.edits.append(_Edit(start, end, text))

    def replace_all(self, nodes: list[FieldNode], rendered: str) -> None:
        """Put ``rendered`` where the first occurrence was and drop the others."""
        first = nodes[0]
        indent = self.indent_of(first.start)
        lines = rendered.rstrip("\n").split("\n")
        self.replace(first.start, first.end, (self.newline + indent).join(lines))
        for node in nodes[1:]:
            self.remove(node)

    def remove(self, node: FieldNode) -> None:
        self.removed.add(id(node))
        line_start = self.text.rfind("\n", 0, node.start) + 1
        rest = self.rest_of_line(node.end_with_separator)
        alone_on_line = self.text[line_start : node.start].strip() == ""
        if alone_on_line and rest is not None:
            # The line held only this field (and maybe a comment about it): drop the whole line.
            self.replace(line_start, rest + self.line_break_length(rest), "")
            return
        end = node.end_with_separator
        if rest is None:
            while end < len(self.text) and self.text[end] in " \t":
                end += 1
            self.replace(node.start, end, "")
        else:
            start = node.start
            while start > line_start and self.text[start - 1] in " \t":
                start -= 1
            self.replace(start, end, "")

    def insert_after(self, anchor: FieldNode, rendered: str) -> None:
        """Insert ``rendered`` fields right after ``anchor``, on new lines if it ends its line."""
        newline = self.rest_of_line(anchor.end_with_separator)
        if newline is None:
            self.replace(anchor.end_with_separator, anchor.end_with_separator, " " + _one_line(rendered))
            return
        self.replace(newline, newline, self.newline + self.indented(rendered, self.indent_of(anchor.start)))

    def insert_at_end(self, block: Block, rendered: str) -> None:
        survivors = [node for node in block.fields if id(node) not in self.removed]
        if survivors:
            self.insert_after(survivors[-1], rendered)
            return
        if block.close is None:
            separator = self.newline if self.text and not self.text.endswith("\n") else ""
            self.replace(len(self.text), len(self.text), separator + self.indented(rendered, "") + self.newline)
            return
        assert block.open is not None
        close_line_start = self.text.rfind("\n", 0, block.close) + 1
        close_indent = self.text[close_line_start : block.close]
        if close_line_start > block.open and close_indent.strip() == "":
            body = self.indented(rendered, close_indent + _INDENT_STEP) + self.newline
            self.replace(close_line_start, close_line_start, body)
            return
        pad = "" if self.text[block.close - 1] in " \t" else " "
        self.replace(block.close, block.close, pad + _one_line(rendered) + " ")

    def rest_of_line(self, position: int) -> int | None:
        """Index of the line break (or end of text) ending ``position``'s line if only blanks or a comment
        follow; None if more fields follow on the same line."""
        match = _BLANKS_AND_COMMENT.match(self.text, position)
        assert match is not None, "the pattern matches the empty string"
        end = match.end()
        if end == len(self.text) or self.line_break_length(end):
            return end
        return None

    def line_break_length(self, position: int) -> int:
        if self.text.startswith("\r\n", position):
            return 2
        return 1 if self.text.startswith("\n", position) else 0

    def indented(self, rendered: str, indent: str) -> str:
        return self.newline.join(indent + line for line in rendered.rstrip("\n").split("\n"))

    def indent_of(self, position: int) -> str:
        line_start = self.text.rfind("\n", 0, position) + 1
        match = _LEADING_WHITESPACE.match(self.text, line_start)
        return match.group() if match else ""

    def apply(self) -> str:
        # At one position, insertions go before a deletion that starts there, in the order they were made.
        ordered = sorted(enumerate(self.edits), key=lambda pair: (pair[1].start, pair[1].end > pair[1].start, pair[0]))
        merged: list[_Edit] = []
        for _, edit in ordered:
            if merged and edit.start < merged[-1].end:
                previous = merged[-1]
                # Two deletions may touch the same blanks between fields on one line; anything else
                # overlapping means the walk went wrong.
                if edit.text or previous.text:
                    raise _PatchFailed("overlapping edits")
                merged[-1] = _Edit(previous.start, max(previous.end, edit.end), "")
                continue
            merged.append(edit)
        pieces: list[str] = []
        position = 0
        for edit in merged:
            pieces.append(self.text[position : edit.start])
            pieces.append(edit.text)
            position = edit.end
        pieces.append(self.text[position:])
        return "".join(pieces)


def _fill_entry(entry: Message, field: FieldDescriptor, key: Any, value: Any) -> None:
    # Ignored below: a map entry is a generated class with key and value fields; Message's stubs know neither.
    entry.key = key  # type: ignore[attr-defined]
    if field.message_type.fields_by_name["value"].message_type is not None:
        entry.value.CopyFrom(value)  # type: ignore[attr-defined]
    else:
        entry.value = value  # type: ignore[attr-defined]


def _one_line(rendered: str) -> str:
    return " ".join(line.strip() for line in rendered.strip().split("\n"))
