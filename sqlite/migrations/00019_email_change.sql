-- An account's address can change (POST /v1/users/me/email): a link mailed
-- to the new address moves the account there when followed.
--
-- verification_tokens.new_email: the link is an email_verification token
-- (SPEC §4 keeps that enum's two labels) naming the address it moves the
-- account to; NULL on a token that verifies the account's own address.
-- Like the other tokens it lives until retention purges it.
--
-- event_type grows by two labels, as SPEC §4 allows: email_change_requested
-- (a link mailed, or refused) and email_changed (the link followed).
--
-- mail_outbox.kind grows by three: email_change (the link, to the new
-- address), email_change_taken (to a new address that has an account: no
-- link, a notice) and email_change_notice (to the old address, when the
-- change is asked for and when it is made; its data names the new one).
--
-- SQLite cannot alter a CHECK, so security_logs and mail_outbox are rebuilt
-- with the longer lists (nothing refers to them, so foreign keys need not
-- be switched off); the down migration deletes the new labels' rows and
-- rebuilds them with the old lists.

-- +goose Up
ALTER TABLE verification_tokens ADD COLUMN new_email VARCHAR(254)
    CHECK (new_email IS NULL OR token_type = 'email_verification');
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
    additional_context TEXT CHECK (json_valid(additional_context) AND json_type(additional_context) = 'object')
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
INSERT INTO mail_outbox_new SELECT id, kind, user_id, recipient, data, created_at, next_attempt_at, attempts,
    claimed_until, last_error, dead_at, claim FROM mail_outbox;
DROP TABLE mail_outbox;
ALTER TABLE mail_outbox_new RENAME TO mail_outbox;
CREATE INDEX ix_mail_outbox_due ON mail_outbox (next_attempt_at) WHERE dead_at IS NULL;
CREATE INDEX ix_mail_outbox_user_id ON mail_outbox (user_id);

-- +goose Down
-- A change link left without its column would verify the old address.
DELETE FROM verification_tokens WHERE new_email IS NOT NULL;
ALTER TABLE verification_tokens DROP COLUMN new_email;
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
INSERT INTO security_logs_old SELECT id, event_type, user_id, "timestamp", ip_address, user_agent, result,
    failure_reason, additional_context FROM security_logs
    WHERE event_type NOT IN ('email_change_requested', 'email_changed');
DROP TABLE security_logs;
ALTER TABLE security_logs_old RENAME TO security_logs;
CREATE INDEX ix_security_logs_event_type ON security_logs (event_type);
CREATE INDEX ix_security_logs_user_id ON security_logs (user_id);
CREATE INDEX ix_security_logs_timestamp ON security_logs ("timestamp");
CREATE TABLE mail_outbox_old (
    id              TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    kind            VARCHAR(32) NOT NULL CHECK (kind IN ('verify_email', 'password_reset',
                        'register_notice', 'account_locked', 'password_changed', 'account_deleted', 'mfa_reset', 'factor_changed')),
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
    claimed_until, last_error, dead_at, claim FROM mail_outbox
    WHERE kind NOT IN ('email_change', 'email_change_taken', 'email_change_notice');
DROP TABLE mail_outbox;
ALTER TABLE mail_outbox_old RENAME TO mail_outbox;
CREATE INDEX ix_mail_outbox_due ON mail_outbox (next_attempt_at) WHERE dead_at IS NULL;
CREATE INDEX ix_mail_outbox_user_id ON mail_outbox (user_id);
