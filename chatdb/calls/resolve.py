"""What an expression of the backend's code holds, as far as reading the code can tell.

The scan needs a few values exactly: table names, the keys of payloads, select strings,
filter and order columns. :class:`Resolver` follows them through the code without
running it: literals, f-strings, names bound earlier in the function (then changed in
place: ``d["k"] = v``, ``d.update({...})``, ``d.pop("k")``), module constants, class
attributes, ``dict(x)``, ``", ".join(columns)`` over a list or a comprehension of one.

What it cannot know is a value of its own: :class:`Param` (a parameter of a function,
known only at each call site: the scan then resolves the call at every call site, with
the site's arguments bound, :class:`Env`) or :class:`Unknown` (with the reason, for the
scan's ``unresolved`` line).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Union

from chatdb.calls.source import Function, Position, start

FAR = (10**9, 0)  # after every line of a file
MAX_DEPTH = 60


@dataclass(frozen=True, eq=False)
class Param:
    """A parameter of a function, bound at each call site."""

    function: Function
    name: str

    def __str__(self) -> str:
        return f"parameter {self.name!r} of {self.function.title}"


@dataclass(frozen=True)
class Unknown:
    """A value the scan cannot read, and why (a sentence fragment)."""

    reason: str

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True)
class Text:
    """A string with parts the scan cannot know (an f-string): str and other values."""

    parts: tuple[Any, ...]

    def literal_prefix(self) -> str:
        prefix = ""
        for part in self.parts:
            if not isinstance(part, str):
                break
            prefix += part
        return prefix


@dataclass(frozen=True)
class Mapping:
    """A dict: its items (keys may be Param or Unknown), and the ``**spreads`` the scan
    could not read."""

    items: tuple[tuple[Any, Any], ...] = ()
    spreads: tuple[Any, ...] = ()

    def get(self, key: str, default: Any = None) -> Any:
        for k, v in reversed(self.items):
            if isinstance(k, str) and k.lower() == key.lower():
                return v
        return default

    def names(self) -> list[Any]:
        return list(dict.fromkeys(k for k, _ in self.items if isinstance(k, str))) + [
            k for k, _ in self.items if not isinstance(k, str)
        ]

    def with_item(self, key: Any, value: Any) -> Mapping:
        kept = tuple(item for item in self.items if item[0] != key or not isinstance(key, str))
        return Mapping((*kept, (key, value)), self.spreads)

    def without(self, key: Any) -> Mapping:
        return Mapping(tuple(item for item in self.items if item[0] != key), self.spreads)

    def merged(self, other: Any) -> Mapping:
        if isinstance(other, Mapping):
            out = self
            for key, value in other.items:
                out = out.with_item(key, value)
            return Mapping(out.items, out.spreads + other.spreads)
        return Mapping(self.items, (*self.spreads, other))


Value = Union[str, int, float, bool, None, list, Text, Mapping, Param, Unknown]  # noqa: UP007


@dataclass(frozen=True, eq=False)
class Env:
    """A function as it runs: with the arguments of one call site (an expression and the
    caller's Env each), or ``arguments`` None when the scan looks at it on its own."""

    function: Function
    arguments: dict[str, tuple[ast.expr, Env]] | None = None


def unresolvable(value: Any) -> Param | Unknown | None:
    """The first Param or Unknown inside ``value`` (a part of a Text, a key or value
    of a Mapping, a list item, a spread), else None."""
    for found in _walk(value):
        if isinstance(found, (Param, Unknown)):
            return found
    return None


def _walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, Text):
        for part in value.parts:
            yield from _walk(part)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)
    elif isinstance(value, Mapping):
        for spread in value.spreads:
            yield from _walk(spread)
        for key, item in value.items:
            yield from _walk(key)
            yield from _walk(item)


def text_of(value: Any) -> str | Text | Param | Unknown:
    """``value`` as a string (or a Text with the parts it cannot know)."""
    if isinstance(value, (str, Text, Param, Unknown)):
        return value
    if isinstance(value, (bool, int, float)) or value is None:
        return str(value)
    return Unknown("a value that is not a string")


