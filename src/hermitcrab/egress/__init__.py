"""The one door out of a sandbox: the egress proxy, approvals, and what they record."""

# Set by the proxy (and only by it: it drops any the sandbox sends) on each call through
# inference.local, so that the gateway takes that sandbox's agent's model route.
SANDBOX_HEADER = "X-HermitCrab-Sandbox"
