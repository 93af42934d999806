"""Database layer: engine, sessions, models and migrations."""
