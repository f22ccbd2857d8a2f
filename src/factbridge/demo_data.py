"""Where `make demo` keeps its data, and when other commands use it.

`factbridge demo` writes to `<data_dir>/demo` (default `.factbridge/demo`) so that
it never mixes with a desk's own data. Other commands use the default data folder;
when that has no database yet but the demo folder has one, they use the demo data
(and say so on stderr), so `factbridge queue` right after `make demo` shows it.
"""

from __future__ import annotations

from pathlib import Path

from factbridge.settings import Settings

DEMO_SUBDIR = "demo"
DB_NAME = "factbridge.db"
DEFAULT_DATA_DIR = ".factbridge"


def demo_data_dir(data_dir: str) -> Path:
    return Path(data_dir) / DEMO_SUBDIR


def demo_data_fallback(settings: Settings) -> Path | None:
    """The demo folder, when the settings point at an embedded database that does not exist
    yet and the demo one does; None otherwise (an explicit storage URL is never replaced)."""
    if settings.storage_url or settings.data_dir != DEFAULT_DATA_DIR:  # chosen in a settings file or the environment
        return None
    own = Path(settings.data_dir) / DB_NAME
    demo = demo_data_dir(settings.data_dir)
    if own.exists() or not (demo / DB_NAME).exists():
        return None
    return demo
