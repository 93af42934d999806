"""The workspace hierarchy: rules, templates, statuses and the element services."""
