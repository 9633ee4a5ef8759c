-- Nothing changes on PostgreSQL: this migration keeps the two stores'
-- versions in step. SQLite's migration 29 adds erasures_pending, the
-- accounts whose security-log rows an erasure clears after its transaction
-- in batches, since one UPDATE of them in the transaction held SQLite's one
-- writer for seconds. On PostgreSQL that UPDATE locks the account's rows
-- alone and stops no other writer, but an account of 1.5 million rows
-- outlived clients' timeouts: migration 31 adds the table here too.

-- +goose Up

-- +goose Down
