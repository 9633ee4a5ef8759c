-- passkey_renamed: a user gave one of their passkeys a new name (PATCH
-- /v1/users/me/passkeys/{id}). The name is the label the user goes by when
-- deciding which passkey to delete, so changing it is logged like adding
-- or removing one; the event keeps the passkey's id, not the name (the
-- user's words, which erasure could not find in the log). event_type grows
-- by a label, as SPEC §4 allows.

-- +goose Up
ALTER TYPE event_type ADD VALUE 'passkey_renamed';

-- +goose Down
-- PostgreSQL cannot drop an enum label: rebuild the type without it.
DELETE FROM security_logs WHERE event_type::text = 'passkey_renamed';
ALTER TYPE event_type RENAME TO event_type_audit;
CREATE TYPE event_type AS ENUM (
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
    'oidc_consent_revoked', 'oidc_client_auth_failed'
);
ALTER TABLE security_logs ALTER COLUMN event_type TYPE event_type USING event_type::text::event_type;
DROP TYPE event_type_audit;
