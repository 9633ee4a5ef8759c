-- Nothing changes on SQLite: this migration keeps the two stores' versions
-- in step. PostgreSQL's migration 31 adds erasures_pending, which SQLite's
-- migration 29 added: an erasure's transaction names the account there and
-- its security-log rows are cleared after the commit.

-- +goose Up

-- +goose Down
