"""Running migrations against a live database: connection, lock, timeouts, online paths, guards, reload."""
