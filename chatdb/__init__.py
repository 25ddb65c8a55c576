"""Runtime pieces of the chat-schema migrations: URL handling, the PostgREST reload
hook, the local throwaway cluster and the ``chatdb`` command."""
