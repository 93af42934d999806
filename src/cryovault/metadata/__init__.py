"""Typed metadata (SPEC MD-1 … MD-4): values, quantities and units with pint, exports."""
