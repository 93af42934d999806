"""Which viewer shows a file, and which media type it is served with.

`viewer_kind(name, head)` decides from the file name's extension and its first bytes (pass at
least the first 1,024 bytes: the MRC signature sits at byte 208). Magic bytes win over the
extension for images, so a JPEG saved as `.png` still opens; a file whose extension promises text
but whose bytes are binary is offered for download instead.
"""

from __future__ import annotations

import codecs
import mimetypes
import struct
from pathlib import PurePath
from typing import Literal

ViewerKind = Literal["image", "table", "json", "text", "download"]

#: How many leading bytes `viewer_kind` looks at; callers should read this many.
HEAD_BYTES = 4096

MRC_EXTENSIONS = frozenset({".mrc", ".mrcs", ".map", ".rec", ".st", ".ali", ".preali", ".ctf"})
TIFF_EXTENSIONS = frozenset({".tif", ".tiff", ".gain"})
EER_EXTENSIONS = frozenset({".eer"})
PNG_EXTENSIONS = frozenset({".png"})
JPEG_EXTENSIONS = frozenset({".jpg", ".jpeg"})
IMAGE_EXTENSIONS = (MRC_EXTENSIONS | TIFF_EXTENSIONS | EER_EXTENSIONS | PNG_EXTENSIONS
                    | JPEG_EXTENSIONS)

TABLE_EXTENSIONS = frozenset({".star", ".csv", ".tsv"})
JSON_EXTENSIONS = frozenset({".json"})
TEXT_EXTENSIONS = frozenset({
    # plain text, logs and notes
    ".txt", ".log", ".out", ".err", ".md", ".rst", ".readme",
    # SerialEM / Tomography / EPU metadata (EPU's .dm files are XML, Gatan's are .dm3/.dm4)
    ".mdoc", ".xml", ".dm", ".edf",
    # IMOD and alignment outputs
    ".xf", ".tlt", ".rawtlt", ".xtilt", ".prexf", ".prexg", ".tltxf", ".defocus", ".aln",
    ".com", ".adoc",
    # configuration and scripts
    ".cfg", ".conf", ".ini", ".yaml", ".yml", ".toml", ".py", ".sh", ".bash", ".csh",
    ".slurm", ".sbatch", ".params", ".html", ".htm",
})
COMPRESSED_EXTENSIONS = frozenset({".gz", ".bz2", ".xz", ".zst", ".zip", ".tar", ".tgz", ".7z"})

# Media types that Python's built-in table lacks or gets in a machine-dependent way. Binary
# cryo-EM formats have no registered type: they are served as octet streams (download).
_MEDIA_TYPES: dict[str, str] = {
    **{ext: "application/octet-stream" for ext in MRC_EXTENSIONS},
    ".eer": "application/octet-stream",
    ".gain": "image/tiff",
    ".dm3": "application/octet-stream",
    ".dm4": "application/octet-stream",
    ".star": "text/plain",
    ".mdoc": "text/plain",
    ".xf": "text/plain",
    ".tlt": "text/plain",
    ".rawtlt": "text/plain",
    ".xtilt": "text/plain",
    ".prexf": "text/plain",
    ".prexg": "text/plain",
    ".tltxf": "text/plain",
    ".defocus": "text/plain",
    ".aln": "text/plain",
    ".com": "text/plain",
    ".adoc": "text/plain",
    ".edf": "text/plain",
    ".log": "text/plain",
    ".out": "text/plain",
    ".err": "text/plain",
    ".params": "text/plain",
    ".cfg": "text/plain",
    ".conf": "text/plain",
    ".ini": "text/plain",
    ".dm": "application/xml",
    ".xml": "application/xml",
    ".md": "text/markdown",
    ".yaml": "application/yaml",
    ".yml": "application/yaml",
    ".toml": "application/toml",
    ".tsv": "text/tab-separated-values",
    ".csv": "text/csv",
    ".json": "application/json",
}
_ENCODING_MEDIA_TYPES = {"gzip": "application/gzip", "bzip2": "application/x-bzip2",
                         "xz": "application/x-xz"}