def source_of(node: ast.AST) -> str:
    """The code of ``node`` on one line, cut at 60 characters."""
    text = " ".join(ast.unparse(node).split())
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass
class Resolver:
    """Resolves expressions of the indexed code (see the module docstring)."""

    depth: int = 0
    _class_attributes: dict[int, dict[str, tuple[ast.expr, Function]]] = field(default_factory=dict)

    def value(self, node: ast.AST | None, env: Env) -> Value:
        if node is None:
            return None
        if self.depth > MAX_DEPTH:
            return Unknown(f"{source_of(node)} (too deep to follow)")
        self.depth += 1
        try:
            return self._value(node, env)
        finally:
            self.depth -= 1

    # ------------------------------------------------------------------ expressions

    def _value(self, node: ast.AST, env: Env) -> Value:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.JoinedStr):
            return self._joined(node, env)
        if isinstance(node, ast.FormattedValue):
            return text_of(self.value(node.value, env))
        if isinstance(node, ast.Name):
            return self.name(node.id, start(node), env)
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            items: list = []
            for element in node.elts:
                if isinstance(element, ast.Starred):
                    inner = self.value(element.value, env)
                    if isinstance(inner, list):
                        items.extend(inner)
                    else:
                        items.append(inner)
                else:
                    items.append(self.value(element, env))
            return items
        if isinstance(node, ast.Dict):
            out = Mapping()
            for key, item in zip(node.keys, node.values, strict=True):
                if key is None:
                    out = out.merged(self.value(item, env))
                else:
                    out = out.with_item(self.value(key, env), self.value(item, env))
            return out
        if isinstance(node, (ast.ListComp, ast.GeneratorExp, ast.SetComp)):
            return self._comprehension(node, env)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return add(self.value(node.left, env), self.value(node.right, env))
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            left, right = self.value(node.left, env), self.value(node.right, env)
            if isinstance(left, Mapping):
                return left.merged(right)
        if isinstance(node, ast.Call):
            return self._call(node, env)
        if isinstance(node, ast.Attribute):
            return self._attribute(node, env)
        if isinstance(node, ast.Subscript):
            return self._subscript(node, env)
        if isinstance(node, ast.Await):
            return Unknown(f"{source_of(node)} (a value awaited at run time)")
        if isinstance(node, ast.IfExp):
            body, other = self.value(node.body, env), self.value(node.orelse, env)
            if body == other and not unresolvable(body):
                return body
            return Unknown(f"{source_of(node)} (one of two values, chosen at run time)")
        return Unknown(f"{source_of(node)} (computed at run time)")

    def _joined(self, node: ast.JoinedStr, env: Env) -> Value:
        parts: list = []
        for part in node.values:
            value = self.value(part, env)
            if isinstance(value, Text):
                parts.extend(value.parts)
            else:
                parts.append(value)
        return _text(parts)

    def _comprehension(self, node, env: Env) -> Value:
        """``[c for c in columns if ...]``: the items of ``columns`` (the condition is
        not followed: the code's first try holds them all)."""
        (generator, *more) = node.generators
        if (
            not more
            and isinstance(node.elt, ast.Name)
            and isinstance(generator.target, ast.Name)
            and node.elt.id == generator.target.id
        ):
            items = self.value(generator.iter, env)
            if isinstance(items, list):
                return list(items)
            if isinstance(items, Mapping):
                return items.names()
            return items if isinstance(items, (Param, Unknown)) else Unknown(source_of(node))
        return Unknown(f"{source_of(node)} (a comprehension the scan does not follow)")

    def _call(self, node: ast.Call, env: Env) -> Value:
        func = node.func
        args = node.args
        if isinstance(func, ast.Name):
            if func.id in ("str",) and len(args) == 1:
                return text_of(self.value(args[0], env))
            if func.id in ("dict", "copy", "deepcopy") and len(args) <= 1:
                out = self.value(args[0], env) if args else Mapping()
                for keyword in node.keywords:
                    item = self.value(keyword.value, env)
                    if not isinstance(out, Mapping):
                        break
                    out = (
                        out.merged(item)
                        if keyword.arg is None
                        else out.with_item(keyword.arg, item)
                    )
                return out
            if func.id in ("list", "tuple", "sorted", "set") and len(args) == 1:
                inner = self.value(args[0], env)
                return list(inner) if isinstance(inner, list) else inner
            if func.id == "int" and len(args) == 1:
                inner = self.value(args[0], env)
                try:
                    return int(inner)  # type: ignore[arg-type]
                except (TypeError, ValueError):
                    return Unknown(source_of(node))
            return Unknown(f"{source_of(node)} (the value a call returns)")
        if isinstance(func, ast.Attribute):
            receiver_node = func.value
            if func.attr in ("copy", "deepcopy") and not args:
                return self.value(receiver_node, env)
            if func.attr == "dumps" and isinstance(receiver_node, ast.Name) and args:
                return self.value(args[0], env)  # json.dumps(payload): the payload
            if func.attr == "deepcopy" and args:
                return self.value(args[0], env)
            receiver = self.value(receiver_node, env)
            if func.attr == "join" and len(args) == 1 and isinstance(receiver, str):
                items = self.value(args[0], env)
                if isinstance(items, list) and all(isinstance(i, str) for i in items):
                    return receiver.join(items)
                if isinstance(items, (Param, Unknown)):
                    return items
                return Unknown(f"{source_of(node)} (a join of values computed at run time)")
            if isinstance(receiver, str):
                if func.attr in ("strip", "lower", "upper", "lstrip", "rstrip") and not args:
                    return getattr(receiver, func.attr)()
                if func.attr == "split" and len(args) <= 1:
                    sep = self.value(args[0], env) if args else None
                    if sep is None or isinstance(sep, str):
                        return receiver.split(sep)
            return Unknown(f"{source_of(node)} (the value a call returns)")
        return Unknown(f"{source_of(node)} (the value a call returns)")

    def _attribute(self, node: ast.Attribute, env: Env) -> Value:
        """``self.X`` / ``cls.X`` / ``ClassName.X``: a class attribute, or the one
        assignment ``self.X = ...`` of the class's methods."""
        owner = node.value
        function = env.function
        while function is not None and function.class_node is None:
            function = function.parent
        if (
            function is not None
            and isinstance(owner, ast.Name)
            and owner.id in ("self", "cls", function.class_node.name)
        ):
            found = self._class_attribute(function, node.attr)
            if found is not None:
                expression, where = found
                value = self.value(expression, Env(where))
                bad = unresolvable(value)
                if isinstance(bad, Param):
                    return Unknown(f"{source_of(node)} (set from {bad})")
                return value
        return Unknown(f"{source_of(node)} (an attribute the scan does not follow)")

    def _class_attribute(self, method: Function, name: str) -> tuple[ast.expr, Function] | None:
        cls = method.class_node
        table = self._class_attributes.get(id(cls))
        if table is None:
            table = {}
            seen: dict[str, int] = {}
            top = method.module.top
            for statement in cls.body:
                if isinstance(statement, ast.Assign):
                    for target in statement.targets:
                        if isinstance(target, ast.Name):
                            table[target.id] = (statement.value, top)
                elif (
                    isinstance(statement, ast.AnnAssign)
                    and statement.value is not None
                    and isinstance(statement.target, ast.Name)
                ):
                    table[statement.target.id] = (statement.value, top)
            for function in method.module.functions:
                if function.class_node is not cls:
                    continue
                for node in function.body:
                    if isinstance(node, ast.Assign):
                        for target in node.targets:
                            if (
                                isinstance(target, ast.Attribute)
                                and isinstance(target.value, ast.Name)
                                and target.value.id == "self"
                                and target.attr not in table
                            ):
                                seen[target.attr] = seen.get(target.attr, 0) + 1
                                table.setdefault(f"self.{target.attr}", (node.value, function))
            for attr, count in seen.items():
                if count == 1 and attr not in table:
                    table[attr] = table[f"self.{attr}"]
            self._class_attributes[id(cls)] = table
        return table.get(name)

    def _subscript(self, node: ast.Subscript, env: Env) -> Value:
        container = self.value(node.value, env)
        key = self.value(node.slice, env)
        if isinstance(container, Mapping) and isinstance(key, str):
            found = container.get(key, _MISSING)
            if found is not _MISSING:
                return found
        if (
            isinstance(container, list)
            and isinstance(key, int)
            and -len(container) <= key < len(container)
        ):
            return container[key]
        return Unknown(f"{source_of(node)} (an item computed at run time)")

    # ------------------------------------------------------------------ names

    def name(self, name: str, position: Position, env: Env) -> Value:
        function = env.function
        binding = function.binding_before(name, position)
        if binding is not None:
            return self._bound(name, binding, position, env)
        if name in function.params:
            if env.arguments is None:
                return Param(function, name)
            if name in env.arguments:
                expression, caller = env.arguments[name]
                return self.value(expression, caller)
            if name in function.defaults:
                return self.value(function.defaults[name], _defining(function))
            return Unknown(f"{name} (a parameter the call site does not pass)")
        parent = function.parent
        while parent is not None:
            where = FAR if parent.name == "<module>" else start(function.node)
            binding = parent.binding_before(name, where)
            if binding is not None:
                return self._bound(name, binding, where, Env(parent))
            if name in parent.params:
                return Unknown(f"{name} (a parameter of the enclosing {parent.title})")
            function, parent = parent, parent.parent
        return Unknown(f"{name} (not bound in the scanned code)")

    def _bound(self, name: str, binding, position: Position, env: Env) -> Value:
        function = env.function
        if binding.value is None:
            return Unknown(
                f"{name}, bound by {binding.how or 'a statement'} (line {binding.position[0]})"
            )
        value = self.value(binding.value, env)
        if binding.augmented is not None:
            before = self.name(name, (binding.position[0], binding.position[1] - 1), env)
            if isinstance(binding.augmented, ast.Add):
                value = add(before, value)
            else:
                value = Unknown(f"{name} (changed by an operator the scan does not follow)")
        for change in function.changes_between(name, binding.position, position):
            value = self._changed(value, change, env)
        return value

    def _changed(self, value: Value, change, env: Env) -> Value:
        node = change.node
        if change.kind in ("set", "delete") and isinstance(value, Mapping):
            key = self.value(node.slice, env)
            if change.kind == "delete":
                return value.without(key)
            parent = env.function.parent_of(node)
            item = self.value(parent.value, env) if isinstance(parent, ast.Assign) else None
            return value.with_item(key, item)
        if not isinstance(node, ast.Call):
            return value
        args = [self.value(a, env) for a in node.args]
        if isinstance(value, Mapping):
            if change.kind == "update":
                for item in args:
                    value = value.merged(item)
                for keyword in node.keywords:
                    item = self.value(keyword.value, env)
                    value = (
                        value.merged(item)
                        if keyword.arg is None
                        else value.with_item(keyword.arg, item)
                    )
            elif change.kind == "pop" and args:
                value = value.without(args[0])
            elif change.kind == "setdefault" and args and value.get(args[0], _MISSING) is _MISSING:
                value = value.with_item(args[0], args[1] if len(args) > 1 else None)
        elif isinstance(value, list):
            if change.kind == "append" and args:
                value = [*value, args[0]]
            elif change.kind == "extend" and args:
                value = [*value, *args[0]] if isinstance(args[0], list) else [*value, args[0]]
            elif change.kind == "remove" and args:
                value = [item for item in value if item != args[0]]
        return value


