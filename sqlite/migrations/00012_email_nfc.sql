-- Addresses are stored composed (Unicode NFC) since NormalizeEmail composes
-- them: an address whose letters were composed another way (ü as u and a
-- combining diaeresis) was a second account that looked the same. Rows
-- stored before are rewritten in NFC so that their owners, whose input is
-- now composed before it is looked up, can sign in again. A row whose NFC
-- form another account already holds (the duplicate the old rule allowed)
-- is left as it is, for an administrator to merge or erase: the upgrade
-- must not fail on it. SQLite has no normalize(): authd_nfc is Go's,
-- registered by the store (sqlite.go).

-- +goose Up
UPDATE users SET email = authd_nfc(email)
WHERE email <> authd_nfc(email)
  AND NOT EXISTS (SELECT 1 FROM users o WHERE o.email = authd_nfc(users.email));

-- +goose Down
-- Nothing to undo: the NFC form is the same text.
SELECT 1;
