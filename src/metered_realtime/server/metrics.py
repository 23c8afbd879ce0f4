"""Prometheus metrics, read from the hub's counters at scrape time (nothing on the hot path)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .app import Server
    from .broker.redis import RedisBroker

PREFIX = "metered_realtime_"


class _HubCollector(Collector):
    def __init__(self, server: Server) -> None:
        self._server = server

    def collect(self) -> Iterator[Metric]:
        hub = self._server.hub
        stats = hub.stats
        yield GaugeMetricFamily(PREFIX + "connections", "Open connections", len(hub.conns))
        yield GaugeMetricFamily(
            PREFIX + "apps_connected",
            "Apps with at least one open connection",
            sum(1 for app in hub.apps.values() if app.peers),
        )
        yield GaugeMetricFamily(
            PREFIX + "channels",
            "Channels with at least one subscriber",
            sum(len(app.channels) for app in hub.apps.values()),
        )
        yield GaugeMetricFamily(
            PREFIX + "subscriptions",
            "Subscriptions held by open connections",
            sum(len(conn.subs) for conn in hub.conns.values()),
        )
        yield GaugeMetricFamily(
            PREFIX + "draining", "1 while the server drains", int(self._server.draining)
        )
        yield CounterMetricFamily(
            PREFIX + "connections", "Connections admitted", stats.connections_total
        )
        yield CounterMetricFamily(
            PREFIX + "frames_received", "Client frames handled", stats.frames_received
        )
        yield CounterMetricFamily(
            PREFIX + "deliveries", "message and direct frames delivered", stats.deliveries
        )
        closes = CounterMetricFamily(
            PREFIX + "server_closes", "Connections closed by the server", labels=["code"]
        )
        for code, n in sorted(stats.closes.items()):
            closes.add_metric([str(code)], n)
        yield closes
        refusals = CounterMetricFamily(
            PREFIX + "refusals", "Connections refused before welcome", labels=["code"]
        )
        for code, n in sorted(stats.refusals.items()):
            refusals.add_metric([str(code)], n)
        yield refusals
        broker = self._server.broker
        if broker is not None:
            yield from _broker_metrics(broker)


def _broker_metrics(broker: RedisBroker) -> Iterator[Metric]:
    stats = broker.node.stats
    yield GaugeMetricFamily(
        PREFIX + "broker_connected", "1 while Redis is reachable", int(broker.connected)
    )
    yield GaugeMetricFamily(
        PREFIX + "broker_nodes", "Nodes of the cluster this node sees alive", len(broker.node.live)
    )
    yield CounterMetricFamily(
        PREFIX + "broker_published", "Payloads published to the cluster", stats.published
    )
    yield CounterMetricFamily(
        PREFIX + "broker_received", "Payloads received from the cluster", stats.received
    )
    yield CounterMetricFamily(
        PREFIX + "broker_lost",
        "Payloads not published because Redis was unreachable or the queue was full",
        stats.lost,
    )
    yield CounterMetricFamily(
        PREFIX + "broker_reconnects", "Reconnections to Redis after a loss", stats.reconnects
    )
    yield CounterMetricFamily(
        PREFIX + "broker_directs_failed",
        "Sends to another node's peer that timed out or found the node gone",
        stats.dropped_directs,
    )
    yield GaugeMetricFamily(
        PREFIX + "broker_lag_seconds",
        "Time a payload this node published took to come back to it through Redis",
        stats.lag,
    )


class Metrics:
    """One registry per server, so several servers in one process keep separate figures."""

    def __init__(self, server: Server) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_HubCollector(server))

    def render(self) -> bytes:
        """The Prometheus text exposition format."""
        return generate_latest(self.registry)
