-- An erasure clears the IP address, user agent and device description from
-- every security-log row of the account (SPEC 6.8). In its transaction,
-- one UPDATE held SQLite's one writer for all of an account's rows: a probe
-- saw every login, refresh and registration wait 3.6 s behind an account
-- of 80,000 rows and 8.6 s behind one of 542,000, and past the lane's 10 s
-- they are refused (503). The transaction now records the account here
-- instead; the rows are cleared after it commits, in short batches between
-- the other writes (Store.FinishErasure), before the erasure answers. A
-- row named here whose clearing stopped (a crash, a stop, the erasure's
-- time budget) is finished by the next retention run, at start and every
-- hour. Rows logged after the erasure keep no client already
-- (CreateSecurityLog). PostgreSQL's migration 31 adds the same table.

-- +goose Up
CREATE TABLE erasures_pending (
    user_id TEXT PRIMARY KEY NOT NULL REFERENCES users (id) ON DELETE CASCADE
);

-- +goose Down
UPDATE security_logs SET ip_address = NULL, user_agent = NULL,
    additional_context = json_remove(additional_context, '$.device_info')
    WHERE user_id IN (SELECT user_id FROM erasures_pending);
DROP TABLE erasures_pending;
