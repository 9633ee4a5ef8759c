-- A link that moves an account to a new address asks for the account's
-- password (and second factor). The password checks made with it count on
-- the link, not toward the account's lock: whoever holds the new mailbox
-- could otherwise lock the account again and again for the link's 24
-- hours. A few of them void the link.
--
-- verification_tokens.attempts: the password checks made with the token,
-- each counted before its hash (so that parallel guesses cannot pass the
-- bound); 0 on every other token.

-- +goose Up
ALTER TABLE verification_tokens ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0
    CHECK (attempts >= 0);

-- +goose Down
ALTER TABLE verification_tokens DROP COLUMN attempts;
