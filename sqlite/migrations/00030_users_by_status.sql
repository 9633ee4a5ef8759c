-- ix_users_account_status serves the administrator's listing of users by
-- status (GET /v1/admin/users?status=, `authd admin users list --status`),
-- newest first after a (created_at, id) cursor. SQLite keeps no
-- statistics, so on the status alone it read every user of the status and
-- sorted them for each page: BenchmarkUsersByStatus, 200,000 users, 1.1 s
-- for the first page of the 190,000 active ones (a probe at 187,000: 190
-- ms), 0.1 s for the 10,000 locked. With the creation time and the id
-- after the status, a page is read in order from the status's part of the
-- index. Its entries are longer: UpdateUser sets every column, and SQLite
-- rewrites the entry of each index whose columns an UPDATE sets (as it did
-- the status-only one). The name and the purpose are the seed's.

-- +goose Up
DROP INDEX ix_users_account_status;
CREATE INDEX ix_users_account_status ON users (account_status, created_at, id);

-- +goose Down
DROP INDEX ix_users_account_status;
CREATE INDEX ix_users_account_status ON users (account_status);
