"""The transaction contract and feature computation, shared by training, service, UI and load tests.

There is exactly one definition of the request schema (:mod:`fraud_contract.schema`), of the
model features (:mod:`fraud_contract.features`) and of the model artifact's metadata
(:mod:`fraud_contract.artifact`). Nothing else in the repository may redefine them.
"""

from fraud_contract.features import (
    BASELINE_FEATURES,
    INPUT_COLUMNS,
    MODEL_FEATURES,
    columns_from_frame,
    columns_from_records,
    compute_features,
)
from fraud_contract.schema import (
    AGGREGATE_FIELDS,
    REQUIRED_FIELDS,
    TRANSACTION_FIELDS,
    Transaction,
    is_whole_number,
    numeric_bounds,
)

__all__ = [
    "AGGREGATE_FIELDS",
    "BASELINE_FEATURES",
    "INPUT_COLUMNS",
    "MODEL_FEATURES",
    "REQUIRED_FIELDS",
    "TRANSACTION_FIELDS",
    "Transaction",
    "columns_from_frame",
    "columns_from_records",
    "compute_features",
    "is_whole_number",
    "numeric_bounds",
]
