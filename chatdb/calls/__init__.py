"""The backend's calls on the chat tables: read from its code (``scan``), kept as facts in
a calls file (``model``), run against a database as PostgREST runs them (``check``)."""
