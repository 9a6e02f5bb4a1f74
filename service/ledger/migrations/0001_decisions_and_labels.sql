-- The decision ledger and the label events. Applied once by service.ledger.migrate.

-- One row per decision the service answered, per model that scored it.
CREATE TABLE decisions (
    transaction_id text NOT NULL,
    -- The transaction's own time as the caller sent it (no time zone conversion).
    event_time timestamp NOT NULL,
    -- Keyed hash (HMAC) of the card id, computed by the caller: the raw id never gets here.
    card_hash text NOT NULL,
    terminal_id text NOT NULL,
    amount double precision NOT NULL,
    probability double precision NOT NULL CHECK (probability BETWEEN 0 AND 1),
    is_fraud boolean NOT NULL,
    risk_band text NOT NULL,
    threshold double precision NOT NULL,
    model_tag text NOT NULL,
    -- TreeSHAP reasons when they were computed for this decision, else NULL.
    reasons jsonb,
    request_id text,
    history_used boolean NOT NULL,
    -- When the service answered (set when the decision entered the spool).
    recorded_at timestamptz NOT NULL,
    -- When the writer committed it to PostgreSQL.
    stored_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT decisions_once UNIQUE (transaction_id, model_tag)
);

-- The analyst queue: flagged decisions, newest first.
CREATE INDEX decisions_alerts ON decisions (event_time DESC, transaction_id DESC, model_tag DESC)
    WHERE is_fraud;
-- Retention deletes by answer time.
CREATE INDEX decisions_recorded_at ON decisions (recorded_at);

-- Labels are events: never updated, never overwritten; the latest reported one wins.
CREATE TABLE label_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transaction_id text NOT NULL,
    label text NOT NULL CHECK (label IN ('fraud', 'genuine')),
    reported_at timestamptz NOT NULL,
    source text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    status text NOT NULL
        CHECK (status IN ('new', 'duplicate', 'contradicting', 'unknown_transaction'))
);

CREATE INDEX label_events_by_transaction
    ON label_events (transaction_id, reported_at DESC, id DESC);
CREATE INDEX label_events_received_at ON label_events (received_at);

-- What training reads: each transaction's latest label (by reported time, then arrival).
CREATE VIEW latest_labels AS
    SELECT DISTINCT ON (transaction_id)
        transaction_id, label, reported_at, source, received_at
    FROM label_events
    ORDER BY transaction_id, reported_at DESC, id DESC;
