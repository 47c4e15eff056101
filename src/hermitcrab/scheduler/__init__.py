"""The scheduler: durable jobs (cron, every N, once at a time, heartbeats) that submit turns,
on a clock tests can drive."""

from hermitcrab.scheduler.clock import Clock, ManualClock, SimulatedClock, SystemClock
from hermitcrab.scheduler.runner import Scheduler

__all__ = ["Clock", "ManualClock", "Scheduler", "SimulatedClock", "SystemClock"]
