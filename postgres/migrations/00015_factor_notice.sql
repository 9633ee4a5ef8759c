-- factor_changed: the notice mailed to a user whose second factors changed
-- from a signed-in session (an authenticator app turned on or off, a
-- passkey added or removed, recovery codes replaced), so that a factor an
-- intruder adds, which a password reset does not remove, does not go
-- unseen. What changed is its (non-secret) template data.

-- +goose Up
ALTER TABLE mail_outbox DROP CONSTRAINT mail_outbox_kind_check;
ALTER TABLE mail_outbox ADD CONSTRAINT mail_outbox_kind_check CHECK (kind IN ('verify_email', 'password_reset',
    'register_notice', 'account_locked', 'password_changed', 'account_deleted', 'mfa_reset', 'factor_changed'));

-- +goose Down
DELETE FROM mail_outbox WHERE kind = 'factor_changed';
ALTER TABLE mail_outbox DROP CONSTRAINT mail_outbox_kind_check;
ALTER TABLE mail_outbox ADD CONSTRAINT mail_outbox_kind_check CHECK (kind IN ('verify_email', 'password_reset',
    'register_notice', 'account_locked', 'password_changed', 'account_deleted', 'mfa_reset'));
