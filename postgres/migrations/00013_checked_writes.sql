-- authd_expect_rows fails the statement it is in, and so the transaction,
-- when a write changed fewer rows than it must. Inside a transaction authd
-- sends its writes together with the COMMIT, in one round trip; a count
-- checked by authd once the answer came back would come after the commit,
-- and a flow could fail while what it wrote stayed. Each checked write is
-- sent as
--
--   WITH changed AS (<the write> RETURNING 1)
--   SELECT authd_expect_rows(count(*), <at least>, <what>) FROM changed
--
-- and the error (no_data_found, "<what> not found") aborts the transaction
-- before its COMMIT runs. SQLite runs each write at once and needs none.

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION authd_expect_rows(changed bigint, at_least bigint, what text) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
	IF changed < at_least THEN
		RAISE EXCEPTION USING ERRCODE = 'no_data_found', MESSAGE = what || ' not found';
	END IF;
	RETURN changed;
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION authd_expect_rows(bigint, bigint, text);
