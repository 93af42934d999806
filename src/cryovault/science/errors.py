"""The one exception science/ raises for bad input."""

from __future__ import annotations


class ScienceInputError(ValueError):
    """Input that cannot be processed: a missing or wrong pixel size, a gain reference that does
    not match the movie, a truncated file, NaNs... The message names the file (when there is one)
    and the problem, so that a person can act on it; the CLI prints it and exits with code 2."""

    def __init__(self, problem: str, path: object | None = None) -> None:
        self.problem = problem
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {problem}" if self.path else problem)
