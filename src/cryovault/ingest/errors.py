"""The one error the instrument-file parsers raise."""

from __future__ import annotations

from cryovault.errors import Invalid


class IngestFormatError(Invalid):
    """An instrument file cannot be read: the message names the file kind and what is wrong.

    ``possibly_incomplete`` is true when the content stops early (empty file, XML that ends
    before its root element closes, an .mdoc without sections): the instrument may still be
    writing it, so a watcher should look again later before calling the file broken.
    """

    def __init__(self, message: str, *, possibly_incomplete: bool = False) -> None:
        super().__init__(message)
        self.possibly_incomplete = possibly_incomplete
