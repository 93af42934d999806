"""Acquisition simulator: what an EPU session or Tomography 5 tilt series writes, file by file.

`cryovault simulate epu|tomo` (cli.py) writes, at a chosen pace, the folders, file names and
XML/.mdoc structure of the real instruments (studied from the real files in the project's
fixtures; nothing is read from them at run time), with synthetic but consistent images and
movies, and a `ground_truth.jsonl` of everything simulated (truth.py reads it back).

- epu_run.py: the EPU visit (atlas, session, squares, holes, exposures) in EPU's order;
  epu_plan.py its geometry and ids; session_file.py, atlas_file.py, grid_square_file.py and
  microscope_image.py the EpuSession.dm, Atlas.dm, Metadata/GridSquare_<id>.dm and
  MicroscopeImage XML documents, built with datacontract.py (.NET DataContract XML);
  images.py the atlas / grid-square / foil-hole images.
- tomo_run.py: Tomography 5 tilt series (movies named as Tomography 5 names them, the .mdoc
  written when a series is finished: mdoc_file.py) of a 3D phantom (phantom.py).
- output.py: pacing, movies written in growing chunks, the truth log.

Python API: `simulate_epu(visit, EpuOptions(...), progress) -> EpuRunResult` and
`simulate_tomo(folder, TomoOptions(...), progress) -> TomoRunResult`.
"""
