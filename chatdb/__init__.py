"""Runtime pieces of the chat-schema migrations, grouped by job.

- ``chatdb.deploy``: running migrations against a live database (the connection, the
  migration lock, timeouts, the online paths for large tables, the guards, the
  PostgREST reload);
- ``chatdb.inspect``: reading a database without changing it (``chatdb access``,
  ``chatdb drift``, the live catalog);
- ``chatdb.schema``: changing the schema (what autogenerate compares and writes);
- ``chatdb.revisions``: helpers that revision files import (prerequisites, lint notes);
- ``chatdb.local``: the local throwaway PostgreSQL cluster;
- ``chatdb.cli``, ``chatdb.urls``, ``chatdb.failures``, ``chatdb.project``: the
  ``chatdb`` command and what every job shares.
"""
