"""Live sources: connectors with cursors, their schedule, and the one ingest path for
items from connectors, the API and the tiplines (see docs/sources.md)."""
