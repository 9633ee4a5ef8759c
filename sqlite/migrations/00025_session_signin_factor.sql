-- What signed a session in beside the password, or in its place, so that
-- removing that factor ends the sessions it let in: a passkey someone else
-- holds (synced to their device, say) signs in without the password, and
-- its owner, removing it, has no password to change.
--
-- sessions.signin_factor: totp, recovery_code or passkey; NULL for the
-- password alone, and for the sessions begun before this migration (which
-- then end with no factor's removal). sessions.signin_passkey_id: which
-- passkey, with signin_factor passkey only. Not a reference: the session
-- outlives its passkey's row, which the removal deletes after ending it.

-- +goose Up
ALTER TABLE sessions ADD COLUMN signin_factor VARCHAR(16)
    CHECK (signin_factor IN ('totp', 'recovery_code', 'passkey'));
ALTER TABLE sessions ADD COLUMN signin_passkey_id TEXT
    CHECK ((signin_factor IS 'passkey') = (signin_passkey_id IS NOT NULL)
        AND (signin_passkey_id IS NULL OR length(signin_passkey_id) = 36));

-- +goose Down
ALTER TABLE sessions DROP COLUMN signin_passkey_id;
ALTER TABLE sessions DROP COLUMN signin_factor;
