-- What proved a session's sign-in beside the password, or in its place, so
-- that removing that factor ends the sessions it let in: a passkey someone
-- else holds (synced to their device, say) signs in without the password,
-- and its owner, removing it, has no password to change.
--
-- sessions.proof: totp, recovery_code or passkey; NULL for the password
-- alone, and for the sessions begun before this migration (which then end
-- with no factor's removal). sessions.proof_passkey_id: which passkey, with
-- proof passkey only. Not a reference: the session outlives its passkey's
-- row, which the removal deletes after ending it.

-- +goose Up
ALTER TABLE sessions ADD COLUMN proof varchar(16) CHECK (proof IN ('totp', 'recovery_code', 'passkey'));
ALTER TABLE sessions ADD COLUMN proof_passkey_id uuid;
ALTER TABLE sessions ADD CONSTRAINT ck_sessions_proof_passkey
    CHECK ((proof IS NOT DISTINCT FROM 'passkey') = (proof_passkey_id IS NOT NULL));

-- +goose Down
ALTER TABLE sessions DROP CONSTRAINT ck_sessions_proof_passkey;
ALTER TABLE sessions DROP COLUMN proof_passkey_id;
ALTER TABLE sessions DROP COLUMN proof;
