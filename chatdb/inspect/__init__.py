"""Reading a database without changing it: the live catalog, `chatdb access`, `chatdb drift`."""
