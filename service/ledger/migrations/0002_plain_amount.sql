-- What a fraud label needs to update the terminal's history in the store (issue 18).

-- Whether the amount was at most 2x the card's reference mean (fraud_contract.windows.is_plain)
-- with the aggregates the decision was scored with: a fraud with a plain amount is counted by
-- terminal_fraud_run_nb_plain. The ledger keeps only the card's keyed hash, so this bit is how
-- a label finds it without the card. NULL: scored without a reference amount (decisions from
-- before this migration, or a store outage without the caller sending one).
ALTER TABLE decisions ADD COLUMN plain_amount boolean;
