-- An authorization request's id_token_hint names the user the relying
-- party believes is signed in (OpenID Connect Core §3.1.2.1). A browser
-- signed in as someone else goes to the sign-in page; the code must then
-- go to the hint's user only, or the request ends with login_required:
-- an application asking its user to confirm who they are must not get a
-- code, with a fresh auth_time, for whoever signed in instead.
--
-- oauth_auth_requests.hint_subject: the user id the hint names, or claims
-- when authd cannot verify it (narrowing who finishes is safe); an id no
-- user has when its sub is no user id; NULL without a hint.
-- Not a reference: the user may be erased while the request waits.

-- +goose Up
ALTER TABLE oauth_auth_requests ADD COLUMN hint_subject uuid;

-- +goose Down
ALTER TABLE oauth_auth_requests DROP COLUMN hint_subject;
