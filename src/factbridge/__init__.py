"""FactBridge: find, triage and share fact-checks of social posts across languages.

It recommends; people decide. Every label carries its evidence and the rule or
model (with version) that produced it.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
