-- browser_binding ties a saved authorization request to the browser that
-- started it: an HMAC, under the provider's form key, of that browser's
-- authd_csrf cookie. A request is named by its id in URLs (the sign-in page,
-- /oauth2/resume), and an id leaks through history, logs and Referer; without
-- the binding, another browser signed in as another user could finish it and
-- get a code carrying the first browser's state and PKCE challenge.
--
-- Rows saved before this migration have '' and are therefore refused (no
-- browser's binding is empty). That is harmless: a request lives minutes,
-- and its user starts again from the application.

-- +goose Up
ALTER TABLE oauth_auth_requests ADD COLUMN browser_binding varchar(64) NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE oauth_auth_requests DROP COLUMN browser_binding;
