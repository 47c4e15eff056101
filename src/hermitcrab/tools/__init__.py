"""The tools the agent may call. Each declares its schema and its risk; every one that
touches the machine runs through the sandbox runtime."""
