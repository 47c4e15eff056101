"""The `hermitcrab` command: a thin skin over the library and the gateway's API."""
