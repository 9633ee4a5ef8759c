-- ix_sessions_user_id_live serves the reads of a user's live sessions: the
-- session limit that every login applies (AUTHD_MAX_SESSIONS), the list of
-- sessions, and "end every other session". A user's sessions that ended
-- stay until retention removes them a day later (SPEC 6.9), so an account
-- that logs in often (a service account, a load test) has many more ended
-- sessions than live ones, and ix_sessions_user_id made every login read
-- them all: 3.7 ms per login at 50,000 ended sessions, 0.15 ms with this
-- index. Partial, so its size follows the live sessions; last_used_at is
-- not in it, so a refresh's update of the session stays a HOT update.
--
-- Built CONCURRENTLY, outside a transaction, so that logins and refreshes
-- go on while it builds on a large table. A build that failed leaves an
-- invalid index behind and this migration unapplied: the DROP clears it
-- when the migration runs again.

-- +goose NO TRANSACTION
-- +goose Up
DROP INDEX CONCURRENTLY IF EXISTS ix_sessions_user_id_live;
CREATE INDEX CONCURRENTLY ix_sessions_user_id_live ON sessions (user_id) WHERE revoked_at IS NULL;

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS ix_sessions_user_id_live;
