"""``chatdb calls scan DIR... [--write FILE]``: the backend's PostgREST calls on the chat
tables, read from its Python source with ``ast`` (nothing is imported or run).

What counts as a call (docs/when-the-backend-changes.md says it with examples):

- a supabase-py chain, ``<client>.table("t")`` or ``.from_("t")`` followed by its
  methods (``select``, ``insert``, ``update``, ``upsert``, ``delete``, the filters, ``order``,
  ``limit``), written in one expression or continued through a variable
  (``query = query.eq(...)``); passed to a helper that executes it (``_db(chain)``:
  ``via=_db``);
- a request to PostgREST over HTTP (httpx, requests, ...): ``.get/.post/.patch/.put/
  .delete`` to a URL ending ``/rest/v1/<table>``, its ``params`` (``select``, ``order``,
  ``limit``, ``col: "op.value"`` filters), its ``json`` payload and ``Prefer`` header;
- either of them inside a function that takes the table, the payload, a filter column
  or the params as arguments (a wrapper): resolved at each call site, where the line is
  the call site's and ``via=`` names the wrapper.

A call inside a loop that drops the column an error names (the name read by a function
that looks for "does not exist") and tries again gets ``retry=42703``.

A call whose table name, payload or columns the scan cannot read is an ``unresolved``
line with the reason; calls on other tables are not listed.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qsl

from chatdb.calls.model import OPERATIONS, WRITING, Call, CallsFile, Filter, Order, Unresolved
from chatdb.calls.resolve import (
    Env,
    Mapping,
    Param,
    Resolver,
    Text,
    call_arguments,
    source_of,
    unresolvable,
)
from chatdb.calls.source import Function, Module, python_files, relative_base, start
from chatdb.failures import BadInput
from chatdb.inspect.access import TABLES

MAX_WRAPPERS = 4  # wrappers of wrappers followed, at most
REST = "/rest/v1/"
HTTP_METHODS = {
    "get": "GET",
    "head": "GET",
    "post": "POST",
    "patch": "PATCH",
    "put": "PUT",
    "delete": "DELETE",
}
FILTER_METHODS = {
    "eq": "eq",
    "neq": "neq",
    "gt": "gt",
    "gte": "gte",
    "lt": "lt",
    "lte": "lte",
    "like": "like",
    "ilike": "ilike",
    "like_all_of": "like(all)",
    "like_any_of": "like(any)",
    "ilike_all_of": "ilike(all)",
    "ilike_any_of": "ilike(any)",
    "is_": "is",
    "in_": "in",
    "contains": "cs",
    "contained_by": "cd",
    "overlaps": "ov",
    "range_gt": "sr",
    "range_gte": "nxl",
    "range_lt": "sl",
    "range_lte": "nxr",
    "range_adjacent": "adj",
    "text_search": "fts",
}
STORAGE_METHODS = {"list", "upload", "download", "remove", "get_public_url", "create_signed_url"}
MISSING_COLUMN_WORDS = {"does not exist": "42703", "schema cache": "PGRST204"}
UNSCANNED_HINT = (
    "name a folder to scan it too when its code runs against the production database "
    "(tests with fake clients and one-off scripts do not)"
)


# --------------------------------------------------------------------------- sites


@dataclass(eq=False)
class Site:
    """A place in a function where a call on a table is made: a supabase-py chain (its
    ``.table(`` call and the methods after it) or an HTTP request."""

    function: Function
    node: ast.Call  # the .table(...) call, or the HTTP request
    line: int
    steps: list[tuple[str, ast.Call, bool]] = field(default_factory=list)  # method, call, not_
    helper: str = ""  # the function the chain is handed to (``_db``), or the HTTP client
    http_method: str = ""
    retry: tuple[str, ...] = ()

    @property
    def is_http(self) -> bool:
        return bool(self.http_method)


class NeedsCallers(Exception):
    """A value the call needs is a parameter of the outermost function."""

    def __init__(self, param: Param, what: str) -> None:
        super().__init__(what)
        self.param = param
        self.what = what


class CannotResolve(Exception):
    """A value the call needs cannot be read; the message is the unresolved line's reason."""


def chain_sites(function: Function, index: Index) -> Iterator[Site]:
    """Every ``.table(x)`` / ``.from_(x)`` chain of ``function`` (storage buckets left out)."""
    for node in function.body:
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("table", "from_")
            and (len(node.args) == 1 or any(k.arg == "table_name" for k in node.keywords))
        ):
            continue
        receiver = node.func.value
        if isinstance(receiver, ast.Attribute) and receiver.attr == "storage":
            continue  # supabase.storage.from_(bucket): a storage bucket, not a table
        steps, top = _steps_above(function, node)
        if steps and all(name in STORAGE_METHODS for name, _, _ in steps):
            continue
        site = Site(function, node, node.func.end_lineno or node.lineno, steps)
        site.helper = _handed_to(function, top, steps, index)
        _follow_variable(function, site, top, index)
        site.retry = retry_codes(function, node, index)
        yield site


