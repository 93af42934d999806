"""Tomography acquisition (Tomography 5, SerialEM): tilt-series .mdoc parser and file naming."""
