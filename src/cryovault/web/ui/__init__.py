"""Portal pages (server-rendered)."""
