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
--
-- One statement, and the checks NOT VALID: every row there is NULL twice,
-- which passes both, and validating them would scan the whole table under
-- its ACCESS EXCLUSIVE lock, with every login and refresh waiting. New and
-- updated rows are checked all the same.

-- +goose Up
ALTER TABLE sessions
    ADD COLUMN signin_factor varchar(16),
    ADD COLUMN signin_passkey_id uuid,
    ADD CONSTRAINT ck_sessions_signin_factor
        CHECK (signin_factor IN ('totp', 'recovery_code', 'passkey')) NOT VALID,
    ADD CONSTRAINT ck_sessions_signin_passkey
        CHECK ((signin_factor IS NOT DISTINCT FROM 'passkey') = (signin_passkey_id IS NOT NULL)) NOT VALID;

-- +goose Down
ALTER TABLE sessions
    DROP CONSTRAINT ck_sessions_signin_passkey,
    DROP CONSTRAINT ck_sessions_signin_factor,
    DROP COLUMN signin_passkey_id,
    DROP COLUMN signin_factor;
