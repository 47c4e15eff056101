"""Chat channels: inbound messages become session events through the agent's inbox; replies
and approval prompts go back out from the live feed. A stranger gets a pairing code and
nothing else until the owner approves it."""