def _steps_above(function: Function, node: ast.AST) -> tuple[list, ast.AST]:
    """The method calls chained on ``node`` (``.select(...).eq(...)``), and the top of
    the chain."""
    steps: list[tuple[str, ast.Call, bool]] = []
    current = node
    while True:
        parent = function.parent_of(current)
        negated = False
        if isinstance(parent, ast.Attribute) and parent.attr == "not_":
            above = function.parent_of(parent)
            if isinstance(above, ast.Attribute) and above.value is parent:
                parent, negated = above, True
        if not (isinstance(parent, ast.Attribute) and parent.value in (current,) or negated):
            break
        call = function.parent_of(parent)
        if not (isinstance(call, ast.Call) and call.func is parent):
            break
        steps.append((parent.attr, call, negated))
        current = call
    while isinstance(function.parent_of(current), ast.Await):
        current = function.parent_of(current)
    return steps, current


def _handed_to(function: Function, top: ast.AST, steps: list, index: Index) -> str:
    """``_db(chain)``: the name of the scanned function that a chain without
    ``.execute()`` is passed to (and that executes it)."""
    parent = function.parent_of(top)
    if any(name == "execute" for name, _, _ in steps):
        return ""
    if isinstance(parent, ast.Call) and top in parent.args:
        func = parent.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        if index.functions_named(name):
            return name
    return ""


def _follow_variable(function: Function, site: Site, top: ast.AST, index: Index) -> None:
    """A chain assigned to a variable and continued later (``query = query.eq(...)``,
    ``query.execute()``, ``await _db(query)``): the methods of every continuation whose
    variable still holds this chain."""
    parent = function.parent_of(top)
    if any(name == "execute" for name, _, _ in site.steps):
        return  # the variable holds the result, not the query
    if not isinstance(parent, (ast.Assign, ast.AnnAssign)):
        return
    targets = parent.targets if isinstance(parent, ast.Assign) else [parent.target]
    if len(targets) != 1 or not isinstance(targets[0], ast.Name):
        return
    name = targets[0].id
    ours = {id(parent.value)}
    for node in function.body:
        if not (isinstance(node, ast.Name) and node.id == name and isinstance(node.ctx, ast.Load)):
            continue
        binding = function.binding_before(name, start(node))
        if binding is None or id(binding.value) not in ours:
            continue
        steps, continuation = _steps_above(function, node)
        site.steps.extend(steps)
        if not site.helper:
            site.helper = _handed_to(function, continuation, steps, index)
        holder = function.parent_of(continuation)
        targets = holder.targets if isinstance(holder, ast.Assign) else []
        if isinstance(holder, ast.AnnAssign):
            targets = [holder.target]
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            ours.add(id(holder.value))


def http_sites(function: Function, index: Index, resolver: Resolver) -> Iterator[Site]:
    for node in function.body:
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        attr = node.func.attr
        if attr == "request":
            if not node.args or not isinstance(node.args[0], ast.Constant):
                continue
            method = str(node.args[0].value).upper()
            url = node.args[1] if len(node.args) > 1 else _keyword(node, "url")
        elif attr in HTTP_METHODS:
            method = HTTP_METHODS[attr]
            url = node.args[0] if node.args else _keyword(node, "url")
        else:
            continue
        if url is None or not _mentions_rest(resolver.value(url, Env(function))):
            continue
        site = Site(function, node, node.func.end_lineno or node.lineno, http_method=method)
        site.helper = _client_of(function, node)
        site.retry = retry_codes(function, node, index)
        yield site


def _keyword(node: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in node.keywords if k.arg == name), None)


