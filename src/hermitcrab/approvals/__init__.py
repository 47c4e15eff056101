"""Decisions held for a person: network requests and tool calls, in one inbox."""

from hermitcrab.approvals.inbox import Approval, ApprovalError, Approvals

__all__ = ["Approval", "ApprovalError", "Approvals"]
