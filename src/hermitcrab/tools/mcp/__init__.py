"""The MCP client: servers' tools offered to the agent, and `hermitcrab mcp probe`.

Written on the official `mcp` SDK (its `Client`, transports and OAuth provider).
"""
