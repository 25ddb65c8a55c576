"""The local throwaway PostgreSQL cluster: the server binaries, and the project's cluster in .chatdb/."""
