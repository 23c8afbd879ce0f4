"""Several cluster nodes in one process, their payloads moved in one global order.

The identity of the broker seam: what works over Redis works here, with no I/O, so the hub's
property tests can run a cluster of hubs and check every rule across nodes.
"""

from __future__ import annotations

from collections import deque

from ..hub import Hub
from .node import Action, ClusterNode, Listen


class MemoryBroker:
    """A pub/sub bus for ``ClusterNode``s of one process; ``pump`` delivers what is queued."""

    def __init__(self) -> None:
        self.nodes: dict[str, ClusterNode] = {}
        self._queue: deque[tuple[ClusterNode, Action]] = deque()
        self._listeners: dict[str, list[ClusterNode]] = {}

    def join(self, hub: Hub, node_id: str, now: float) -> ClusterNode:
        """Make ``hub`` a node of this cluster."""
        node = ClusterNode(hub, node_id, lambda action: self._queue.append((node, action)))
        for name in node.start():
            self._listeners.setdefault(name, []).append(node)
        self.nodes[node_id] = node
        self._announce(now)
        return node

    def kill(self, node_id: str, now: float) -> None:
        """A node stops without a word; the others notice it is gone."""
        node = self.nodes.pop(node_id)
        for listeners in self._listeners.values():
            if node in listeners:
                listeners.remove(node)
        self._queue = deque(item for item in self._queue if item[0] is not node)
        self._announce(now)

    def _announce(self, now: float) -> None:
        live = set(self.nodes)
        for node in self.nodes.values():
            node.set_live(live, now)

    def pump(self, now: float, limit: int = 1_000_000) -> int:
        """Deliver queued payloads (and whatever they cause) in order; returns how many."""
        done = 0
        queue = self._queue
        while queue and done < limit:
            origin, action = queue.popleft()
            done += 1
            if origin.node not in self.nodes:
                continue
            if isinstance(action, Listen):
                listeners = self._listeners.setdefault(action.name, [])
                if action.on:
                    if origin not in listeners:
                        listeners.append(origin)
                    origin.listening(action.name, now)
                else:
                    if origin in listeners:
                        listeners.remove(origin)
                    origin.unlistened(action.name)
                continue
            for node in list(self._listeners.get(action.name, ())):
                node.receive(action.name, action.payload, now)
        return done

    @property
    def idle(self) -> bool:
        """True when nothing is queued."""
        return not self._queue
