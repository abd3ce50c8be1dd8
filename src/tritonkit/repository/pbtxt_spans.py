"""Where each field of a protobuf text-format document sits in its text.

``text_format`` parses config.pbtxt into a message but forgets the text; editing a user's file without
losing their comments and layout needs the positions back. ``parse_spans`` re-reads the text with the
same token rules as ``google.protobuf.text_format`` and records, for every field occurrence, the span of
the whole field and of each value it holds. It does not check field names or types: it only runs on text
that ``text_format.Parse`` has already accepted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["Block", "Element", "FieldNode", "PbtxtSyntaxError", "Token", "parse_spans", "tokenize"]

# Mirrors text_format.Tokenizer._TOKEN: identifiers and numbers may contain '+', '-' and '.', so "-inf",
# "1e-5" and "0x1F" are each one token, exactly as the real parser sees them; any other character is a
# token of its own.
_TOKEN_PATTERN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<word>[a-zA-Z_][0-9a-zA-Z_+-]*|(?:[0-9+-]|\.[0-9])[0-9a-zA-Z_.+-]*)
  | (?P<string>"[^"\n\\]*(?:\\.[^"\n\\]*)*"|'[^'\n\\]*(?:\\.[^'\n\\]*)*')
  | (?P<symbol>\S)
    """,
    re.VERBOSE,
)
_CLOSING = {"{": "}", "<": ">"}


class PbtxtSyntaxError(ValueError):
    """Text this module cannot map to spans (extension names, or text text_format would also reject)."""


@dataclass(frozen=True)
class Token:
    kind: str  # "word", "string" or "symbol"
    text: str
    start: int
    end: int


@dataclass
class Block:
    """The fields between a pair of braces; for the document itself ``open``/``close`` are None."""

    fields: list[FieldNode]
    inner_start: int
    inner_end: int
    open: int | None = None
    close: int | None = None


@dataclass
class Element:
    """One value of a field: a scalar (possibly several adjacent strings) or a ``{ ... }`` block."""

    start: int
    end: int
    block: Block | None = None


@dataclass
class FieldNode:
    """One occurrence of a field: ``name: value``, ``name { }`` or ``name: [v1, v2]``.

    ``end`` is where the value ends; ``end_with_separator`` also covers a trailing ``,`` or ``;``.
    ``list_span`` is the text between the brackets when the occurrence uses list syntax.
    """

    name: str
    start: int
    end: int
    end_with_separator: int
    elements: list[Element] = field(default_factory=list)
    list_span: tuple[int, int] | None = None


def tokenize(text: str) -> list[Token]:
    """Meaningful tokens of ``text``; whitespace and ``#`` comments are dropped."""
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN_PATTERN.match(text, position)
        assert match is not None and match.lastgroup is not None  # the last alternative takes any character
        kind = match.lastgroup
        if kind not in ("space", "comment"):
            tokens.append(Token(kind, match.group(), match.start(), match.end()))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0

    def peek(self) -> Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise PbtxtSyntaxError("unexpected end of text")
        self.index += 1
        return token

    def take_symbol(self, symbol: str) -> Token:
        token = self.take()
        if token.kind != "symbol" or token.text != symbol:
            raise PbtxtSyntaxError(f"expected {symbol!r} at offset {token.start}, found {token.text!r}")
        return token

    def at_symbol(self, *symbols: str) -> bool:
        token = self.peek()
        return token is not None and token.kind == "symbol" and token.text in symbols

    def fields_until(self, closing: str | None) -> list[FieldNode]:
        fields: list[FieldNode] = []
        while True:
            token = self.peek()
            if token is None:
                if closing is not None:
                    raise PbtxtSyntaxError(f"missing {closing!r} at end of text")
                return fields
            if closing is not None and self.at_symbol(closing):
                return fields
            fields.append(self.field())

    def field(self) -> FieldNode:
        name = self.take()
        if name.kind != "word" or not (name.text[0].isalpha() or name.text[0] == "_"):
            raise PbtxtSyntaxError(f"expected a field name at offset {name.start}, found {name.text!r}")
        has_colon = self.at_symbol(":")
        if has_colon:
            self.take()
        node = FieldNode(name.text, name.start, name.start, name.start)
        if self.at_symbol("["):
            opening = self.take()
            while not self.at_symbol("]"):
                node.elements.append(self.value(has_colon=True))
                if not self.at_symbol("]"):
                    self.take_symbol(",")
            closing = self.take_symbol("]")
            node.list_span = (opening.end, closing.start)
            node.end = closing.end
        else:
            element = self.value(has_colon)
            node.elements.append(element)
            node.end = element.end
        node.end_with_separator = node.end
        if self.at_symbol(",", ";"):
            node.end_with_separator = self.take().end
        return node

    def value(self, has_colon: bool) -> Element:
        if self.at_symbol("{", "<"):
            opening = self.take()
            children = self.fields_until(_CLOSING[opening.text])
            closing = self.take_symbol(_CLOSING[opening.text])
            block = Block(children, opening.end, closing.start, opening.start, closing.start)
            return Element(opening.start, closing.end, block)
        if not has_colon:
            token = self.peek()
            where = token.start if token else len(self.text)
            raise PbtxtSyntaxError(f"expected ':' before a scalar value at offset {where}")
        first = self.take()
        if first.kind == "symbol":
            raise PbtxtSyntaxError(f"expected a value at offset {first.start}, found {first.text!r}")
        last = first
        # Adjacent string literals concatenate into one value.
        while first.kind == "string" and (following := self.peek()) is not None and following.kind == "string":
            last = self.take()
        return Element(first.start, last.end)


def parse_spans(text: str) -> Block:
    """The document's top-level block, with the spans of every field occurrence nested inside."""
    parser = _Parser(text)
    return Block(parser.fields_until(None), 0, len(text))
