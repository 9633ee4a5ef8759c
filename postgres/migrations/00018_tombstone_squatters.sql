-- Accounts registered, before NormalizeEmail refused the reserved .invalid
-- domain, at an address of the form erasure gives an account
-- (deleted-<id>@invalid, the id being every token's sub): one of them makes
-- the erasure of the account whose id it names fail on the unique email.
-- They are moved out of the way, to squatted-<their own id>@invalid, which
-- no one can register or sign in with (.invalid is refused) and erasure
-- never gives; nothing else about them changes, and an administrator finds
-- them by that address.

-- +goose Up
-- Every live account under .invalid moves (none can receive mail), in two
-- steps: one could hold the very squatted- address another is given, and
-- the unique index is checked row by row. The first step's addresses have
-- a space, which no registration ever took.
UPDATE users SET email = 'moving ' || id::text || '@invalid'
WHERE (email LIKE '%@invalid' OR email LIKE '%.invalid') AND account_status <> 'deleted';
UPDATE users SET email = 'squatted-' || id::text || '@invalid'
WHERE email LIKE 'moving %@invalid';

-- +goose Down
-- Nothing to undo: no mail reaches .invalid, so the old address was never
-- one its account could use.
SELECT 1;
