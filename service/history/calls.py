"""Connections to Valkey and the script calls: one round trip per batch of calls.

A call is ``EVALSHA`` of one of :mod:`service.history.scripts`; several calls (cluster mode:
one per slot) go out as one pipeline. A server that lost its scripts (restart, failover)
answers ``NOSCRIPT``: the scripts are loaded and the calls sent once more.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import valkey
from valkey.backoff import NoBackoff
from valkey.exceptions import NoScriptError, ValkeyError
from valkey.retry import Retry

from service.history import scripts
from service.history.codec import CARD

if TYPE_CHECKING:
    from service.history.model import HistorySettings
    from service.history.scripts import Script

#: Errors that mean "the store did not answer properly": the caller scores without history.
STORE_ERRORS: Final = (ValkeyError, OSError)


def connect(url: str, config: HistorySettings, timeout: float) -> Any:
    """A lazily connecting client (nothing is contacted before the first command)."""
    common: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": min(timeout, 10 * config.timeout),
        # One immediate retry on a broken connection (a pooled socket from before a store
        # restart), none on timeouts: a slow store must fail fast.
        "retry": Retry(NoBackoff(), 1, supported_errors=(valkey.ConnectionError,)),
        "retry_on_timeout": False,
    }
    if config.cluster:
        return valkey.ValkeyCluster.from_url(url, cluster_error_retry_attempts=1, **common)
    return valkey.Valkey.from_url(url, health_check_interval=0, **common)


def load_scripts(client: Any) -> None:
    """Load every script on the server(s) the client talks to."""
    for script in scripts.ALL_SCRIPTS:
        client.script_load(script.source)


def evalsha_many(
    client: Any,
    script: Script,
    calls: Sequence[tuple[Sequence[Any], Sequence[Any]]],
    *,
    cluster: bool,
) -> list[Any]:
    """Run ``script`` once per (keys, args) in one round trip; one reply per call."""
    for attempt in (0, 1):
        try:
            if len(calls) == 1 and not cluster:
                keys, args = calls[0]
                return [client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)]
            pipe = client.pipeline(transaction=False)
            for keys, args in calls:
                pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
            replies = pipe.execute(raise_on_error=False)
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
            return list(replies)
        except NoScriptError:
            if attempt:
                raise
            load_scripts(client)
    raise AssertionError("unreachable")


def merge(client: Any, settings: HistorySettings, items: Sequence[tuple[str, int, bytes]]) -> None:
    """Merge pre-built record blobs (key, kind, records) into histories, one pipeline."""
    for attempt in (0, 1):
        pipe = client.pipeline(transaction=False)
        for key, kind, blob in items:
            keep = settings.card_keep if kind == CARD else settings.terminal_keep
            ttl = (settings.card_ttl_s if kind == CARD else settings.terminal_ttl_s) * 1000
            pipe.execute_command(
                "EVALSHA", scripts.MERGE.sha, 1, key, str(kind), blob, str(keep), str(ttl)
            )
        replies = pipe.execute(raise_on_error=False)
        if attempt == 0 and any(isinstance(r, NoScriptError) for r in replies):
            load_scripts(client)
            continue
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return
