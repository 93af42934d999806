"""cryovault: open data management and workflow orchestration for cryo-EM facilities."""

__version__ = "0.1.0"
