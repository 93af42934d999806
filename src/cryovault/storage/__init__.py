"""Storages and the bytes of File elements: backends, streaming writes with checksums, usage."""
