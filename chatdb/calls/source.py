"""The backend's source as the scan reads it: files, their paths, and an index of every
function (its parameters, the names it binds and where, the dicts and lists it changes
in place), built with the standard library's ``ast``. Nothing is imported or run.

Paths are said relative to the root of the git repository holding the scanned folder
(the nearest parent with a ``.git``), else relative to the folder's parent, so that
``backend/app`` scanned from any checkout of the backend reads ``backend/app/...``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

SKIPPED_FOLDERS = frozenset({"__pycache__", "node_modules", "site-packages", ".venv", "venv"})
# A position in a file: (line, column); bindings are compared by where they end.
Position = tuple[int, int]


def start(node: ast.AST) -> Position:
    return (node.lineno, node.col_offset)


def end(node: ast.AST) -> Position:
    return (node.end_lineno or node.lineno, node.end_col_offset or 0)


def repository_root(folder: Path) -> Path | None:
    """The nearest folder at or above ``folder`` holding ``.git`` (a folder, or the file
    of a worktree), if any."""
    for candidate in (folder, *folder.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


def relative_base(folder: Path) -> Path:
    """What the paths of files under ``folder`` are said relative to."""
    folder = folder.resolve()
    return repository_root(folder) or folder.parent


def python_files(folder: Path) -> list[Path]:
    """Every ``*.py`` under ``folder``, sorted, without hidden folders, caches and
    virtual environments."""
    found = []
    for path in folder.rglob("*.py"):
        parts = path.relative_to(folder).parts[:-1]
        if any(part.startswith(".") or part in SKIPPED_FOLDERS for part in parts):
            continue
        if path.is_file():
            found.append(path)
    return sorted(found)


# --------------------------------------------------------------------------- the index


@dataclass(frozen=True)
class Binding:
    """A name bound at ``position`` (where the binding statement ends): to ``value``
    (an expression), or, for an augmented assignment, ``value`` added to what it was;
    ``value`` None: bound to something the scan does not follow (a loop variable, a
    ``with ... as``, a tuple unpacked, an import)."""

    position: Position
    value: ast.expr | None
    augmented: ast.operator | None = None
    how: str = ""  # for ``value`` None: "a for loop", "an unpacking", ...


@dataclass(frozen=True)
class Change:
    """An in-place change of a dict or list held by a name: ``x["k"] = v``,
    ``x.update(...)``, ``x.pop(k)``, ``del x[k]``, ``x.append(v)``, ..."""

    position: Position
    kind: str  # "set", "update", "pop", "delete", "append", "extend", "remove", "setdefault"
    node: ast.AST


@dataclass(eq=False)
class Function:
    """A function or method of the scanned code, or a module's top level (``name``
    ``<module>``)."""

    module: Module
    node: ast.AST
    name: str
    params: list[str] = field(default_factory=list)
    defaults: dict[str, ast.expr] = field(default_factory=dict)
    is_method: bool = False
    class_node: ast.ClassDef | None = None
    parent: Function | None = None
    bindings: dict[str, list[Binding]] = field(default_factory=dict)
    changes: dict[str, list[Change]] = field(default_factory=dict)
    body: list[ast.AST] = field(default_factory=list)  # every node of its own code
    parents: dict[int, ast.AST] = field(default_factory=dict)  # id(node) -> its parent

    @property
    def title(self) -> str:
        return "the module's top level" if self.name == "<module>" else f"{self.name}()"

    def parent_of(self, node: ast.AST) -> ast.AST | None:
        return self.parents.get(id(node))

    def binding_before(self, name: str, position: Position) -> Binding | None:
        """The last binding of ``name`` in this function that ends before ``position``."""
        found = None
        for binding in self.bindings.get(name, ()):
            if binding.position <= position:
                found = binding
        return found

    def changes_between(self, name: str, after: Position, before: Position) -> list[Change]:
        return [c for c in self.changes.get(name, ()) if after <= c.position <= before]

    def constant_strings(self) -> Iterator[str]:
        for node in self.body:
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                yield node.value


@dataclass(eq=False)
class Module:
    """A parsed file: its path as said in the output, its functions, its top level."""

    path: str
    tree: ast.Module
    functions: list[Function] = field(default_factory=list)
    top: Function | None = None
    imports: set[str] = field(default_factory=set)  # top-level package names imported

    @classmethod
    def parse(cls, path: str, source: str) -> Module:
        """SyntaxError (and ValueError for a NUL byte) when the file does not parse."""
        tree = ast.parse(source, filename=path)
        module = cls(path, tree)
        module.top = _index(module, tree, "<module>", None, None)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                module.imports.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                module.imports.add(node.module.split(".")[0])
        return module


_CHANGING_METHODS = frozenset({"update", "pop", "append", "extend", "remove", "setdefault"})


def _index(
    module: Module,
    node: ast.AST,
    name: str,
    parent: Function | None,
    class_node: ast.ClassDef | None,
) -> Function:
    function = Function(module, node, name, parent=parent, class_node=class_node)
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        arguments = node.args
        positional = [*arguments.posonlyargs, *arguments.args]
        function.params = [a.arg for a in positional] + [a.arg for a in arguments.kwonlyargs]
        for arg, default in zip(
            positional[len(positional) - len(arguments.defaults) :], arguments.defaults, strict=True
        ):
            function.defaults[arg.arg] = default
        for arg, default in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True):
            if default is not None:
                function.defaults[arg.arg] = default
        function.is_method = (
            class_node is not None and bool(positional) and positional[0].arg in ("self", "cls")
        )
    module.functions.append(function)
    for statement in node.body:  # a function's or the module's
        _walk(function, statement, node)
    return function


def _walk(function: Function, node: ast.AST, parent: ast.AST) -> None:
    """Index ``node`` (and what it holds) as part of ``function``'s own code; a nested
    function or class is indexed as its own scope."""
    function.parents[id(node)] = parent
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        _bind(function, node.name, end(node), None, how="a def")
        for decorator in node.decorator_list:
            _walk(function, decorator, node)
        _index(function.module, node, node.name, function, None)
        return
    if isinstance(node, ast.ClassDef):
        _bind(function, node.name, end(node), None, how="a class statement")
        _class(function, node)
        return
    function.body.append(node)
    _record(function, node)
    for child in ast.iter_child_nodes(node):
        _walk(function, child, node)


def _class(function: Function, node: ast.ClassDef) -> None:
    """A class: its methods are functions of their own (with the class, for ``self.X``)."""
    for statement in node.body:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
            _index(function.module, statement, statement.name, function, node)
        elif isinstance(statement, ast.ClassDef):
            _class(function, statement)


def _bind(function: Function, name: str, position: Position, value, augmented=None, how="") -> None:
    binding = Binding(position, value, augmented, how)
    function.bindings.setdefault(name, []).append(binding)


def _bind_target(function: Function, target: ast.AST, position: Position, value, how="") -> None:
    if isinstance(target, ast.Name):
        _bind(function, target.id, position, value, how=how)
    elif isinstance(target, (ast.Tuple, ast.List)):
        for element in target.elts:
            _bind_target(function, element, position, None, how or "an unpacking")
    elif isinstance(target, ast.Starred):
        _bind_target(function, target.value, position, None, how or "an unpacking")
    elif isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name):
        _change(function, target.value.id, position, "set", target)


def _change(function: Function, name: str, position: Position, kind: str, node: ast.AST) -> None:
    function.changes.setdefault(name, []).append(Change(position, kind, node))


def _record(function: Function, node: ast.AST) -> None:
    """The bindings and in-place changes one node makes."""
    if isinstance(node, ast.Assign):
        for target in node.targets:
            _bind_target(function, target, end(node), node.value)
    elif isinstance(node, ast.AnnAssign) and node.value is not None:
        _bind_target(function, node.target, end(node), node.value)
    elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
        _bind(function, node.target.id, end(node), node.value, node.op)
    elif isinstance(node, ast.NamedExpr):
        _bind(function, node.target.id, end(node), node.value)
    elif isinstance(node, (ast.For, ast.AsyncFor)):
        _bind_target(function, node.target, end(node.iter), None, "a for loop")
    elif isinstance(node, ast.withitem) and node.optional_vars is not None:
        _bind_target(function, node.optional_vars, end(node.optional_vars), None, "a with ... as")
    elif isinstance(node, ast.ExceptHandler) and node.name:
        _bind(function, node.name, start(node), None, how="an except clause")
    elif isinstance(node, (ast.Import, ast.ImportFrom)):
        for alias in node.names:
            _bind(
                function,
                (alias.asname or alias.name).split(".")[0],
                end(node),
                None,
                how="an import",
            )
    elif isinstance(node, ast.Delete):
        for target in node.targets:
            if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name):
                _change(function, target.value.id, end(node), "delete", target)
    elif isinstance(node, (ast.Global, ast.Nonlocal)):
        for name in node.names:
            _bind(function, name, end(node), None, how="a global or nonlocal statement")
    elif (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.attr in _CHANGING_METHODS
    ):
        _change(function, node.func.value.id, end(node), node.func.attr, node)
