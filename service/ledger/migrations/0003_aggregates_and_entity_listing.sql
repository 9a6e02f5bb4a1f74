-- The aggregates each decision was scored with, and the per-card / per-terminal listing (issue 19).

-- Every aggregate of fraud_contract.schema.AGGREGATE_FIELDS as the model saw it (from the
-- request or the history store), one key each, null when absent (the model saw "unknown").
-- NULL: decisions recorded before this migration (or spooled by a version without it).
ALTER TABLE decisions ADD COLUMN aggregates jsonb;

-- GET /v1/decisions?card_hash= and ?terminal_id=: newest first, keyset paging on the same key
-- as the alert queue, so each page is an index range scan.
CREATE INDEX decisions_by_card
    ON decisions (card_hash, event_time DESC, transaction_id DESC, model_tag DESC);
CREATE INDEX decisions_by_terminal
    ON decisions (terminal_id, event_time DESC, transaction_id DESC, model_tag DESC);
