"""A small parser of the Grafana Alloy configuration syntax (blocks, attributes, expressions), enough to check
monitoring/alloy/config.alloy statically: no Alloy binary or parser package is available here.

Grammar (from Alloy's syntax reference): a body is a list of attributes `name = expr` and blocks
`name(.name)* ["label"] { body }`; expressions are literals (strings, numbers, true/false/null), arrays `[...]`,
objects `{ key = expr, ... }`, references `a.b.c`, indexing `x[0]`, calls `f(...)`, and binary operators.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

TOKEN = re.compile(
    r"""(?P<space>\s+)|(?P<comment>//[^\n]*|/\*.*?\*/)|(?P<string>"(?:\\.|[^"\\\n])*")|(?P<number>\d+(?:\.\d+)?)"""
    r"""|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>==|!=|<=|>=|&&|\|\||[-+*/%^<>!=.,{}\[\]()])""",
    re.S,
)
BINARY = ("||", "&&", "==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "%", "^")


class AlloySyntaxError(ValueError):
    pass


@dataclass
class Reference:
    path: list[str]  # a.b.c


@dataclass
class Call:
    function: list[str]
    arguments: list[Any]


@dataclass
class Operation:
    operator: str
    left: Any
    right: Any


@dataclass
class Block:
    name: str  # dotted, e.g. loki.source.file
    label: str | None
    attributes: dict[str, Any] = field(default_factory=dict)
    blocks: list[Block] = field(default_factory=list)


def tokens(text: str) -> list[tuple[str, str, int]]:
    found, position = [], 0
    while position < len(text):
        match = TOKEN.match(text, position)
        if match is None:
            line = text.count("\n", 0, position) + 1
            raise AlloySyntaxError(f"line {line}: unexpected character {text[position]!r}")
        kind = match.lastgroup or ""
        if kind not in ("space", "comment"):
            found.append((kind, match.group(), text.count("\n", 0, position) + 1))
        position = match.end()
    return found


class Parser:
    def __init__(self, text: str):
        self.tokens, self.index = tokens(text), 0

    def peek(self, offset: int = 0) -> tuple[str, str, int]:
        at = self.index + offset
        return self.tokens[at] if at < len(self.tokens) else ("end", "", -1)

    def take(self, value: str | None = None, kind: str | None = None) -> tuple[str, str, int]:
        token = self.peek()
        if (value is not None and token[1] != value) or (kind is not None and token[0] != kind):
            raise AlloySyntaxError(f"line {token[2]}: expected {value or kind}, found {token[1]!r}")
        self.index += 1
        return token

    def body(self, closing: str | None) -> Block:
        block = Block("", None)
        while self.peek()[1] != (closing or "") and self.peek()[0] != "end":
            name = [self.take(kind="name")[1]]
            if self.peek()[1] == "=":
                self.take("=")
                if name[0] in block.attributes:
                    raise AlloySyntaxError(f"line {self.peek()[2]}: attribute {name[0]} set twice")
                block.attributes[name[0]] = self.expression()
                continue
            while self.peek()[1] == ".":
                self.take(".")
                name.append(self.take(kind="name")[1])
            label = json.loads(self.take(kind="string")[1]) if self.peek()[0] == "string" else None
            self.take("{")
            child = self.body("}")
            self.take("}")
            child.name, child.label = ".".join(name), label
            block.blocks.append(child)
        if closing is None and self.peek()[0] != "end":
            raise AlloySyntaxError(f"line {self.peek()[2]}: unexpected {self.peek()[1]!r}")
        return block

    def expression(self) -> Any:
        left = self.unary()
        # Left to right whatever the operator: precedence does not matter for a structural check.
        while self.peek()[0] == "op" and self.peek()[1] in BINARY:
            operator = self.take()[1]
            left = Operation(operator, left, self.unary())
        return left

    def unary(self) -> Any:
        if self.peek()[1] in ("!", "-"):
            operator = self.take()[1]
            return Operation(operator, None, self.unary())
        return self.postfix(self.primary())

    def primary(self) -> Any:
        kind, value, line = self.peek()
        if kind == "string":
            self.take()
            return json.loads(value)
        if kind == "number":
            self.take()
            return float(value) if "." in value else int(value)
        if kind == "name":
            self.take()
            if value in ("true", "false"):
                return value == "true"
            if value == "null":
                return None
            return Reference([value])
        if value == "[":
            self.take("[")
            items = []
            while self.peek()[1] != "]":
                items.append(self.expression())
                if self.peek()[1] != "]":
                    self.take(",")
            self.take("]")
            return items
        if value == "{":
            self.take("{")
            members: dict[str, Any] = {}
            while self.peek()[1] != "}":
                key_kind, key, _ = self.take()
                if key_kind not in ("name", "string"):
                    raise AlloySyntaxError(f"line {line}: object key expected, found {key!r}")
                self.take("=")
                members[json.loads(key) if key_kind == "string" else key] = self.expression()
                if self.peek()[1] != "}":
                    self.take(",")
            self.take("}")
            return members
        if value == "(":
            self.take("(")
            inner = self.expression()
            self.take(")")
            return inner
        raise AlloySyntaxError(f"line {line}: expression expected, found {value!r}")

    def postfix(self, value: Any) -> Any:
        while True:
            if self.peek()[1] == "." and isinstance(value, Reference):
                self.take(".")
                value = Reference([*value.path, self.take(kind="name")[1]])
            elif self.peek()[1] == "(" and isinstance(value, Reference):
                self.take("(")
                arguments = []
                while self.peek()[1] != ")":
                    arguments.append(self.expression())
                    if self.peek()[1] != ")":
                        self.take(",")
                self.take(")")
                value = Call(value.path, arguments)
            elif self.peek()[1] == "[":
                self.take("[")
                value = Operation("[]", value, self.expression())
                self.take("]")
            else:
                return value


def parse(text: str) -> list[Block]:
    """The top-level blocks of an Alloy configuration (AlloySyntaxError naming the line if it does not parse)."""
    return Parser(text).body(None).blocks


def references(value: Any) -> list[list[str]]:
    """Every reference (a.b.c) inside an expression, function names excluded."""
    if isinstance(value, Reference):
        return [value.path]
    if isinstance(value, Call):
        return [path for argument in value.arguments for path in references(argument)]
    if isinstance(value, Operation):
        return references(value.left) + references(value.right)
    if isinstance(value, list):
        return [path for item in value for path in references(item)]
    if isinstance(value, dict):
        return [path for item in value.values() for path in references(item)]
    return []
