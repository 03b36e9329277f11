"""Prometheus metrics of one bot process: queue wait, model latency, failures, cost.

Each bot gets its own registry (tests run several bots in one process); /metrics serves it.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Model latency: 1K ≈ 15–20 s, 2K ≈ 1 min, 4K can take minutes.
LATENCY_BUCKETS = (1, 2.5, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 480)
WAIT_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.jobs = Gauge(
            "nanobanana_jobs", "Jobs by state", ["state"], registry=self.registry
        )
        self.queue_wait = Histogram(
            "nanobanana_queue_wait_seconds",
            "Time from a request being queued to its generation starting",
            buckets=WAIT_BUCKETS,
            registry=self.registry,
        )
        self.model_latency = Histogram(
            "nanobanana_model_latency_seconds",
            "Time Gemini took to answer, retries included",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.generations = Counter(
            "nanobanana_generations_total",
            "Finished generations by outcome",
            ["model", "outcome"],
            registry=self.registry,
        )
        self.failures = Counter(
            "nanobanana_failures_total", "Failures by kind", ["kind"], registry=self.registry
        )
        self.cost = Counter(
            "nanobanana_cost_dollars_total",
            "Estimated cost of successful generations",
            ["model"],
            registry=self.registry,
        )

    def set_job_counts(self, counts: dict[str, int]) -> None:
        for state, n in counts.items():
            self.jobs.labels(state=state).set(n)

    def render(self) -> bytes:
        return generate_latest(self.registry)
