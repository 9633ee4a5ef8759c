-- oauth_clients.require_pkce: a confidential client whose authorization
-- requests must carry a PKCE challenge (S256), as a public client's always
-- must. RFC 9700 §2.1.1 wants PKCE of every client; OpenID Connect and
-- RFC 6749 let a confidential client go without it, and relying parties
-- such as oauth2-proxy and Grafana do unless told otherwise, so it is the
-- administrator's choice per client. Existing clients keep what they had.

-- +goose Up
ALTER TABLE oauth_clients ADD COLUMN require_pkce BOOLEAN NOT NULL DEFAULT 0 CHECK (require_pkce IN (0, 1));

-- +goose Down
ALTER TABLE oauth_clients DROP COLUMN require_pkce;