# Built-in table only: mimetypes.guess_type() would also read /etc/mime.types, which differs
# between machines.
_MIME = mimetypes.MimeTypes(filenames=())

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_MRC_MODES = frozenset({0, 1, 2, 3, 4, 6, 12, 101})


def _extension(name: str) -> str:
    return PurePath(name).suffix.lower()


def sniff_image(head: bytes) -> str | None:
    """The image container the first bytes belong to: "mrc", "tiff", "png", "jpeg" or None.

    EER files are BigTIFF files: they sniff as "tiff" (telling them apart needs the first IFD).
    """
    if head.startswith(_PNG_SIGNATURE):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in _TIFF_SIGNATURES:
        return "tiff"
    if looks_like_mrc(head):
        return "mrc"
    return None


def looks_like_mrc(head: bytes) -> bool:
    """True when `head` (≥ 224 bytes) holds an MRC2014 header: 'MAP' at byte 208 and sane sizes."""
    if len(head) < 224 or head[208:211] != b"MAP":
        return False
    for order in ("<", ">"):
        nx, ny, nz, mode = struct.unpack_from(order + "4i", head, 0)
        if nx > 0 and ny > 0 and nz > 0 and mode in _MRC_MODES:
            return True
    return False


_CONTROL = frozenset(set(range(0, 32)) - {9, 10, 12, 13, 27}) | {127}


def looks_like_text(head: bytes, *, allow_latin1: bool = True) -> bool:
    """True when `head` reads as text: no NUL bytes, valid UTF-8 (a multi-byte character cut at
    the end is allowed) or, if `allow_latin1`, Latin-1 with next to no control characters."""
    if b"\x00" in head:
        return False
    if not head:
        return True
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        utf8 = True
    except UnicodeDecodeError:
        utf8 = False
    if not utf8 and not allow_latin1:
        return False
    control = sum(1 for byte in head if byte in _CONTROL or (not utf8 and 0x80 <= byte < 0xA0))
    return control <= max(1, len(head) // 100)


def viewer_kind(name: str, head: bytes) -> ViewerKind:
    """Which viewer shows a file: "image", "table", "json", "text" or "download".

    `name` is the file name (only its extension is used), `head` its first bytes (at least 1,024,
    ideally `HEAD_BYTES`). Images are recognised by their signature whatever the extension (an
    MRC file by its header). A file with an image extension whose bytes are not an image goes to
    the image viewer, whose reader explains what is wrong (empty, truncated, damaged), unless it
    reads as text. Tables, JSON and text need an extension that says so and bytes that read as
    text; a file with an unknown extension is shown as text when it is clean UTF-8.
    """
    ext = _extension(name)
    if ext in COMPRESSED_EXTENSIONS:
        return "download"
    sniffed = sniff_image(head)
    if sniffed is not None:
        return "image"
    if ext in IMAGE_EXTENSIONS:
        # Damaged, truncated or empty: the image viewer shows the reader's explanation. A text
        # file behind an image extension (an HTML error page saved as .png) is a download.
        return "download" if head and looks_like_text(head) else "image"
    if ext in TABLE_EXTENSIONS:
        return "table" if looks_like_text(head) else "download"
    if ext in JSON_EXTENSIONS:
        return "json" if looks_like_text(head) else "download"
    if ext in TEXT_EXTENSIONS:
        return "text" if looks_like_text(head) else "download"
    if head and looks_like_text(head, allow_latin1=False):
        return "text"
    return "download"


def media_type(name: str) -> str:
    """The media type to serve a file with (no charset parameter; the web layer adds one for
    text). Cryo-EM binaries are `application/octet-stream`; their text files `text/plain`."""
    ext = _extension(name)
    if ext in _MEDIA_TYPES:
        return _MEDIA_TYPES[ext]
    guessed, encoding = _MIME.guess_type(name, strict=False)
    if encoding is not None:
        return _ENCODING_MEDIA_TYPES.get(encoding, "application/octet-stream")
    return guessed or "application/octet-stream"
