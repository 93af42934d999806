from tests.licensing import licensor, other_licensor  # noqa: F401  (shared fixtures)
