-- Accounts registered, before NormalizeEmail refused the reserved .invalid
-- domain, at an address of the form erasure gives an account
-- (deleted-<id>@invalid, the id being every token's sub): one of them makes
-- the erasure of the account whose id it names fail on the unique email.
-- They are moved out of the way, to squatted-<their own id>@invalid, which
-- no one can register or sign in with (.invalid is refused) and erasure
-- never gives; nothing else about them changes, and an administrator finds
-- them by that address.

-- +goose Up
UPDATE users SET email = 'squatted-' || id::text || '@invalid'
WHERE email LIKE 'deleted-%@invalid' AND account_status <> 'deleted';

-- +goose Down
-- Nothing to undo: no mail reaches .invalid, so the old address was never
-- one its account could use.
SELECT 1;
