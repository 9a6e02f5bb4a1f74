"""Decision ledger and labels in PostgreSQL (see docs/ledger.md).

Decisions go to a local write-ahead spool on the scoring thread and a writer thread copies
them to PostgreSQL in batches, exactly once; labels are stored as events beside them.
"""

from service.ledger.errors import LedgerUnavailable
from service.ledger.label_files import parse_label_file
from service.ledger.labels import LabelIn, parse_labels
from service.ledger.ledger import Ledger
from service.ledger.migrate import migrate
from service.ledger.model import (
    AlertPage,
    Decision,
    DecisionView,
    Label,
    LabelOutcome,
    LedgerStats,
    StoredDecision,
)
from service.ledger.settings import LedgerSettings

__all__ = [
    "AlertPage",
    "Decision",
    "DecisionView",
    "Label",
    "LabelIn",
    "LabelOutcome",
    "Ledger",
    "LedgerSettings",
    "LedgerStats",
    "LedgerUnavailable",
    "StoredDecision",
    "migrate",
    "parse_label_file",
    "parse_labels",
]
