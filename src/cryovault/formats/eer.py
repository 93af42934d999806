"""EER (Electron Event Representation) movies: the encoding, and a writer of conformant files.

An EER file (Thermo Fisher Falcon 4/4i/C) is a little-endian BigTIFF with one IFD per frame. Each
frame is one strip of a run-length-coded bit stream, read least-significant bit first: a code of
`rle_bits` bits gives the number of empty pixels before the next event; the largest code
(2**rle_bits - 1) means "that many empty pixels and no event yet"; any other code is followed by
`horz_bits + vert_bits` sub-pixel bits of the event. Compression 65000 is 8-bit codes with 2+2
sub-pixel bits, 65001 7-bit codes with 2+2 bits (Falcon 4/4i), 65002 reads the three widths from
tags 65007-65009 (Falcon C: 7 and 1+1). Tag 65001 on the first IFD holds the acquisition metadata
as `<metadata><item name=".." unit="..">value</item>...</metadata>`, tag 65002 each frame's.

Reading is tifffile's (it decodes through `imagecodecs.eer_decode`). imagecodecs has no EER
encoder (`eer_encode` raises NotImplementedError) and tifffile cannot write bilevel images with a
custom compression, so `write_eer` writes the container itself. Its files read back with tifffile
and imagecodecs exactly; they are used by the tests, the benchmark and demo data.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import numpy as np

#: compression code → (rle bits, horizontal sub-pixel bits, vertical sub-pixel bits)
EER_CODECS: dict[int, tuple[int, int, int]] = {65000: (8, 2, 2), 65001: (7, 2, 2)}
EER_COMPRESSIONS = frozenset({65000, 65001, 65002})


def describe_compression(compression: int, rle_bits: int, horz_bits: int, vert_bits: int) -> str:
    """A label for the info panel, e.g. "65001: 7-bit run lengths, 2+2 sub-pixel bits"."""
    return f"{compression}: {rle_bits}-bit run lengths, {horz_bits}+{vert_bits} sub-pixel bits"


def encode_frame(positions: np.ndarray, n_pixels: int, *, subpixels: np.ndarray | None = None,
                 rle_bits: int = 7, subpixel_bits: int = 4) -> bytes:
    """Encode one EER frame: `positions` are the flat pixel indices (row * width + column) of
    its electron events, strictly increasing and < `n_pixels`; `subpixels` the events'
    sub-pixel codes (default 0; masked to `subpixel_bits`). The stream is padded to an even
    number of bytes, as the decoder reads 16-bit words, and ends with a code that reaches the
    last pixel."""
    positions = np.asarray(positions, dtype=np.int64).ravel()
    n = positions.size
    if n and (positions[0] < 0 or positions[-1] >= n_pixels or np.any(np.diff(positions) <= 0)):
        raise ValueError("event positions must be strictly increasing and inside the frame")
    max_code = (1 << rle_bits) - 1
    code_bits = rle_bits + subpixel_bits
    previous = np.empty(n, dtype=np.int64)
    previous[:1] = -1
    previous[1:] = positions[:-1]
    gaps = positions - previous - 1
    escapes = gaps // max_code
    sub = np.zeros(n, np.int64) if subpixels is None else np.asarray(subpixels, np.int64)
    sub = sub & ((1 << subpixel_bits) - 1)
    terminal = (gaps - escapes * max_code) | (sub << rle_bits)
    ends = np.cumsum(escapes * rle_bits + code_bits)
    total = int(ends[-1]) if n else 0
    remaining = n_pixels - (int(positions[-1]) + 1 if n else 0)
    tail_escapes, tail_code = divmod(remaining, max_code)
    n_bits = total + (tail_escapes + 1) * rle_bits
    n_bits += (-n_bits) % 16
    # Escape codes are all ones: mark [end of previous event, start of this event's code) with 1s.
    starts = ends - code_bits
    marks = np.zeros(n_bits + 1, dtype=np.int32)
    np.add.at(marks, np.concatenate(([0], ends[:-1])) if n else np.zeros(0, np.int64), 1)
    np.add.at(marks, starts, -1)
    tail_start = total + tail_escapes * rle_bits
    marks[total] += 1
    marks[tail_start] -= 1
    bits = (np.cumsum(marks[:-1]) > 0).astype(np.uint8)
    if n:
        shifts = np.arange(code_bits)
        bits[starts[:, None] + shifts] = (terminal[:, None] >> shifts) & 1
    bits[tail_start:tail_start + rle_bits] = (tail_code >> np.arange(rle_bits)) & 1
    return np.packbits(bits, bitorder="little").tobytes()


def metadata_xml(items: Iterable[tuple[str, object, str | None]]) -> bytes:
    """The XML of an EER metadata tag from (name, value, unit or None) items."""
    parts = ["<metadata>"]
    for name, value, unit in items:
        unit_attr = f" unit={quoteattr(unit)}" if unit else ""
        parts.append(f"<item name={quoteattr(name)}{unit_attr}>{escape(str(value))}</item>")
    parts.append("</metadata>")
    return "".join(parts).encode()


@dataclass(frozen=True)
class EerFrame:
    """One frame to write: flat event positions and their sub-pixel codes (or None)."""

    positions: np.ndarray
    subpixels: np.ndarray | None = None


def write_eer(path: Path, frames: Sequence[EerFrame] | Iterable[EerFrame], *, width: int,
              height: int, n_frames: int, compression: int = 65001,
              acquisition_metadata: Sequence[tuple[str, object, str | None]] = (),
              frame_dose: float | None = None, integrated: np.ndarray | None = None,
              rle_bits: int = 7, horz_bits: int = 1, vert_bits: int = 1) -> None:
    """Write an EER movie of `n_frames` frames of `width` × `height` pixels.

    `compression` 65000/65001 fix the code widths; 65002 writes `rle_bits`, `horz_bits` and
    `vert_bits` into tags 65007-65009. `acquisition_metadata` items go to tag 65001 on the first
    IFD (numberOfFrames, sensorImageWidth/Height are added when missing); each frame gets a
    65002 tag with its frameID (and dose when `frame_dose` is given). `integrated`, a uint16
    height × width image, is written first as an uncompressed "final image" IFD, as cameras do.
    IFDs are written before their strip, so a file cut short loses whole frames.
    """
    if compression in EER_CODECS:
        rle_bits, horz_bits, vert_bits = EER_CODECS[compression]
    elif compression != 65002:
        raise ValueError(f"not an EER compression: {compression}")
    subpixel_bits = horz_bits + vert_bits
    items = list(acquisition_metadata)
    names = {name for name, _, _ in items}
    for name, value, unit in (("numberOfFrames", n_frames, None),
                              ("sensorImageWidth", width, "pixels"),
                              ("sensorImageHeight", height, "pixels")):
        if name not in names:
            items.append((name, value, unit))
    acquisition = metadata_xml(items)
    n_pixels = width * height
    with path.open("wb") as fh:
        fh.write(b"II" + struct.pack("<HHHQ", 43, 8, 0, 16))
        pending_next = 8  # where the pointer to the next IFD goes

        def write_ifd(tags: list[tuple[int, int, int, bytes]], strip: bytes) -> None:
            nonlocal pending_next
            tags = sorted(tags)
            ifd_offset = fh.tell()
            ifd_size = 8 + 20 * len(tags) + 8
            data_offset = ifd_offset + ifd_size
            blobs: list[bytes] = []
            entries: list[bytes] = []
            for code, dtype, count, payload in tags:
                if code == 273:
                    payload = struct.pack("<Q", 0)  # patched below
                if len(payload) <= 8:
                    entries.append(struct.pack("<HHQ", code, dtype, count)
                                   + payload.ljust(8, b"\0"))
                else:
                    offset = data_offset + sum(len(b) for b in blobs)
                    entries.append(struct.pack("<HHQQ", code, dtype, count, offset))
                    blobs.append(payload + b"\0" * (len(payload) % 2))
            strip_offset = data_offset + sum(len(b) for b in blobs)
            entries = [
                e if struct.unpack_from("<H", e)[0] != 273
                else e[:12] + struct.pack("<Q", strip_offset) for e in entries
            ]
            fh.seek(pending_next)
            fh.write(struct.pack("<Q", ifd_offset))
            fh.seek(ifd_offset)
            fh.write(struct.pack("<Q", len(tags)) + b"".join(entries))
            pending_next = fh.tell()
            fh.write(struct.pack("<Q", 0))
            fh.write(b"".join(blobs))
            fh.write(strip)
            if fh.tell() % 2:
                fh.write(b"\0")

        def base_tags(bits: int, comp: int, nbytes: int) -> list[tuple[int, int, int, bytes]]:
            return [
                (256, 4, 1, struct.pack("<I", width)),
                (257, 4, 1, struct.pack("<I", height)),
                (258, 3, 1, struct.pack("<H", bits)),
                (259, 3, 1, struct.pack("<H", comp)),
                (262, 3, 1, struct.pack("<H", 1)),
                (273, 16, 1, b""),
                (277, 3, 1, struct.pack("<H", 1)),
                (278, 4, 1, struct.pack("<I", height)),
                (279, 16, 1, struct.pack("<Q", nbytes)),
            ]

        first = True
        if integrated is not None:
            image = np.ascontiguousarray(integrated, dtype="<u2")
            if image.shape != (height, width):
                raise ValueError("the integrated image must be height × width")
            strip = image.tobytes()
            tags = base_tags(16, 1, len(strip)) + [(65001, 7, len(acquisition), acquisition)]
            write_ifd(tags, strip)
            first = False
        written = 0
        for index, frame in enumerate(frames):
            strip = encode_frame(frame.positions, n_pixels, subpixels=frame.subpixels,
                                 rle_bits=rle_bits, subpixel_bits=subpixel_bits)
            frame_items: list[tuple[str, object, str | None]] = [("frameID", index, None)]
            if frame_dose is not None:
                frame_items.append(("dose", frame_dose, "e/pixel"))
            frame_xml = metadata_xml(frame_items)
            tags = base_tags(1, compression, len(strip)) + [(65002, 7, len(frame_xml), frame_xml)]
            if first:
                tags.append((65001, 7, len(acquisition), acquisition))
                first = False
            if compression == 65002:
                tags += [(65007, 3, 1, struct.pack("<H", rle_bits)),
                         (65008, 3, 1, struct.pack("<H", horz_bits)),
                         (65009, 3, 1, struct.pack("<H", vert_bits))]
            write_ifd(tags, strip)
            written += 1
        if written != n_frames:
            raise ValueError(f"{written} frames were given for n_frames={n_frames}")


def random_events(rng: np.random.Generator, width: int, height: int,
                  events_per_frame: int) -> EerFrame:
    """A frame of `events_per_frame` events at distinct random pixels (for tests and demos)."""
    n_pixels = width * height
    count = min(events_per_frame, n_pixels)
    if count * 4 < n_pixels:
        positions = np.unique(rng.integers(0, n_pixels, size=count, dtype=np.int64))
    else:
        positions = np.sort(rng.choice(n_pixels, size=count, replace=False))
    return EerFrame(positions=positions,
                    subpixels=rng.integers(0, 16, size=positions.size, dtype=np.int64))
