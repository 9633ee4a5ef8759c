-- Passkeys (WebAuthn) as a second factor and for passwordless sign-in (issue 9).
--
-- passkeys holds each user's registered credentials. credential_id and
-- public_key (the COSE key) are stored as base64url text; neither is a
-- secret, but neither leaves the service either. sign_count is the
-- authenticator's signature counter (uint32): an assertion whose counter goes
-- back is refused as a possible clone. backup_eligible/backup_state are the
-- BE/BS flags (a synced passkey is backup eligible); the library refuses an
-- assertion whose BE differs from the stored one. The WebAuthn user handle is
-- the user's id (random UUID bytes), so it needs no column.
--
-- webauthn_challenges are ceremonies in flight: any instance finishes a
-- ceremony another began. challenge is the SHA-256 hex of the raw challenge,
-- found again from the clientDataJSON of the browser's answer; session_data
-- is the library's SessionData JSON, kept as it was returned. A challenge is
-- single use (used_at) and lives five minutes; retention deletes expired ones.
-- user_id is NULL for a passwordless (discoverable) sign-in, whose user is
-- known only from the credential; mfa_challenge_id binds a second-factor
-- ceremony to the login challenge whose mfa_token began it.

-- event_type grows by new labels, as SPEC §4 allows: SQLite cannot alter a
-- CHECK, so security_logs is rebuilt with the longer list, as 00005 does.

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
        'passkey_used', 'passkey_counter_regression', 'passkey_login_failed')),
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

CREATE TABLE passkeys (
    id               TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    user_id          TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name             VARCHAR(64) NOT NULL,
    credential_id    VARCHAR(1400) NOT NULL,
    public_key       VARCHAR(4096) NOT NULL,
    attestation_type VARCHAR(32) NOT NULL,
    aaguid           TEXT NOT NULL CHECK (length(aaguid) = 36),
    sign_count       INTEGER NOT NULL DEFAULT 0 CHECK (sign_count BETWEEN 0 AND 4294967295),
    backup_eligible  BOOLEAN NOT NULL DEFAULT 0 CHECK (backup_eligible IN (0, 1)),
    backup_state     BOOLEAN NOT NULL DEFAULT 0 CHECK (backup_state IN (0, 1)),
    transports       VARCHAR(128) NOT NULL DEFAULT '',
    created_at       TIMESTAMP NOT NULL,
    last_used_at     TIMESTAMP
);
CREATE UNIQUE INDEX ix_passkeys_credential_id ON passkeys (credential_id);
CREATE INDEX ix_passkeys_user_id ON passkeys (user_id);

CREATE TABLE webauthn_challenges (
    id               TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    challenge        VARCHAR(128) NOT NULL,
    user_id          TEXT REFERENCES users (id) ON DELETE CASCADE,
    purpose          VARCHAR(16) NOT NULL CHECK (purpose IN ('register', 'login', 'mfa', 'step_up')),
    mfa_challenge_id TEXT REFERENCES mfa_challenges (id) ON DELETE CASCADE,
    session_data     VARCHAR(16384) NOT NULL,
    created_at       TIMESTAMP NOT NULL,
    expires_at       TIMESTAMP NOT NULL,
    used_at          TIMESTAMP
);
CREATE UNIQUE INDEX ix_webauthn_challenges_challenge ON webauthn_challenges (challenge);
CREATE INDEX ix_webauthn_challenges_user_id ON webauthn_challenges (user_id);
CREATE INDEX ix_webauthn_challenges_mfa_challenge_id ON webauthn_challenges (mfa_challenge_id);
CREATE INDEX ix_webauthn_challenges_expires_at ON webauthn_challenges (expires_at);

-- +goose Down
DROP TABLE webauthn_challenges;
DROP TABLE passkeys;
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
INSERT INTO security_logs_old SELECT id, event_type, user_id, "timestamp", ip_address, user_agent, result,
    failure_reason, additional_context FROM security_logs
    WHERE event_type NOT IN ('passkey_added', 'passkey_removed', 'passkey_used', 'passkey_counter_regression',
        'passkey_login_failed');
DROP TABLE security_logs;
ALTER TABLE security_logs_old RENAME TO security_logs;
CREATE INDEX ix_security_logs_event_type ON security_logs (event_type);
CREATE INDEX ix_security_logs_user_id ON security_logs (user_id);
CREATE INDEX ix_security_logs_timestamp ON security_logs ("timestamp");

