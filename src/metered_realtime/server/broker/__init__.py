"""Between the hub and the other nodes of a cluster.

``node.ClusterNode`` is the sans-I/O part (the hub's ``Bus`` and the handling of what other
nodes say); ``memory.MemoryBroker`` moves its payloads between nodes of one process and
``redis.RedisBroker`` over Redis (or Valkey) pub/sub. A server with no broker configured
runs with no bus at all: the hub then routes locally and nothing of this package runs.
"""

from .memory import MemoryBroker
from .node import Action, BrokerStats, ClusterNode, Listen, Publish

__all__ = ["Action", "BrokerStats", "ClusterNode", "Listen", "MemoryBroker", "Publish"]
