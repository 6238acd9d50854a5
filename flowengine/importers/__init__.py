"""Bring flows from elsewhere: Twilio Studio JSON and SWML become flowengine flow YAML.

Each importer is a module with ``convert(doc: Document) -> ImportResult``: it reads a
document loaded with positions (:func:`flowengine.flow.loader.load_yaml` reads JSON as
well as YAML), and returns the flow as plain data in the order it should be written, with
a :class:`Finding` for everything it could not carry over, positioned in the source.
:mod:`.cli` does the rest (reading, writing, checking the output, exit codes).

The importers depend on the flow layer only (``flow`` and below), never on the engine.
"""

from .base import Finding, ImportResult, SourceError, dump_flow

__all__ = ["Finding", "ImportResult", "SourceError", "dump_flow"]
