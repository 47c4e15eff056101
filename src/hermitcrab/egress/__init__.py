"""The one door out of a sandbox: the egress proxy, approvals, and what they record."""
