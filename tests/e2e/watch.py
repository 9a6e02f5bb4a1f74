"""A background watch on Kubernetes objects, for tests that must not miss a short-lived state."""

from __future__ import annotations

import threading
from typing import Any

from kubernetes.client.rest import ApiException
from kubernetes.dynamic.resource import Resource


class ResourceWatch:
    """Runs ``resource.watch(**selector)`` on a thread from ``resource_version`` on.

    Subclasses handle each event in :meth:`on_event`; an event that returns ``False`` (or an API
    error) ends the watch with the reason in :attr:`errors`. Watches are re-opened every five
    seconds from the last resource version seen, so :meth:`stop` returns promptly.
    """

    def __init__(self, resource: Resource, namespace: str, resource_version: str, **selector: str):
        self._resource, self._namespace, self._selector = resource, namespace, selector
        self._resource_version = resource_version
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def start(self) -> None:
        """Begin watching (call once the subclass has set its initial state)."""
        self._thread.start()

    def on_event(self, event_type: str, obj: dict[str, Any]) -> bool:
        """Record one event; return ``False`` to stop watching (after appending to errors)."""
        raise NotImplementedError

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                for event in self._resource.watch(
                    namespace=self._namespace,
                    resource_version=self._resource_version,
                    timeout=5,
                    **self._selector,
                ):
                    obj = event["raw_object"]
                    if event["type"] in {"ADDED", "MODIFIED", "DELETED"}:
                        self._resource_version = obj["metadata"]["resourceVersion"]
                    if not self.on_event(event["type"], obj):
                        return
            except ApiException as exc:
                self.errors.append(repr(exc))
                return

    def stop(self) -> None:
        """Stop watching (returns within the watch's 5-second window)."""
        self._stop.set()
        self._thread.join(timeout=15)