def _mentions_rest(url: Any) -> bool:
    if isinstance(url, str):
        return REST in url
    if isinstance(url, Text):
        return any(isinstance(p, str) and REST in p for p in url.parts)
    return False


def _client_of(function: Function, node: ast.Call) -> str:
    receiver = node.func.value
    while isinstance(receiver, ast.Attribute):
        receiver = receiver.value
    imports = function.module.imports
    if isinstance(receiver, ast.Name) and receiver.id in ("requests", "httpx", "aiohttp"):
        return receiver.id
    for client in ("httpx", "requests", "aiohttp"):
        if client in imports:
            return client
    return "http"


def retry_codes(function: Function, node: ast.AST, index: Index) -> tuple[str, ...]:
    """The error codes on which a loop around ``node`` drops the column an error names
    and tries again: a name bound from a function that looks for "does not exist"
    (42703) or "schema cache" (PGRST204), then popped from a payload, deleted, removed,
    or filtered out of a list of columns, in the same loop."""
    codes: list[str] = []
    loop = function.parent_of(node)
    while loop is not None and loop is not function.node:
        if isinstance(loop, (ast.For, ast.AsyncFor, ast.While)):
            found = _names_of_missing_columns(loop, index)
            for name, code in found.items():
                if _drops(loop, name) and code not in codes:
                    codes.append(code)
        loop = function.parent_of(loop)
    return tuple(codes)


def _names_of_missing_columns(loop: ast.AST, index: Index) -> dict[str, str]:
    found: dict[str, str] = {}
    for node in ast.walk(loop):
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)):
            continue
        func = node.value.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        for function in index.functions_named(name):
            strings = " ".join(function.constant_strings())
            for words, code in MISSING_COLUMN_WORDS.items():
                if words in strings:
                    for target in node.targets:
                        if isinstance(target, ast.Name):
                            found.setdefault(target.id, code)
    return found


def _drops(loop: ast.AST, name: str) -> bool:
    def is_name(node: ast.AST) -> bool:
        return isinstance(node, ast.Name) and node.id == name

    for node in ast.walk(loop):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("pop", "remove", "discard")
            and node.args
            and is_name(node.args[0])
        ):
            return True
        if isinstance(node, ast.Delete) and any(
            isinstance(t, ast.Subscript) and is_name(t.slice) for t in node.targets
        ):
            return True
        if isinstance(node, (ast.ListComp, ast.GeneratorExp)) and any(
            is_name(part)
            for generator in node.generators
            for cond in generator.ifs
            for part in ast.walk(cond)
        ):
            return True
    return False


# --------------------------------------------------------------------------- the index


