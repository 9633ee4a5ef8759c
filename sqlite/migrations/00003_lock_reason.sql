-- Hardening (issue 8).
--
-- users.lock_reason says who locked an account, because the two locks differ
-- (SPEC 6.7): a brute-force lock ('brute_force') stops password logins only
-- and a password reset lifts it; an administrator's lock ('admin') ends the
-- sessions and only an administrator lifts it. NULL while not locked.
-- Existing locks are read from the audit trail, conservatively: a lock is a
-- brute-force one only when it is timed and the user's latest account_locked
-- event is newer than their latest administrator's lock; any other lock is
-- an administrator's (which a password reset does not lift).
--
-- users.last_failed_login_timestamp: failed password checks are forgotten a
-- day after the last one, as the failures of an email without an account are
-- (kept in the rate-limit store), so that the two cannot be told apart by
-- spacing guesses.
--
-- ix_sessions_revoked_at serves the revocation set's (re)load, which reads
-- the sessions revoked within the access-token lifetime.

-- +goose Up
ALTER TABLE users ADD COLUMN lock_reason VARCHAR(16)
    CHECK (lock_reason IN ('brute_force', 'admin'));
UPDATE users SET lock_reason = CASE
        WHEN account_locked_until IS NOT NULL
         AND (SELECT max(l.timestamp) FROM security_logs l
              WHERE l.user_id = users.id AND l.event_type = 'account_locked')
           > COALESCE((SELECT max(a.timestamp) FROM security_logs a
              WHERE a.user_id = users.id AND a.event_type = 'admin_action'
                AND json_extract(a.additional_context, '$.action') = 'lock'), '')
        THEN 'brute_force' ELSE 'admin' END
    WHERE account_status = 'locked';
ALTER TABLE users ADD COLUMN last_failed_login_timestamp TIMESTAMP;
CREATE INDEX ix_sessions_revoked_at ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;

-- +goose Down
DROP INDEX ix_sessions_revoked_at;
ALTER TABLE users DROP COLUMN last_failed_login_timestamp;
ALTER TABLE users DROP COLUMN lock_reason;
