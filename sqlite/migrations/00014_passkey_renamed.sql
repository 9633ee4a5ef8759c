-- passkey_renamed: a user gave one of their passkeys a new name (PATCH
-- /v1/users/me/passkeys/{id}). The name is the label the user goes by when
-- deciding which passkey to delete, so changing it is logged like adding
-- or removing one; the event keeps the passkey's id, not the name (the
-- user's words, which erasure could not find in the log). event_type grows
-- by a label, as SPEC §4 allows.
--
-- SQLite cannot alter a CHECK, so security_logs is rebuilt with the longer
-- list (nothing refers to it, so foreign keys need not be switched off);
-- the down migration deletes the rows of the new label and rebuilds it
-- with the old list.

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
        'oidc_consent_revoked', 'oidc_client_auth_failed', 'passkey_renamed')),
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
        'oidc_consent_revoked', 'oidc_client_auth_failed')),
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
    failure_reason, additional_context FROM security_logs WHERE event_type <> 'passkey_renamed';
DROP TABLE security_logs;
ALTER TABLE security_logs_old RENAME TO security_logs;
CREATE INDEX ix_security_logs_event_type ON security_logs (event_type);
CREATE INDEX ix_security_logs_user_id ON security_logs (user_id);
CREATE INDEX ix_security_logs_timestamp ON security_logs ("timestamp");
