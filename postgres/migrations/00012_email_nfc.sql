-- Addresses are stored composed (Unicode NFC) since NormalizeEmail composes
-- them: an address whose letters were composed another way (ü as u and a
-- combining diaeresis) was a second account that looked the same. Rows
-- stored before are rewritten in NFC so that their owners, whose input is
-- now composed before it is looked up, can sign in again. Of the rows that
-- compose to one address, only the oldest is rewritten, and only when no
-- account holds that address already; the others (the duplicates the old
-- rule allowed) are left as they are, for an administrator to merge or
-- erase: the upgrade must not fail on them. normalize() needs a UTF8
-- database; in any other nothing is done. (SQL_ASCII keeps whatever bytes
-- it was sent, so an address there may be decomposed UTF-8 all the same:
-- the README's upgrade notes say how to find and rewrite one by hand.)

-- +goose Up
-- +goose StatementBegin
DO $$
BEGIN
    IF current_setting('server_encoding') = 'UTF8' THEN
        UPDATE users u SET email = r.nfc
        FROM (SELECT id, normalize(email, NFC) AS nfc,
                     row_number() OVER (PARTITION BY normalize(email, NFC) ORDER BY id) AS n
              FROM users WHERE email IS NOT NFC NORMALIZED) r
        WHERE u.id = r.id AND r.n = 1
          AND NOT EXISTS (SELECT 1 FROM users o WHERE o.email = r.nfc);
    END IF;
END
$$;
-- +goose StatementEnd

-- +goose Down
-- Nothing to undo: the NFC form is the same text.
SELECT 1;
