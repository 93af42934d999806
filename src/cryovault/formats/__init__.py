"""Readers of the field's file formats for the portal's file viewer, free of the platform.

This package imports nothing else from cryovault (no database, no web layer): the viewer's routes
call it with a local path and a cache directory, and it can be tested and benchmarked alone.

- `filetypes`: which viewer shows a file (`viewer_kind`) and the media type to serve it with.
- `images`: MRC / TIFF / EER / PNG / JPEG headers (`probe_image` → `ImageInfo`) and one plane as
  float32 (`read_plane`); every damaged, truncated or mis-typed file raises `UnreadableImage`.
- `previews`: auto-contrast 8-bit previews, thumbnails and a Deep Zoom tile pyramid cached on
  disk (`build_preview`, `tile_png`).
- `tables`: STAR / CSV / TSV tables, text and JSON previews (`read_table_preview`,
  `read_text_preview`, `read_json_preview`); damaged input raises `UnreadableTable`.
- `eer`: EER container helpers (frame count, metadata) and a writer of spec-conformant EER movies
  from electron events, for tests, benchmarks and demo data.
"""
