"""Paths inside an instrument's session folder: checked once, shared by the layouts."""

from __future__ import annotations

import re

from cryovault.ingest.errors import IngestFormatError

_DRIVE = re.compile(r"^[A-Za-z]:")
_GAIN_EXTENSIONS = (".mrc", ".tif", ".tiff", ".dm4", ".gain")


def split_relative_path(relative_path: str) -> tuple[str, ...]:
    """The parts of a POSIX path relative to a session folder.

    Refuses what could leave the folder or means something else on another system: absolute
    paths, drive letters, backslashes, ``..`` parts, control characters. Empty and ``.`` parts
    are dropped (``a//b`` and ``./a/b`` are ``a/b``).
    """
    if not isinstance(relative_path, str) or not relative_path.strip():
        raise IngestFormatError("the file path is empty")
    if any(ord(character) < 32 for character in relative_path):
        raise IngestFormatError(f"{relative_path!r}: control characters are not allowed in a path")
    if "\\" in relative_path:
        raise IngestFormatError(
            f"{relative_path!r}: backslashes are not allowed; send POSIX paths ('a/b/c')")
    if relative_path.startswith("/") or _DRIVE.match(relative_path):
        raise IngestFormatError(
            f"{relative_path!r}: the path must be relative to the session folder")
    parts = tuple(part for part in relative_path.split("/") if part not in ("", "."))
    if ".." in parts:
        raise IngestFormatError(f"{relative_path!r}: '..' is not allowed in a path")
    if not parts:
        raise IngestFormatError(f"{relative_path!r}: the path names no file")
    return parts


def is_gain_reference_name(filename: str) -> bool:
    """Gain references as the acquisition programs and facilities name them: ``*.gain``
    (Falcon/EER), SerialEM's ``SuperRef_*``/``CountRef_*`` and any image named ``*gain*``."""
    lowered = filename.lower()
    if lowered.endswith(".gain"):
        return True
    if not lowered.endswith(_GAIN_EXTENSIONS):
        return False
    return "gain" in lowered or lowered.startswith(("superref_", "countref_"))
