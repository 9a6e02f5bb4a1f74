"""The ledger's HTTP-shaped errors (rendered by the service like every other ApiError)."""

from __future__ import annotations

from service.errors import ApiError


class LedgerUnavailable(ApiError):  # noqa: N818 - named like service.errors
    """503: PostgreSQL cannot be reached for a query (recording decisions never raises this)."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            503,
            "ledger_unavailable",
            "The decision ledger is unavailable; retry shortly.",
            [{"field": "ledger", "reason": detail[:200]}],
            reason="ledger_unavailable",
            headers={"retry-after": "5"},
        )