_MISSING = object()


def _defining(function: Function) -> Env:
    """Where a function's defaults are evaluated: the scope that defines it."""
    return Env(function.parent) if function.parent is not None else Env(function)


def _text(parts: list) -> Value:
    merged: list = []
    for part in parts:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] += part
        elif part != "":
            merged.append(part)
    if all(isinstance(part, str) for part in merged):
        return "".join(merged)
    return Text(tuple(merged))


def add(left: Value, right: Value) -> Value:
    """``left + right`` for strings (Text when a part is unknown) and lists."""
    if isinstance(left, list) and isinstance(right, list):
        return [*left, *right]
    if isinstance(left, (str, Text)) and isinstance(right, (str, Text, Param, Unknown)):
        return _text([*_parts(left), *_parts(right)])
    if isinstance(right, (str, Text)) and isinstance(left, (Param, Unknown)):
        return _text([left, *_parts(right)])
    bad = unresolvable([left, right])
    return bad if bad is not None else Unknown("a sum the scan does not follow")


def _parts(value: Value) -> list:
    return list(value.parts) if isinstance(value, Text) else [value]


def call_arguments(
    function: Function, call: ast.Call, caller: Env, *, through_attribute: bool
) -> dict[str, tuple[ast.expr, Env]] | None:
    """The arguments a call site passes to ``function``, by parameter name; None when
    they cannot be matched (``*args``, ``**kwargs``, too many)."""
    params = list(function.params)
    if function.is_method and through_attribute:
        params = params[1:]
    bound: dict[str, tuple[ast.expr, Env]] = {}
    for index, argument in enumerate(call.args):
        if isinstance(argument, ast.Starred) or index >= len(params):
            return None
        bound[params[index]] = (argument, caller)
    for keyword in call.keywords:
        if keyword.arg is None:
            return None
        if keyword.arg in function.params:
            bound[keyword.arg] = (keyword.value, caller)
    return bound
