-- Nothing changes on PostgreSQL: this migration keeps the two stores'
-- versions in step. SQLite's migration 29 adds erasures_pending, the
-- accounts whose security-log rows an erasure clears after its transaction
-- in batches, since one UPDATE of them in the transaction held SQLite's one
-- writer for seconds. On PostgreSQL that UPDATE locks the account's rows
-- alone and stops no other writer: the erasure clears them in its
-- transaction, as before.

-- +goose Up

-- +goose Down
