-- ix_users_created_at serves the administrator's listing of users, newest
-- first, a page at a time after a (created_at, id) cursor, which otherwise
-- reads and sorts the whole table (as on PostgreSQL, migration 26 there).

-- +goose Up
CREATE INDEX ix_users_created_at ON users (created_at, id);

-- +goose Down
DROP INDEX ix_users_created_at;
