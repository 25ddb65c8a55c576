"""Changing the schema: what autogenerate compares, and how it writes new revisions."""
