-- Nothing changes on PostgreSQL: this migration keeps the two stores'
-- versions in step. SQLite's migration 30 redefines ix_users_account_status
-- as (account_status, created_at, id), since SQLite, which keeps no
-- statistics, read and sorted every user of a status for each page of the
-- administrator's listing. PostgreSQL's planner, with its
-- statistics, walks ix_users_created_at backward, filtering by status
-- (200,000 users: 0.1 ms a page of the 95 % active ones, 0.3-0.4 ms of
-- the 5 % locked, measured at stop 50), or for a rare status sorts its few
-- rows found through the seed's index.

-- +goose Up

-- +goose Down
