"""EER movies: a minimal writer (for simulated data) and container checks for the reader.

An EER file is a little-endian BigTIFF with one IFD per detector frame (an optional first IFD
with compression 1 holds an integrated image). Each frame is one strip holding a run-length code
read least-significant bit first: a code of `rle_bits` bits counts the empty pixels before the
next electron event, the all-ones code means "that many empty pixels and no event yet", and any
other code is followed by the event's sub-pixel position (`horz_bits + vert_bits` bits).
Compression 65000 has 8-bit codes, 65001 7-bit codes, both with 2 + 2 sub-pixel bits; 65002
reads the widths from tags 65007-65009. Tag 65001 of the first frame holds the acquisition
metadata as `<metadata><item name="numberOfFrames">…</item>…</metadata>`, tag 65002 each frame's.

Decoding is done by tifffile (through imagecodecs.eer_decode). imagecodecs cannot encode EER, so
`write_eer` packs the bit stream and the BigTIFF container itself.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

CODE_WIDTHS = {65000: (8, 2, 2), 65001: (7, 2, 2)}

# TIFF field types
_SHORT, _LONG, _UNDEFINED, _LONG8 = 3, 4, 7, 16


@dataclass(frozen=True)
class EerEvents:
    """The electron events of one EER frame: flat pixel indices (row × width + column),
    strictly increasing, and their sub-pixel codes."""

    positions: np.ndarray
    subpixels: np.ndarray | None = None


def pack_events(events: EerEvents, n_pixels: int, rle_bits: int = 7,
                subpixel_bits: int = 4) -> bytes:
    """The run-length bit stream of one frame, padded to whole 16-bit words."""
    positions = np.asarray(events.positions, dtype=np.int64).ravel()
    if positions.size and (positions[0] < 0 or positions[-1] >= n_pixels
                           or np.any(np.diff(positions) <= 0)):
        raise ValueError("event positions must be strictly increasing and inside the frame")
    escape_code = (1 << rle_bits) - 1
    previous = np.concatenate(([-1], positions[:-1]))
    gaps = positions - previous - 1
    n_escapes = gaps // escape_code
    remainders = gaps - n_escapes * escape_code
    sub = (np.zeros(positions.size, np.int64) if events.subpixels is None
           else np.asarray(events.subpixels, np.int64) & ((1 << subpixel_bits) - 1))
    # words: for each event its escapes, then (remainder | sub-pixel << rle_bits)
    words_per_event = n_escapes + 1
    values = np.full(int(words_per_event.sum()), escape_code, dtype=np.int64)
    widths = np.full(values.size, rle_bits, dtype=np.int64)
    last_word = np.cumsum(words_per_event) - 1
    values[last_word] = remainders | (sub << rle_bits)
    widths[last_word] = rle_bits + subpixel_bits
    # the tail: escapes up to the end of the frame and a final count without an event
    tail = n_pixels - (int(positions[-1]) + 1 if positions.size else 0)
    tail_escapes, tail_remainder = divmod(tail, escape_code)
    values = np.concatenate((values, np.full(tail_escapes, escape_code), [tail_remainder]))
    widths = np.concatenate((widths, np.full(tail_escapes + 1, rle_bits)))
    starts = np.cumsum(widths) - widths
    total_bits = int(widths.sum())
    offsets = np.arange(total_bits, dtype=np.int64) - np.repeat(starts, widths)
    bits = ((np.repeat(values, widths) >> offsets) & 1).astype(np.uint8)
    bits = np.concatenate((bits, np.zeros((-total_bits) % 16, np.uint8)))
    return np.packbits(bits, bitorder="little").tobytes()


def _metadata(items: Iterable[tuple[str, object, str | None]]) -> bytes:
    body = "".join(
        f'<item name="{escape(name)}"' + (f' unit="{escape(unit)}"' if unit else "")
        + f">{escape(str(value))}</item>" for name, value, unit in items)
    return f"<metadata>{body}</metadata>".encode()


def _entry(tag: int, kind: int, count: int, payload: bytes) -> tuple[int, int, int, bytes]:
    return tag, kind, count, payload


def write_eer(path: Path, frames: Iterable[EerEvents], *, width: int, height: int,
              n_frames: int, compression: int = 65001,
              dose_per_frame_e_per_pixel: float | None = None,
              include_frame_count: bool = True) -> None:
    """Write an EER movie of `n_frames` frames. `include_frame_count=False` leaves
    numberOfFrames out of the acquisition metadata (as a broken file would)."""
    if compression not in CODE_WIDTHS:
        raise ValueError("write_eer writes compression 65000 or 65001")
    rle_bits, horz_bits, vert_bits = CODE_WIDTHS[compression]
    acquisition = [("sensorImageWidth", width, "pixels"), ("sensorImageHeight", height, "pixels")]
    if include_frame_count:
        acquisition.insert(0, ("numberOfFrames", n_frames, None))
    acquisition_xml = _metadata(acquisition)
    n_pixels = width * height
    with Path(path).open("wb") as fh:
        fh.write(b"II" + struct.pack("<HHHQ", 43, 8, 0, 0))
        next_pointer_at = 8
        written = 0
        for index, events in enumerate(frames):
            strip = pack_events(events, n_pixels, rle_bits, horz_bits + vert_bits)
            frame_items: list[tuple[str, object, str | None]] = [("frameID", index, None)]
            if dose_per_frame_e_per_pixel is not None:
                frame_items.append(("dose", dose_per_frame_e_per_pixel, "e/pixel"))
            frame_xml = _metadata(frame_items)
            entries = [
                _entry(256, _LONG, 1, struct.pack("<I", width)),
                _entry(257, _LONG, 1, struct.pack("<I", height)),
                _entry(258, _SHORT, 1, struct.pack("<H", 1)),
                _entry(259, _SHORT, 1, struct.pack("<H", compression)),
                _entry(262, _SHORT, 1, struct.pack("<H", 1)),
                _entry(273, _LONG8, 1, b""),  # strip offset, filled in below
                _entry(277, _SHORT, 1, struct.pack("<H", 1)),
                _entry(278, _LONG, 1, struct.pack("<I", height)),
                _entry(279, _LONG8, 1, struct.pack("<Q", len(strip))),
                _entry(65002, _UNDEFINED, len(frame_xml), frame_xml),
            ]
            if index == 0:
                entries.append(_entry(65001, _UNDEFINED, len(acquisition_xml), acquisition_xml))
            entries.sort()
            ifd_at = fh.tell()
            extra_at = ifd_at + 8 + 20 * len(entries) + 8
            extra = bytearray()
            packed = []
            long_payloads: list[tuple[int, bytes]] = []
            for tag, kind, count, payload in entries:
                if len(payload) > 8:
                    long_payloads.append((extra_at + len(extra), payload))
                    packed.append(struct.pack("<HHQQ", tag, kind, count, extra_at + len(extra)))
                    extra += payload + b"\0" * (len(payload) % 2)
                else:
                    packed.append((tag, kind, count, payload))
            strip_at = extra_at + len(extra)
            blob = bytearray(struct.pack("<Q", len(entries)))
            for item in packed:
                if isinstance(item, bytes):
                    blob += item
                else:
                    tag, kind, count, payload = item
                    if tag == 273:
                        payload = struct.pack("<Q", strip_at)
                    blob += struct.pack("<HHQ", tag, kind, count) + payload.ljust(8, b"\0")
            blob += struct.pack("<Q", 0)  # next IFD, patched when another frame follows
            fh.seek(next_pointer_at)
            fh.write(struct.pack("<Q", ifd_at))
            fh.seek(ifd_at)
            fh.write(blob)
            next_pointer_at = ifd_at + 8 + 20 * len(entries)
            fh.write(extra)
            fh.write(strip)
            if fh.tell() % 2:
                fh.write(b"\0")
            written += 1
        if written != n_frames:
            raise ValueError(f"{written} frames were given for n_frames={n_frames}")


def count_ifds(path: Path, limit: int = 10_000_000) -> int:
    """Number of IFDs in a BigTIFF, following the chain until it ends or leaves the file
    (a truncated file ends early)."""
    size = Path(path).stat().st_size
    count = 0
    with Path(path).open("rb") as fh:
        header = fh.read(16)
        if len(header) < 16 or header[:4] != b"II+\0":
            raise ValueError("not a little-endian BigTIFF")
        offset = struct.unpack_from("<Q", header, 8)[0]
        while offset and count < limit:
            if offset + 8 > size:
                break
            fh.seek(offset)
            n_tags = struct.unpack("<Q", fh.read(8))[0]
            end = offset + 8 + 20 * n_tags + 8
            if end > size:
                break
            fh.seek(offset + 8 + 20 * n_tags)
            offset = struct.unpack("<Q", fh.read(8))[0]
            count += 1
    return count


_ITEM = re.compile(rb'<item\s+name="([^"]+)"[^>]*>([^<]*)</item>')


def acquisition_metadata(path: Path) -> dict[str, str]:
    """The items of tag 65001 (first IFD carrying it), as raw strings."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        for page in tif.pages[:2]:
            tag = page.tags.get(65001)
            if tag is not None:
                value = tag.value if isinstance(tag.value, bytes) else str(tag.value).encode()
                return {k.decode(): v.decode() for k, v in _ITEM.findall(value)}
    return {}
