"""HTTP layer: the JSON API and the portal pages."""
