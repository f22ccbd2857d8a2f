"""The `factbridge` command line.

`app.py` holds the Typer app, its sub-apps and the shared state; each other
module is one group of commands that registers itself on them. Importing this
package imports them all, so `factbridge.cli.app` is complete once loaded.
Errors from the exception tree become one clear line on stderr and a non-zero
exit; nothing is half-done silently.
"""

# in the order `factbridge --help` lists them
from factbridge.cli import posts, matching, triage, narratives, linkrisk, work, pipeline, web, demo, soak  # noqa: F401, I001
from factbridge.cli.app import app, main

__all__ = ["app", "main"]