@dataclass
class Index:
    """Every function of the scanned files, by name, and every call by callee name."""

    modules: list[Module]
    by_name: dict[str, list[Function]] = field(default_factory=dict)
    calls_by_name: dict[str, list[tuple[Function, ast.Call]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for module in self.modules:
            for function in module.functions:
                if function.name != "<module>":
                    self.by_name.setdefault(function.name, []).append(function)
                for node in function.body:
                    if isinstance(node, ast.Call):
                        func = node.func
                        name = (
                            func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                        )
                        if name:
                            self.calls_by_name.setdefault(name, []).append((function, node))

    def functions(self) -> Iterator[Function]:
        for module in self.modules:
            yield from module.functions

    def functions_named(self, name: str | None) -> list[Function]:
        return self.by_name.get(name or "", [])

    def call_sites(self, function: Function) -> list[tuple[Function, ast.Call, bool]]:
        """Where ``function`` is called: bare ``name(...)`` in its own module (or
        anywhere when no other function has its name), ``x.name(...)`` likewise."""
        unique = len(self.functions_named(function.name)) == 1
        found = []
        for caller, call in self.calls_by_name.get(function.name, []):
            if caller is function:
                continue
            through_attribute = isinstance(call.func, ast.Attribute)
            same_module = caller.module is function.module
            if through_attribute and not (
                function.is_method or function.parent is function.module.top
            ):
                continue
            if not through_attribute and function.is_method:
                continue
            if same_module or unique:
                found.append((caller, call, through_attribute))
        return found


# --------------------------------------------------------------------------- resolving a site


@dataclass(frozen=True)
class Frame:
    """A function on the way from a site to where its values are known: the call site
    in its caller (None for the outermost)."""

    function: Function
    call: ast.Call | None = None
    through_attribute: bool = False


def environment(frames: Sequence[Frame]) -> Env:
    """The Env of the innermost frame, its arguments bound through every caller."""
    env = Env(frames[-1].function)
    for frame in reversed(frames[:-1]):
        arguments = call_arguments(
            frame.function, frame.call, env, through_attribute=frame.through_attribute
        )
        if arguments is None:
            raise CannotResolve(
                f"{frame.function.title} is called with *args or **kwargs the scan cannot match"
            )
        env = Env(frame.function, arguments)
    return env


class Builder:
    """Builds the Call of a site under an Env, or says what it lacks."""

    def __init__(self, resolver: Resolver, site: Site, env: Env, outermost: Function) -> None:
        self.resolver = resolver
        self.site = site
        self.env = env
        self.outermost = outermost

    def need(self, node: ast.AST | None, what: str, env: Env | None = None) -> Any:
        value = self.resolver.value(node, env or self.env)
        return self.needed(value, what, node)

    def needed(self, value: Any, what: str, node: ast.AST | None = None) -> Any:
        bad = unresolvable(value)
        if isinstance(bad, Param):
            if bad.function is self.outermost:
                raise NeedsCallers(bad, what)
            raise CannotResolve(f"{what} comes from {bad}, which the call site does not pass")
        if bad is not None:
            shown = source_of(node) if node is not None else ""
            where = f" ({shown})" if shown and not str(bad).startswith(shown) else ""
            raise CannotResolve(f"{what}{where} cannot be read: {bad}")
        return value

    def soft(self, node: ast.AST | None) -> Any:
        """A value that does not change what is checked (an order's direction, a limit):
        a parameter's default when the call site does not say, else None."""
        if node is None:
            return None
        value = self.resolver.value(node, self.env)
        if isinstance(value, Param):
            default = value.function.defaults.get(value.name)
            value = self.resolver.value(default, Env(value.function)) if default else None
        return None if unresolvable(value) else value

    # ------------------------------------------------------------------ chains

    def chain(self) -> Call | None:
        site = self.site
        node = site.node
        table_node = node.args[0] if node.args else _keyword(node, "table_name")
        table = self.need(table_node, "the table name")
        if not isinstance(table, str):
            raise CannotResolve(f"the table name is {source_of(table_node)}, not a string")
        if table not in TABLES:
            return None
        operation = ""
        writes: list[str] = []
        selects: list[str] = []
        filters: list[Filter] = []
        orders: list[Order] = []
        limit = None
        for name, call, negated in site.steps:
            if name in WRITING:
                operation = name
                payload = call.args[0] if call.args else _keyword(call, "json")
                writes = self.payload_keys(payload, f"the payload of the {name} on {table}")
            elif name == "delete":
                operation = "delete"
            elif name == "select":
                operation = operation or "select"
                selects = self.select_columns(call)
            elif name in FILTER_METHODS:
                column = self.column(call.args[0] if call.args else _keyword(call, "column"))
                operator = FILTER_METHODS[name]
                filters.append(Filter(column, f"not.{operator}" if negated else operator))
            elif name == "filter" and len(call.args) >= 2:
                column = self.column(call.args[0])
                operator = self.need(call.args[1], "the operator of a filter")
                filters.append(Filter(column, f"not.{operator}" if negated else str(operator)))
            elif name == "match" and call.args:
                query = self.resolver.value(call.args[0], self.env)
                if not isinstance(query, Mapping):
                    self.needed(query, "the columns of a match", call.args[0])
                    raise CannotResolve("the columns of a match are not a dict")
                self.mapping_shape(query, "the columns of a match", call.args[0])
                filters += [Filter(self.key(k), "eq") for k in query.names()]
            elif name == "or_" and call.args:
                filters += or_filters(self.need(call.args[0], "the filters of an or_"))
            elif name == "order" and (call.args or _keyword(call, "column")):
                column = self.column(call.args[0] if call.args else _keyword(call, "column"))
                orders.append(Order(column, bool(self.soft(_keyword(call, "desc")))))
            elif name == "limit" and call.args:
                found = self.soft(call.args[0])
                limit = found if isinstance(found, int) and not isinstance(found, bool) else limit
        if not operation:
            raise CannotResolve(
                f"no select, insert, update, upsert or delete follows .{node.func.attr}()"
            )
        if operation == "select" and not selects:
            selects = ["*"]
        return self.make(table, operation, writes, selects, filters, orders, limit)

    def make(self, table, operation, writes, selects, filters, orders, limit) -> Call:
        return Call(
            path=self.site.function.module.path,
            line=self.site.line,
            table=table,
            operation=operation,
            writes=tuple(dict.fromkeys(writes)),
            selects=tuple(dict.fromkeys(selects)),
            filters=tuple(dict.fromkeys(filters)),
            orders=tuple(dict.fromkeys(orders)),
            limit=limit,
            via=self.site.helper,
            retry=self.site.retry,
        )

    def column(self, node: ast.AST | None) -> str:
        value = self.need(node, "a filtered or ordered column")
        return self.key(value, node)

    def key(self, value: Any, node: ast.AST | None = None) -> str:
        if not isinstance(value, str) or not value:
            raise CannotResolve(f"a column is {source_of(node) if node else value!r}, not a name")
        return value

    def payload_keys(self, node: ast.AST | None, what: str) -> list[str]:
        """The keys of a payload (a dict, or a list of dicts): its values do not matter."""
        payload = self.resolver.value(node, self.env)
        rows = payload if isinstance(payload, list) else [payload]
        keys: list[str] = []
        for row in rows:
            self.needed(row if not isinstance(row, Mapping) else None, what, node)
            if not isinstance(row, Mapping):
                raise CannotResolve(f"{what} is {source_of(node) if node else row}, not a dict")
            self.mapping_shape(row, what, node)
            keys += [self.key(k, node) for k in row.names()]
        return keys

    def mapping_shape(self, mapping: Mapping, what: str, node: ast.AST | None) -> None:
        """Every key of ``mapping`` and every ``**spread`` known (values may not be)."""
        keys = [*mapping.spreads, *(k for k, _ in mapping.items)]
        self.needed(keys, f"the keys of {what}", node)

    def select_columns(self, call: ast.Call) -> list[str]:
        if not call.args:
            return ["*"]
        parts = [self.need(arg, "the columns selected") for arg in call.args]
        if not all(isinstance(p, str) for p in parts):
            raise CannotResolve(f"the columns selected are {source_of(call)}, not a string")
        return select_list(",".join(parts))

    # ------------------------------------------------------------------ HTTP

    def http(self) -> Call | None:
        site = self.site
        node = site.node
        url_node = node.args[0] if node.args and node.func.attr != "request" else None
        if node.func.attr == "request":
            url_node = node.args[1] if len(node.args) > 1 else None
        url_node = url_node or _keyword(node, "url")
        url = self.resolver.value(url_node, self.env)
        table, query = self.table_of_url(url, url_node)
        if table not in TABLES:
            return None
        params_node = _keyword(node, "params")
        params = self.resolver.value(params_node, self.env) if params_node else Mapping()
        if isinstance(params, list) and all(isinstance(p, list) and len(p) == 2 for p in params):
            params = Mapping(tuple((k, v) for k, v in params))
        if not isinstance(params, Mapping):
            self.needed(params, "the query parameters", params_node)
            raise CannotResolve(f"the query parameters are {source_of(params_node)}, not a dict")
        self.mapping_shape(params, "the query parameters", params_node)
        for key, value in query:
            params = params.with_item(key, value)
        selects: list[str] = []
        filters: list[Filter] = []
        orders: list[Order] = []
        limit = None
        for key, value in params.items:
            key = self.needed(key, "a query parameter's name")
            if key == "select":
                selects = select_list(self.needed(value, "the columns selected"))
            elif key == "order":
                orders = order_list(self.needed(value, "the order"))
            elif key == "limit":
                value = self.soft_value(value)
                limit = (
                    int(value) if isinstance(value, (int, str)) and str(value).isdigit() else None
                )
            elif key in ("offset", "on_conflict", "columns"):
                continue
            elif key in ("or", "and", "not.or", "not.and"):
                filters += or_filters(self.needed(value, "the filters of an or"))
            else:
                filters.append(Filter(key, self.operator(value, key)))
        method = site.http_method
        headers = self.resolver.value(_keyword(node, "headers"), self.env)
        prefer = headers.get("Prefer") if isinstance(headers, Mapping) else None
        writes: list[str] = []
        if method == "GET":
            operation = "select"
        elif method == "DELETE":
            operation = "delete"
        else:
            if method == "PATCH":
                operation = "update"
            elif method == "PUT" or (isinstance(prefer, str) and "resolution=" in prefer):
                operation = "upsert"
            else:
                operation = "insert"
            payload = _keyword(node, "json") or _keyword(node, "data")
            writes = self.payload_keys(payload, f"the payload of the {method} on {table}")
        if operation == "select" and not selects:
            selects = ["*"]
        return self.make(table, operation, writes, selects, filters, orders, limit)

    def soft_value(self, value: Any) -> Any:
        return None if unresolvable(value) else value

    def operator(self, value: Any, column: str) -> str:
        """``eq.5`` -> eq, ``not.is.null`` -> not.is, ``in.(a,b)`` -> in."""
        text = (
            value
            if isinstance(value, str)
            else value.literal_prefix()
            if isinstance(value, Text)
            else ""
        )
        words = text.split(".")
        if len(words) >= 2 and words[0] == "not":
            return f"not.{words[1]}"
        if len(words) >= 2 and words[0]:
            return words[0]
        self.needed(value, f"the filter on {column}")
        raise CannotResolve(f"the filter on {column} is {value!r}, not operator.value")

    def table_of_url(self, url: Any, node: ast.AST | None) -> tuple[Any, list]:
        """The table after ``/rest/v1/`` and the query string's pairs."""
        parts = list(url.parts) if isinstance(url, Text) else [url]
        for index, part in enumerate(parts):
            if isinstance(part, str) and REST in part:
                rest = part.split(REST, 1)[1]
                following = parts[index + 1 :]
                if rest == "":
                    if not following:
                        return None, []  # PostgREST's root (its OpenAPI description)
                    table = self.needed(following[0], "the table name in the URL", node)
                    tail = "".join(p for p in following[1:] if isinstance(p, str))
                    return table, _query(tail)
                table, _, tail = rest.partition("?")
                return table.split("/")[0], _query("?" + tail if tail else "")
        raise CannotResolve("the URL names no table after /rest/v1/")


def _query(tail: str) -> list[tuple[str, str]]:
    return parse_qsl(tail.split("?", 1)[1]) if "?" in tail else []


def select_list(text: str) -> list[str]:
    """PostgREST's select: ``a, b``, ``alias:col``, ``col::text``, ``col->key``; embedded
    resources (``websites(name)``) are other tables' columns and are left out."""
    columns, depth, word = [], 0, ""
    for char in text + ",":
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            word = word.strip()
            if word and "(" not in word:
                word = word.split("::")[0]
                if ":" in word:
                    word = word.split(":", 1)[1]
                word = word.split("->")[0].strip().strip('"')
                word = word.removeprefix("!")
                if word:
                    columns.append(word)
            word = ""
        else:
            word += char
    return columns


def order_list(text: str) -> list[Order]:
    orders = []
    for item in text.split(","):
        words = item.strip().split(".")
        if words and words[0]:
            orders.append(Order(words[0], "desc" in words[1:]))
    return orders


def or_filters(text: Any) -> list[Filter]:
    """``or=(a.eq.1,b.is.null)`` / ``.or_("a.eq.1,b.is.null")``: a filter per condition."""
    if not isinstance(text, str):
        raise CannotResolve("the conditions of an or are not a string")
    inner = text.strip()
    if inner.startswith("(") and inner.endswith(")"):
        inner = inner[1:-1]
    filters = []
    for condition in inner.split(","):
        words = condition.strip().split(".")
        if len(words) >= 3:
            operator = f"not.{words[2]}" if words[1] == "not" else words[1]
            filters.append(Filter(words[0], operator))
    return filters


# --------------------------------------------------------------------------- the scan


@dataclass
class ScanResult:
    calls: list[Call]
    unresolved: list[Unresolved]
    scanned: list[str]  # the folders, as said relative to their repository
    files: int
    unscanned: list[tuple[str, int]]  # Python folders of the repository not scanned
    commit: str = ""  # " of the git repository X at commit Y", when it is one


def scan(folders: Sequence[Path]) -> ScanResult:
    """Read every Python file under ``folders``; BadInput when a folder does not exist or
    holds no Python file."""
    modules: list[Module] = []
    unresolved: list[Unresolved] = []
    scanned: list[str] = []
    seen: set[Path] = set()
    bases: set[Path] = set()
    count = 0
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise BadInput(
                f"{folder} is not a folder: give the backend's source folder (e.g. ../binaapp/backend/app)."
            )
        files = python_files(folder)
        if not files:
            raise BadInput(
                f"{folder} holds no Python file: give the backend's source folder (e.g. ../binaapp/backend/app)."
            )
        base = relative_base(folder)
        bases.add(base)
        scanned.append(_shown(folder.resolve(), base))
        for path in files:
            real = path.resolve()
            if real in seen:
                continue
            seen.add(real)
            count += 1
            shown = _shown(real, base)
            try:
                modules.append(
                    Module.parse(shown, real.read_text(encoding="utf-8", errors="replace"))
                )
            except (SyntaxError, ValueError) as exc:
                line = getattr(exc, "lineno", None) or 1
                message = getattr(exc, "msg", None) or str(exc)
                unresolved.append(
                    Unresolved(
                        shown, line, f"the file does not parse ({message}): its calls are not read"
                    )
                )
    calls, more = calls_of(modules)
    unscanned = _unscanned(bases, seen)
    result = ScanResult(calls, _sorted_unique(unresolved + more), scanned, count, unscanned)
    result.commit = commit_of(Path(folders[0]).resolve())
    return result


def _shown(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix() or "."
    except ValueError:
        return path.as_posix()


def calls_of(modules: list[Module]) -> tuple[list[Call], list[Unresolved]]:
    """Every call on the chat tables in ``modules``, and what could not be resolved."""
    index = Index(modules)
    resolver = Resolver()
    calls: list[Call] = []
    unresolved: list[Unresolved] = []
    for function in list(index.functions()):
        for site in [*chain_sites(function, index), *http_sites(function, index, resolver)]:
            found, missing = resolve_site(site, index, resolver)
            calls += found
            unresolved += missing
    return merge(calls), unresolved


def resolve_site(
    site: Site, index: Index, resolver: Resolver
) -> tuple[list[Call], list[Unresolved]]:
    """The site's calls: in its own function, or at every call site of the wrappers it
    is in, as far as the values it needs are known."""
    calls: list[Call] = []
    unresolved: list[Unresolved] = []
    pending: list[list[Frame]] = [[Frame(site.function)]]
    while pending:
        frames = pending.pop()
        outermost = frames[-1].function
        path, line = _where(site, frames)
        try:
            builder = Builder(resolver, site, environment(frames), outermost)
            call = builder.http() if site.is_http else builder.chain()
        except NeedsCallers as need:
            callers = index.call_sites(outermost)
            on_the_way = {id(f.function) for f in frames}
            callers = [c for c in callers if id(c[0]) not in on_the_way]
            if not callers or len(frames) > MAX_WRAPPERS:
                reason = f"{need.what} comes from {need.param}, and no scanned code calls it"
                if callers:
                    reason = f"{need.what} comes from {need.param}, through more than {MAX_WRAPPERS} wrappers"
                unresolved.append(Unresolved(path, line, reason))
                continue
            for caller, call_node, through_attribute in callers:
                pending.append(
                    [*frames[:-1], Frame(outermost, call_node, through_attribute), Frame(caller)]
                )
            continue
        except CannotResolve as exc:
            unresolved.append(Unresolved(path, line, str(exc)))
            continue
        if call is not None:
            wrappers = [frame.function.name for frame in reversed(frames[:-1])]
            via = ">".join([*wrappers, *([site.helper] if site.helper else [])])
            calls.append(replace(call, path=path, line=line, via=via))
    return calls, unresolved


def _where(site: Site, frames: list[Frame]) -> tuple[str, int]:
    """The outermost call site (the line of its callee's name), else the site's own."""
    if len(frames) > 1:
        call = frames[-2].call
        return frames[-1].function.module.path, call.func.end_lineno or call.lineno
    return site.function.module.path, site.line


def merge(calls: Iterable[Call]) -> list[Call]:
    """One call per place and shape; the retry codes of identical calls at one place
    merged (a wrapper's loop and its last try are one call at the call site)."""
    merged: dict[str, Call] = {}
    for call in calls:
        key = replace(call, retry=()).render()
        if key in merged:
            retry = tuple(dict.fromkeys(merged[key].retry + call.retry))
            merged[key] = replace(merged[key], retry=retry)
        else:
            merged[key] = call
    return sorted(merged.values(), key=lambda c: (c.path, c.line, c.render()))


def _sorted_unique(unresolved: list[Unresolved]) -> list[Unresolved]:
    unique = {u.render(): u for u in unresolved}
    return sorted(unique.values(), key=lambda u: (u.path, u.line, u.reason))


def _unscanned(bases: set[Path], seen: set[Path]) -> list[tuple[str, int]]:
    """The repository's Python files outside the scanned folders, by their folder (two
    levels deep), when the folders are in a git repository."""
    counts: Counter[str] = Counter()
    for base in bases:
        if not (base / ".git").exists():
            continue
        for path in python_files(base):
            if path.resolve() in seen:
                continue
            parts = path.relative_to(base).parts[:-1]
            counts["/".join(parts[:2]) or "."] += 1
    return sorted(counts.items())


# --------------------------------------------------------------------------- output


def summary(result: ScanResult) -> list[str]:
    """Counts per table and operation, then the unresolved lines."""
    per_table: dict[str, Counter[str]] = {}
    for call in result.calls:
        per_table.setdefault(call.table, Counter())[call.operation] += 1
    lines = [f"{len(result.calls)} calls on the chat tables, in {result.files} Python files:"]
    for table in TABLES:
        counts = per_table.get(table, Counter())
        words = ", ".join(f"{counts[op]} {op}" for op in OPERATIONS if counts[op])
        lines.append(f"  {table}: {sum(counts.values())} ({words or 'none'})")
    lines.append(f"{len(result.unresolved)} unresolved" + (":" if result.unresolved else "."))
    lines += [f"  {u.render()}" for u in result.unresolved]
    return lines


def header(result: ScanResult, when: datetime) -> list[str]:
    folders = ", ".join(result.scanned)
    lines = [
        "The backend's PostgREST calls on the chat tables, read from its code by `chatdb calls scan`",
        "(chatdb/calls/model.py says the format; docs/when-the-backend-changes.md how to renew it).",
        f"Scanned: {folders} ({result.files} Python files){result.commit}, on {when:%Y-%m-%d} (UTC).",
    ]
    if result.unscanned:
        shown = ", ".join(f"{name} ({_kind(name, count)})" for name, count in result.unscanned)
        lines.append(f"Not scanned, the repository's other Python files by folder: {shown};")
        lines.append(f"{UNSCANNED_HINT}.")
    return lines


NOT_RUNNING = {"tests": "tests", "test": "tests", "migrations": "migrations"}


def _kind(folder: str, count: int) -> str:
    """``61 files, tests: not the running backend`` for a folder of tests or migrations."""
    files = f"{count} file{'s' if count != 1 else ''}"
    kind = NOT_RUNNING.get(folder.rsplit("/", 1)[-1])
    return f"{files}, {kind}: not the running backend" if kind else files


def commit_of(folder: Path) -> str:
    """`` of the git repository <name> at commit <sha>``, when ``folder`` is in one."""
    base = relative_base(folder)
    if not (base / ".git").exists():
        return ""
    try:
        sha = subprocess.run(
            ["git", "-C", str(base), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f" of the git repository {base.name} at commit {sha}" if sha else ""


def main(folders: Sequence[str], write: str | None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    paths = [Path(folder) for folder in folders]
    result = scan(paths)
    if write is None:
        for call in result.calls:
            print(call.render(), file=out)
        print(file=out)
    else:
        target = Path(write)
        if not target.parent.is_dir():
            raise BadInput(f"Cannot write {target}: its folder {target.parent} does not exist.")
        CallsFile(result.calls, result.unresolved, header(result, datetime.now(UTC))).write(target)
        print(f"Wrote {target}.", file=out)
    for line in summary(result):
        print(line, file=out)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folders", nargs="+", metavar="DIR", help="the backend's source folder(s)")
    parser.add_argument(
        "--write", metavar="FILE", help="write the calls file (e.g. calls/backend.calls)"
    )
    parser.set_defaults(func=lambda args: main(args.folders, args.write))
