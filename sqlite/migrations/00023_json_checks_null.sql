-- The JSON columns that may be NULL, security_logs.additional_context and
-- mail_outbox.data, were checked with json_valid(col) AND json_type(col) =
-- 'object', which holds for NULL only where json_valid(NULL) is NULL
-- (SQLite 3.45 and later, as authd embeds). Older SQLite, such as the
-- sqlite3 shell of Debian 12 (3.40), answers 0: there every row without a
-- context failed `PRAGMA integrity_check`, and a `.dump` restored into it
-- lost those rows (account_unlocked, ...) without stopping. The checks now
-- say NULL passes in every version.
--
-- SQLite cannot alter a CHECK, so both tables are rebuilt as migration 19
-- made them but for that (nothing refers to them, so foreign keys need not
-- be switched off); the down migration rebuilds them with the old checks.

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
        'recovery_code_used', 'recovery_codes_replaced', 'passkey_added', 'passkey_removed',
        'passkey_used', 'passkey_counter_regression', 'passkey_login_failed',
        'oidc_authorized', 'oidc_code_redeemed', 'oidc_code_reuse', 'oidc_consent_granted',
        'oidc_consent_revoked', 'oidc_client_auth_failed', 'passkey_renamed',
        'email_change_requested', 'email_changed')),
    -- NULL when the user is unknown (a login for an unknown email) or gone.
    user_id            TEXT REFERENCES users (id) ON DELETE SET NULL,
    "timestamp"        TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    ip_address         VARCHAR(45),
    user_agent         VARCHAR(512),
    result             TEXT NOT NULL CHECK (result IN ('success', 'failure')),
    failure_reason     VARCHAR(255),
    additional_context TEXT CHECK (additional_context IS NULL OR
                           (json_valid(additional_context) AND json_type(additional_context) = 'object'))
);
INSERT INTO security_logs_new SELECT id, event_type, user_id, "timestamp", ip_address, user_agent, result,
    failure_reason, additional_context FROM security_logs;
DROP TABLE security_logs;
ALTER TABLE security_logs_new RENAME TO security_logs;
CREATE INDEX ix_security_logs_event_type ON security_logs (event_type);
CREATE INDEX ix_security_logs_user_id ON security_logs (user_id);
CREATE INDEX ix_security_logs_timestamp ON security_logs ("timestamp");
CREATE TABLE mail_outbox_new (
    id              TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    kind            VARCHAR(32) NOT NULL CHECK (kind IN ('verify_email', 'password_reset',
                        'register_notice', 'account_locked', 'password_changed', 'account_deleted', 'mfa_reset', 'factor_changed',
                        'email_change', 'email_change_taken', 'email_change_notice')),
    -- The account the mail is about; NULL once that account is gone.
    user_id         TEXT REFERENCES users (id) ON DELETE SET NULL,
    recipient       VARCHAR(254) NOT NULL,
    -- Non-secret template data (for example when a lock ends).
    data            TEXT CHECK (data IS NULL OR (json_valid(data) AND json_type(data) = 'object')),
    created_at      TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    next_attempt_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- A sender holds the row until then; past it, another may claim it.
    claimed_until   TIMESTAMP,
    last_error      VARCHAR(500),
    dead_at         TIMESTAMP,
    claim           TEXT CHECK (length(claim) = 36)
);
INSERT INTO mail_outbox_new SELECT id, kind, user_id, recipient, data, created_at, next_attempt_at, attempts,
    claimed_until, last_error, dead_at, claim FROM mail_outbox;
DROP TABLE mail_outbox;
ALTER TABLE mail_outbox_new RENAME TO mail_outbox;
CREATE INDEX ix_mail_outbox_due ON mail_outbox (next_attempt_at) WHERE dead_at IS NULL;
CREATE INDEX ix_mail_outbox_user_id ON mail_outbox (user_id);

-- +goose Down
CREATE TABLE security_logs_old (
    id                 TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    event_type         TEXT NOT NULL CHECK (event_type IN (
        'registration', 'email_verification_sent', 'email_verified',
        'login_success', 'login_failure', 'account_locked', 'account_unlocked',
        'token_refreshed', 'refresh_token_reuse', 'logout', 'logout_all',
        'session_revoked', 'password_reset_requested', 'password_reset_completed',
        'password_changed', 'consent_updated', 'data_exported', 'account_deleted',
        'admin_action', 'mfa_enrolled', 'mfa_enabled', 'mfa_disabled',
        'mfa_challenge_issued', 'mfa_challenge_passed', 'mfa_challenge_failed',
        'recovery_code_used', 'recovery_codes_replaced', 'passkey_added', 'passkey_removed',
        'passkey_used', 'passkey_counter_regression', 'passkey_login_failed',
        'oidc_authorized', 'oidc_code_redeemed', 'oidc_code_reuse', 'oidc_consent_granted',
        'oidc_consent_revoked', 'oidc_client_auth_failed', 'passkey_renamed',
        'email_change_requested', 'email_changed')),
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
    failure_reason, additional_context FROM security_logs;
DROP TABLE security_logs;
ALTER TABLE security_logs_old RENAME TO security_logs;
CREATE INDEX ix_security_logs_event_type ON security_logs (event_type);
CREATE INDEX ix_security_logs_user_id ON security_logs (user_id);
CREATE INDEX ix_security_logs_timestamp ON security_logs ("timestamp");
CREATE TABLE mail_outbox_old (
    id              TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    kind            VARCHAR(32) NOT NULL CHECK (kind IN ('verify_email', 'password_reset',
                        'register_notice', 'account_locked', 'password_changed', 'account_deleted', 'mfa_reset', 'factor_changed',
                        'email_change', 'email_change_taken', 'email_change_notice')),
    -- The account the mail is about; NULL once that account is gone.
    user_id         TEXT REFERENCES users (id) ON DELETE SET NULL,
    recipient       VARCHAR(254) NOT NULL,
    -- Non-secret template data (for example when a lock ends).
    data            TEXT CHECK (json_valid(data) AND json_type(data) = 'object'),
    created_at      TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    next_attempt_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- A sender holds the row until then; past it, another may claim it.
    claimed_until   TIMESTAMP,
    last_error      VARCHAR(500),
    dead_at         TIMESTAMP,
    claim           TEXT CHECK (length(claim) = 36)
);
INSERT INTO mail_outbox_old SELECT id, kind, user_id, recipient, data, created_at, next_attempt_at, attempts,
    claimed_until, last_error, dead_at, claim FROM mail_outbox;
DROP TABLE mail_outbox;
ALTER TABLE mail_outbox_old RENAME TO mail_outbox;
CREATE INDEX ix_mail_outbox_due ON mail_outbox (next_attempt_at) WHERE dead_at IS NULL;
CREATE INDEX ix_mail_outbox_user_id ON mail_outbox (user_id);
