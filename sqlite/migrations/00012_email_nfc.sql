-- Addresses are stored composed (Unicode NFC) since NormalizeEmail composes
-- them: an address whose letters were composed another way (ü as u and a
-- combining diaeresis) was a second account that looked the same. Rows
-- stored before are rewritten in NFC so that their owners, whose input is
-- now composed before it is looked up, can sign in again. Of the rows that
-- compose to one address, only the oldest is rewritten, and only when no
-- account holds that address already; the others (the duplicates the old
-- rule allowed) are left as they are, for an administrator to merge or
-- erase: the upgrade must not fail on them. SQLite has no normalize():
-- authd_nfc is Go's, registered by the store (sqlite.go).

-- +goose Up
UPDATE users SET email = authd_nfc(email)
WHERE id IN (
    SELECT id FROM (
        SELECT id, authd_nfc(email) AS nfc,
               row_number() OVER (PARTITION BY authd_nfc(email) ORDER BY id) AS n
        FROM users WHERE email <> authd_nfc(email)) r
    WHERE r.n = 1 AND NOT EXISTS (SELECT 1 FROM users o WHERE o.email = r.nfc));

-- +goose Down
-- Nothing to undo: the NFC form is the same text.
SELECT 1;
