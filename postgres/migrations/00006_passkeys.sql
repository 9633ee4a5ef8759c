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

-- +goose Up
ALTER TYPE event_type ADD VALUE 'passkey_added';
ALTER TYPE event_type ADD VALUE 'passkey_removed';
ALTER TYPE event_type ADD VALUE 'passkey_used';
ALTER TYPE event_type ADD VALUE 'passkey_counter_regression';
ALTER TYPE event_type ADD VALUE 'passkey_login_failed';

CREATE TABLE passkeys (
    id               uuid PRIMARY KEY,
    user_id          uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name             varchar(64) NOT NULL,
    credential_id    varchar(1400) NOT NULL,
    public_key       varchar(4096) NOT NULL,
    attestation_type varchar(32) NOT NULL,
    aaguid           uuid NOT NULL,
    sign_count       bigint NOT NULL DEFAULT 0 CHECK (sign_count BETWEEN 0 AND 4294967295),
    backup_eligible  boolean NOT NULL DEFAULT false,
    backup_state     boolean NOT NULL DEFAULT false,
    transports       varchar(128) NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL,
    last_used_at     timestamptz
);
CREATE UNIQUE INDEX ix_passkeys_credential_id ON passkeys (credential_id);
CREATE INDEX ix_passkeys_user_id ON passkeys (user_id);

CREATE TABLE webauthn_challenges (
    id               uuid PRIMARY KEY,
    challenge        varchar(128) NOT NULL,
    user_id          uuid REFERENCES users (id) ON DELETE CASCADE,
    purpose          varchar(16) NOT NULL CHECK (purpose IN ('register', 'login', 'mfa', 'step_up')),
    mfa_challenge_id uuid REFERENCES mfa_challenges (id) ON DELETE CASCADE,
    session_data     varchar(16384) NOT NULL,
    created_at       timestamptz NOT NULL,
    expires_at       timestamptz NOT NULL,
    used_at          timestamptz
);
CREATE UNIQUE INDEX ix_webauthn_challenges_challenge ON webauthn_challenges (challenge);
CREATE INDEX ix_webauthn_challenges_user_id ON webauthn_challenges (user_id);
CREATE INDEX ix_webauthn_challenges_mfa_challenge_id ON webauthn_challenges (mfa_challenge_id);
CREATE INDEX ix_webauthn_challenges_expires_at ON webauthn_challenges (expires_at);

-- +goose Down
DROP TABLE webauthn_challenges;
DROP TABLE passkeys;
-- PostgreSQL cannot drop an enum label: rebuild the type without them.
DELETE FROM security_logs WHERE event_type::text IN ('passkey_added', 'passkey_removed', 'passkey_used',
    'passkey_counter_regression', 'passkey_login_failed');
ALTER TYPE event_type RENAME TO event_type_passkeys;
CREATE TYPE event_type AS ENUM (
    'registration', 'email_verification_sent', 'email_verified',
    'login_success', 'login_failure', 'account_locked', 'account_unlocked',
    'token_refreshed', 'refresh_token_reuse', 'logout', 'logout_all',
    'session_revoked', 'password_reset_requested', 'password_reset_completed',
    'password_changed', 'consent_updated', 'data_exported', 'account_deleted',
    'admin_action', 'mfa_enrolled', 'mfa_enabled', 'mfa_disabled',
    'mfa_challenge_issued', 'mfa_challenge_passed', 'mfa_challenge_failed',
    'recovery_code_used', 'recovery_codes_replaced'
);
ALTER TABLE security_logs ALTER COLUMN event_type TYPE event_type USING event_type::text::event_type;
DROP TYPE event_type_passkeys;
