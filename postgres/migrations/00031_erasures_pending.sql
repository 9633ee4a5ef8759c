-- An erasure clears the IP address, user agent and device description from
-- every security-log row of the account (SPEC 6.8). In its transaction one
-- UPDATE did it, which stopped no other writer but took its time: a probe
-- (stop 51) measured 10-11 s for an account of 500,000 rows and 28.5 s for
-- one of 1,500,000, at the server's 30 s write timeout; past a client's
-- timeout the request ended, the transaction rolled back, and such an
-- account could not be erased at all. The transaction now records the
-- account here, as SQLite's has since migration 29; the rows are cleared
-- after it commits (Store.FinishErasure), within the erasure's time budget
-- before it answers, and the next retention run, at start and every hour,
-- finishes what that budget cut short. Rows logged after the erasure keep
-- no client already.

-- +goose Up
CREATE TABLE erasures_pending (
    user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE
);

-- +goose Down
UPDATE security_logs SET ip_address = NULL, user_agent = NULL,
    additional_context = additional_context - 'device_info'
    WHERE user_id IN (SELECT user_id FROM erasures_pending);
DROP TABLE erasures_pending;
