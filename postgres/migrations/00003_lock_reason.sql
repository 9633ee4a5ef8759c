-- Hardening (issue 8).
--
-- users.lock_reason says who locked an account, because the two locks differ
-- (SPEC 6.7): a brute-force lock ('brute_force') stops password logins only
-- and a password reset lifts it; an administrator's lock ('admin') ends the
-- sessions and only an administrator lifts it. NULL while not locked.
-- Existing locks are read conservatively: only a timed lock with failures on
-- record can have come from brute force; any other lock is an administrator's.
--
-- ix_sessions_revoked_at serves the revocation set's (re)load, which reads
-- the sessions revoked within the access-token lifetime.

-- +goose Up
ALTER TABLE users ADD COLUMN lock_reason varchar(16)
    CHECK (lock_reason IN ('brute_force', 'admin'));
UPDATE users SET lock_reason = CASE
        WHEN account_locked_until IS NOT NULL AND failed_login_attempts > 0 THEN 'brute_force'
        ELSE 'admin' END
    WHERE account_status = 'locked';
CREATE INDEX ix_sessions_revoked_at ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;

-- +goose Down
DROP INDEX ix_sessions_revoked_at;
ALTER TABLE users DROP COLUMN lock_reason;
