"""Prometheus metrics at /metrics (behind the token): counted as events are committed and
read from the gateway's parts at scrape time, so an idle gateway does no work for them.
Every name starts with hermitcrab_."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hermitcrab.gateway.service import Gateway
    from hermitcrab.inference.router import Usage


class Tally:
    """What happened since start, counted as it is committed (cheap: a dict increment)."""

    def __init__(self) -> None:
        self.turns: Counter[tuple[str, str]] = Counter()  # (agent, outcome)
        self.tool_calls: Counter[tuple[str, str]] = Counter()  # (tool, ok | error)
        self.tokens: Counter[tuple[str, str]] = Counter()  # (model, prompt | completion)
        self.cost: Counter[str] = Counter()  # model -> USD
        self._agents: dict[str, str] = {}  # session -> agent, for its turn's outcome

    def event(self, event: dict[str, Any]) -> None:
        kind = event["kind"]
        data = event.get("data") or {}
        if kind == "turn.started":
            self._agents[event["session_id"]] = data.get("agent", "?")
        elif kind in ("reply", "turn.failed"):
            agent = self._agents.pop(event["session_id"], "?")
            self.turns[(agent, "ok" if kind == "reply" else "failed")] += 1
        elif kind == "tool.result":
            self.tool_calls[(str(data.get("name", "?")), "error" if data.get("error") else "ok")] += 1

    def usage(self, usage: Usage) -> None:
        self.tokens[(usage.model, "prompt")] += usage.prompt_tokens
        self.tokens[(usage.model, "completion")] += usage.completion_tokens
        self.cost[usage.model] += usage.cost_usd


def exposition(gw: Gateway) -> tuple[bytes, str]:
    """The metrics in Prometheus's text format, and its content type."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.exposition import CONTENT_TYPE_LATEST

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(gw))
    return generate_latest(registry), CONTENT_TYPE_LATEST


class _Collector:
    def __init__(self, gw: Gateway) -> None:
        self._gw = gw

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        gw, tally = self._gw, self._gw.tally
        network: dict[tuple[str, ...], float] = {}
        if gw.db is not None:
            network = {(o,): n for (action, o), n in gw.db.audit.tally.items() if action == "network"}
        counters: list[tuple[str, str, list[str], dict[Any, float]]] = [
            ("hermitcrab_turns", "Turns answered since start", ["agent", "outcome"], tally.turns),
            ("hermitcrab_tool_calls", "Tool calls since start", ["tool", "outcome"], tally.tool_calls),
            ("hermitcrab_egress_decisions", "Network decisions since start", ["outcome"], network),
            ("hermitcrab_tokens", "Model tokens since start", ["model", "kind"], tally.tokens),
            ("hermitcrab_cost_usd", "Model spend since start, US dollars", ["model"], tally.cost),
        ]
        for name, help_text, labels, counts in counters:
            family = CounterMetricFamily(name, help_text, labels=labels)
            for key, value in sorted(counts.items()):
                family.add_metric(list(key) if isinstance(key, tuple) else [key], value)
            yield family
        queue = GaugeMetricFamily("hermitcrab_model_queue_depth", "Model calls waiting", labels=["model"])
        for name, queued in sorted(gw.queued.items()):
            queue.add_metric([name], queued.queue.waiting())
        yield queue
        yield GaugeMetricFamily(
            "hermitcrab_approvals_pending",
            "Decisions waiting for a person",
            value=len(gw.approvals.pending()) if gw.approvals else 0,
        )
        yield GaugeMetricFamily(
            "hermitcrab_sandboxes_open",
            "Sandboxes running",
            value=len(gw.runtime.list()) if gw.runtime else 0,
        )
        yield GaugeMetricFamily(
            "hermitcrab_turns_running",
            "Sessions with a turn running",
            value=gw.runner.busy() if gw.runner else 0,
        )
        yield GaugeMetricFamily("hermitcrab_resident_memory_bytes", "The gateway's RSS", value=_rss())
        yield GaugeMetricFamily(
            "hermitcrab_scheduler_lag_seconds",
            "How late the last scheduled run started after it was due",
            value=gw.scheduler.lag_seconds if gw.scheduler else 0.0,
        )
        yield GaugeMetricFamily("hermitcrab_uptime_seconds", "Since the gateway started", value=gw.uptime())


def _rss() -> float:
    try:
        with open(f"/proc/{os.getpid()}/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0.0
