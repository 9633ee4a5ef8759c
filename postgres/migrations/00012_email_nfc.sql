-- Addresses are stored composed (Unicode NFC) since NormalizeEmail composes
-- them: an address whose letters were composed another way (ü as u and a
-- combining diaeresis) was a second account that looked the same. Rows
-- stored before are rewritten in NFC so that their owners, whose input is
-- now composed before it is looked up, can sign in again. A row whose NFC
-- form another account already holds (the duplicate the old rule allowed)
-- is left as it is, for an administrator to merge or erase: the upgrade
-- must not fail on it.

-- +goose Up
UPDATE users u SET email = normalize(u.email, NFC)
WHERE u.email IS NOT NFC NORMALIZED
  AND NOT EXISTS (SELECT 1 FROM users o WHERE o.email = normalize(u.email, NFC));

-- +goose Down
-- Nothing to undo: the NFC form is the same text.
SELECT 1;
