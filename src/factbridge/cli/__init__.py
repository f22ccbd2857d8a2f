"""The `factbridge` command line.

`app.py` holds the Typer app, its sub-apps and the shared state; each other
module in this package is one group of commands that registers itself on them.
Importing this package imports every such module (a new command group is a new
module here, nothing else to edit), so `factbridge.cli.app` is complete once
loaded. Errors from the exception tree become one clear line on stderr and a
non-zero exit; nothing is half-done silently.
"""

import importlib
import pkgutil

from factbridge.cli.app import app, main

# `factbridge --help` lists the core commands first, then the other groups by name.
_FIRST = ("posts", "matching", "triage", "narratives", "linkrisk", "work", "pipeline", "web", "demo")


def _command_modules() -> list[str]:
    found = {m.name for m in pkgutil.iter_modules(__path__) if m.name != "app" and not m.name.startswith("_")}
    return [n for n in _FIRST if n in found] + sorted(found - set(_FIRST))


for _name in _command_modules():
    importlib.import_module(f"{__name__}.{_name}")

__all__ = ["app", "main"]
