"""Instrument ingest (SPEC SPA-1, SPA-8, ET-1).

``epu/`` and ``tomo/`` hold pure parsers of the files the microscopes write (EPU session, atlas,
grid-square and image metadata; tilt-series ``.mdoc``) and the classification of paths inside a
session folder. They turn bytes into frozen dataclasses with units in the field names and raise
``cryovault.ingest.errors.IngestFormatError`` (an ``Invalid``) for anything they cannot read.
The watcher agent, the registry and the interpretation of registered files into run items live
beside them in this package.
"""
