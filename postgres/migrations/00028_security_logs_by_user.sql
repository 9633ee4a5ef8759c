-- Nothing changes on PostgreSQL: this migration keeps the two stores'
-- versions in step. SQLite's migration 28 redefines ix_security_logs_user_id
-- as (user_id, "timestamp", id), since SQLite, which keeps no statistics,
-- read and sorted every row of a user for each page of that user's log.
-- PostgreSQL's planner, with its statistics, reads a busy user's rows
-- walking ix_security_logs_timestamp back and a quiet user's through the
-- seed's one-column index and sorts the few; the composite index would
-- write a page per user on every audit insert, where the deduplicated
-- one-column index writes a few (WAL +80 %, measured at stop 48).

-- +goose Up

-- +goose Down
