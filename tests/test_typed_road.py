"""Issue 11's rule for stored documents: each collection is read and written through one
typed accessor, declared once. Checked on the source: the storage's document methods are
called only from inside a class (an accessor, or the audit log and accounts, which write
their own collections through their accessors' rows), never from a module-level function
or the web, CLI and stage code directly; and no call names its collection with a string
literal (each collection's name is one constant, beside its record)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "factbridge"
METHODS = {"get_docs", "put_docs", "put_docs_batch", "list_docs", "list_docs_keyed", "count_docs", "iter_docs", "iter_docs_by_key", "delete_docs"}
EXEMPT = ("backends/storage/", "testing/")  # the storage itself and its conformance suites


def _calls() -> list[tuple[str, int, str | None, ast.Call]]:
    found: list[tuple[str, int, str | None, ast.Call]] = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith(EXEMPT):
            continue

        def walk(node: ast.AST, cls: str | None, rel: str = rel) -> None:
            for child in ast.iter_child_nodes(node):
                inner = child.name if isinstance(child, ast.ClassDef) else cls
                if isinstance(child, ast.Call):
                    func = child.func
                    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
                    if name in METHODS:
                        found.append((rel, child.lineno, cls, child))
                walk(child, inner)

        walk(ast.parse(path.read_text(encoding="utf-8")), None)
    return found


def test_documents_are_read_and_written_only_through_accessors() -> None:
    calls = _calls()
    assert len(calls) > 100, "the scan found the accessors"
    outside = [f"{rel}:{line}" for rel, line, cls, _ in calls if cls is None]
    assert not outside, f"storage document calls outside an accessor class: {outside}"


def test_no_collection_is_named_by_a_literal_at_a_call() -> None:
    def collection_arg(call: ast.Call) -> ast.expr | None:
        at = 2 if isinstance(call.func, ast.Name) else 1  # iter_docs(storage, org, collection) / storage.get_docs(org, collection, ...)
        return call.args[at] if len(call.args) > at else None

    literal = [f"{rel}:{line}" for rel, line, _, call in _calls()
               if isinstance(arg := collection_arg(call), ast.Constant) and isinstance(arg.value, str)]
    assert not literal, f"collection names written as literals (declare one constant beside the record): {literal}"
