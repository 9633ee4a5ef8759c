-- ix_security_logs_user_id serves the listings of one user's security log
-- (GET /v1/users/me/security-log, the administrator's ?user_id=, `authd
-- admin logs --user`, the export), newest first after a ("timestamp", id)
-- cursor. SQLite keeps no statistics, so on the user's column alone it read
-- every row of the user and sorted them for each page: a probe at 1.5
-- million rows took 1.0-1.3 s a page for a user of 150,000 rows (a year of
-- refreshes on a few devices), on a route each user may call at will. With
-- the time and the id after the user, a page is read in order from the
-- user's part of the index. Each user's new rows already went to the end
-- of that user's part: the audit insert every flow makes writes the same
-- pages as before, with longer entries. The name and the purpose are the
-- seed's.

-- +goose Up
DROP INDEX ix_security_logs_user_id;
CREATE INDEX ix_security_logs_user_id ON security_logs (user_id, "timestamp", id);

-- +goose Down
DROP INDEX ix_security_logs_user_id;
CREATE INDEX ix_security_logs_user_id ON security_logs (user_id);
