-- A second factor: TOTP and recovery codes (issue 9).
--
-- mfa_factors holds each user's enrolled factors, one per kind. The TOTP
-- secret is stored only encrypted (AES-256-GCM under mfa.key in
-- AUTHD_KEYS_DIR, base64), so a copy of the database alone yields no codes.
-- A factor counts once confirmed with a first code; an unconfirmed one is an
-- enrolment in progress. last_step is the last accepted TOTP time step: a
-- code of that step or an earlier one is refused, so that a code seen over a
-- shoulder or in a log cannot be replayed within its window.
--
-- mfa_recovery_codes keeps only a keyed digest of each code; used_at marks a
-- code spent (each works once).
--
-- mfa_challenges are the second step of a login: a correct password for an
-- account with a factor gets an opaque mfa_token (stored as its digest, bound
-- to the user, five minutes) instead of a session; failures counts wrong codes
-- (the token dies at five), used_at marks it redeemed.
--
-- sessions.amr (RFC 8176, space-separated) says how the session's login was
-- authenticated, so that every access token rotated from it carries the same
-- amr; sessions from before this migration were password logins.
--
-- event_type grows by new labels, as SPEC §4 allows. SQLite cannot alter a
-- CHECK, so security_logs is rebuilt with the longer list (nothing refers to
-- it, so foreign keys need not be switched off); the down migration deletes
-- the rows of the new labels and rebuilds it with the old list.

-- +goose Up
CREATE TABLE security_logs_new (
    id                 TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    event_type         TEXT NOT NULL CHECK (event_type IN (
        'registration', 'email_verification_sent', 'email_verified',
        'login_success', 'login_failure', 'account_locked', 'account_unlocked',
        'token_refreshed', 'refresh_token_reuse', 'logout', 'logout_all',
        'session_revoked', 'password_reset_requested', 'password_reset_completed',
        'password_changed', 'consent_updated', 'data_exported', 'account_deleted',
        'admin_action', 'mfa_enrolled', 'mfa_enabled', 'mfa_disabled',
        'mfa_challenge_issued', 'mfa_challenge_passed', 'mfa_challenge_failed',
        'recovery_code_used', 'recovery_codes_replaced')),
    -- NULL when the user is unknown (a login for an unknown email) or gone.
    user_id            TEXT REFERENCES users (id) ON DELETE SET NULL,
    "timestamp"        TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    ip_address         VARCHAR(45),
    user_agent         VARCHAR(512),
    result             TEXT NOT NULL CHECK (result IN ('success', 'failure')),
    failure_reason     VARCHAR(255),
    additional_context TEXT CHECK (json_valid(additional_context) AND json_type(additional_context) = 'object')
);
INSERT INTO security_logs_new SELECT id, event_type, user_id, "timestamp", ip_address, user_agent, result,
    failure_reason, additional_context FROM security_logs;
DROP TABLE security_logs;
ALTER TABLE security_logs_new RENAME TO security_logs;
CREATE INDEX ix_security_logs_event_type ON security_logs (event_type);
CREATE INDEX ix_security_logs_user_id ON security_logs (user_id);
CREATE INDEX ix_security_logs_timestamp ON security_logs ("timestamp");

CREATE TABLE mfa_factors (
    id           TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind         VARCHAR(16) NOT NULL CHECK (kind IN ('totp')),
    secret       VARCHAR(255) NOT NULL,
    confirmed    BOOLEAN NOT NULL DEFAULT 0 CHECK (confirmed IN (0, 1)),
    created_at   TIMESTAMP NOT NULL,
    confirmed_at TIMESTAMP,
    last_used_at TIMESTAMP,
    last_step    INTEGER NOT NULL DEFAULT 0 CHECK (last_step >= 0)
);
CREATE UNIQUE INDEX ix_mfa_factors_user_id_kind ON mfa_factors (user_id, kind);

CREATE TABLE mfa_recovery_codes (
    id          TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_digest VARCHAR(128) NOT NULL,
    created_at  TIMESTAMP NOT NULL,
    used_at     TIMESTAMP
);
CREATE UNIQUE INDEX ix_mfa_recovery_codes_user_id_code_digest ON mfa_recovery_codes (user_id, code_digest);

CREATE TABLE mfa_challenges (
    id          TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    token       VARCHAR(128) NOT NULL,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_info VARCHAR(255),
    created_at  TIMESTAMP NOT NULL,
    expires_at  TIMESTAMP NOT NULL,
    failures    INTEGER NOT NULL DEFAULT 0 CHECK (failures >= 0),
    used_at     TIMESTAMP
);
CREATE UNIQUE INDEX ix_mfa_challenges_token ON mfa_challenges (token);
CREATE INDEX ix_mfa_challenges_user_id ON mfa_challenges (user_id);
CREATE INDEX ix_mfa_challenges_expires_at ON mfa_challenges (expires_at);

ALTER TABLE sessions ADD COLUMN amr VARCHAR(64) NOT NULL DEFAULT 'pwd';

-- +goose Down
ALTER TABLE sessions DROP COLUMN amr;
DROP TABLE mfa_challenges;
DROP TABLE mfa_recovery_codes;
DROP TABLE mfa_factors;
CREATE TABLE security_logs_old (
    id                 TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    event_type         TEXT NOT NULL CHECK (event_type IN (
        'registration', 'email_verification_sent', 'email_verified',
        'login_success', 'login_failure', 'account_locked', 'account_unlocked',
        'token_refreshed', 'refresh_token_reuse', 'logout', 'logout_all',
        'session_revoked', 'password_reset_requested', 'password_reset_completed',
        'password_changed', 'consent_updated', 'data_exported', 'account_deleted',
        'admin_action')),
    -- NULL when the user is unknown (a login for an unknown email) or gone.
    user_id            TEXT REFERENCES users (id) ON DELETE SET NULL,
    "timestamp"        TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    ip_address         VARCHAR(45),
    user_agent         VARCHAR(512),
    result             TEXT NOT NULL CHECK (result IN ('success', 'failure')),
    failure_reason     VARCHAR(255),
    additional_context TEXT CHECK (json_valid(additional_context) AND json_type(additional_context) = 'object')
);
INSERT INTO security_logs_old SELECT id, event_type, user_id, "timestamp", ip_address, user_agent, result,
    failure_reason, additional_context FROM security_logs
    WHERE event_type NOT IN ('mfa_enrolled', 'mfa_enabled', 'mfa_disabled', 'mfa_challenge_issued',
        'mfa_challenge_passed', 'mfa_challenge_failed', 'recovery_code_used', 'recovery_codes_replaced');
DROP TABLE security_logs;
ALTER TABLE security_logs_old RENAME TO security_logs;
CREATE INDEX ix_security_logs_event_type ON security_logs (event_type);
CREATE INDEX ix_security_logs_user_id ON security_logs (user_id);
CREATE INDEX ix_security_logs_timestamp ON security_logs ("timestamp");
