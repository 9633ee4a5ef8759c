package postgres

import (
	"context"
	"time"

	"github.com/authd/authd"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

const clientColumns = `id, name, type, secret_digest, redirect_uris, post_logout_redirect_uris, first_party,
	require_pkce, created_at, updated_at`

// list is a string list as the jsonb arrays of oauth_clients hold it: never
// JSON null.
func list(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// CreateClient implements authd.Queries. It runs at once, not queued, so
// that a taken id is reported to the caller rather than at commit.
func (q *queries) CreateClient(ctx context.Context, c *authd.OAuthClient) error {
	_, err := q.exec(ctx, `INSERT INTO oauth_clients (`+clientColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		c.ID, c.Name, string(c.Type), nullString(c.SecretDigest), list(c.RedirectURIs),
		list(c.PostLogoutRedirectURIs), c.FirstParty, c.RequirePKCE, c.CreatedAt, c.UpdatedAt)
	return translate(err)
}

// OAuthClient implements authd.Queries.
func (q *queries) OAuthClient(ctx context.Context, id string) (*authd.OAuthClient, error) {
	return scanClient(q.row(ctx, `SELECT `+clientColumns+` FROM oauth_clients WHERE id = $1`+q.forUpdate(), id))
}

// SharedClient implements authd.Queries: FOR SHARE lets every redemption
// of the client's codes through at once, and makes the FOR UPDATE of a
// deletion or change (clientAction) wait for them.
func (q *queries) SharedClient(ctx context.Context, id string) (*authd.OAuthClient, error) {
	lock := ""
	if q.locking {
		lock = " FOR SHARE"
	}
	return scanClient(q.row(ctx, `SELECT `+clientColumns+` FROM oauth_clients WHERE id = $1`+lock, id))
}

// OAuthClients implements authd.Queries.
func (q *queries) OAuthClients(ctx context.Context) ([]*authd.OAuthClient, error) {
	rows, err := q.rows(ctx, `SELECT `+clientColumns+` FROM oauth_clients ORDER BY created_at, id`)
	if err != nil {
		return nil, translate(err)
	}
	out, err := pgx.CollectRows(rows, rowTo(scanClient))
	return out, translate(err)
}

func scanClient(row pgx.Row) (*authd.OAuthClient, error) {
	var c authd.OAuthClient
	var typ string
	var secret *string
	if err := row.Scan(&c.ID, &c.Name, &typ, &secret, &c.RedirectURIs, &c.PostLogoutRedirectURIs, &c.FirstParty,
		&c.RequirePKCE, &c.CreatedAt, &c.UpdatedAt); err != nil {
		return nil, translate(err)
	}
	c.Type, c.SecretDigest = authd.ClientType(typ), value(secret)
	return &c, nil
}

// UpdateClient implements authd.Queries.
func (q *queries) UpdateClient(ctx context.Context, c *authd.OAuthClient) error {
	return q.write(ctx, mustAffect("client"), `UPDATE oauth_clients SET name = $2, type = $3, secret_digest = $4,
		redirect_uris = $5, post_logout_redirect_uris = $6, first_party = $7, require_pkce = $8, updated_at = $9
		WHERE id = $1`,
		c.ID, c.Name, string(c.Type), nullString(c.SecretDigest), list(c.RedirectURIs),
		list(c.PostLogoutRedirectURIs), c.FirstParty, c.RequirePKCE, c.UpdatedAt)
}

// DeleteClient implements authd.Queries.
func (q *queries) DeleteClient(ctx context.Context, id string) error {
	return q.write(ctx, mustAffect("client"), `DELETE FROM oauth_clients WHERE id = $1`, id)
}

const consentColumns = `id, user_id, client_id, scopes, granted_at`

// SaveConsent implements authd.Queries.
func (q *queries) SaveConsent(ctx context.Context, c *authd.Consent) error {
	return q.write(ctx, nil, `INSERT INTO oauth_consents (`+consentColumns+`) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (user_id, client_id) DO UPDATE SET scopes = excluded.scopes, granted_at = excluded.granted_at`,
		c.ID, c.UserID, c.ClientID, authd.FormatScopes(c.Scopes), c.GrantedAt)
}

// Consent implements authd.Queries.
func (q *queries) Consent(ctx context.Context, userID uuid.UUID, clientID string) (*authd.Consent, error) {
	return scanConsent(q.row(ctx, `SELECT `+consentColumns+` FROM oauth_consents WHERE user_id = $1 AND client_id = $2`,
		userID, clientID))
}

func scanConsent(row pgx.Row) (*authd.Consent, error) {
	var c authd.Consent
	var scopes string
	if err := row.Scan(&c.ID, &c.UserID, &c.ClientID, &scopes, &c.GrantedAt); err != nil {
		return nil, translate(err)
	}
	c.Scopes = authd.ParseScopes(scopes)
	return &c, nil
}

// DeleteConsent implements authd.Queries.
func (q *queries) DeleteConsent(ctx context.Context, userID uuid.UUID, clientID string) error {
	tag, err := q.exec(ctx, `DELETE FROM oauth_consents WHERE user_id = $1 AND client_id = $2`, userID, clientID)
	return affected(tag, err, "consent")
}

const authRequestColumns = `id, client_id, redirect_uri, scopes, state, nonce, code_challenge,
	code_challenge_method, min_auth_time, force_consent, browser_binding, created_at, expires_at, hint_subject`

// CreateAuthRequest implements authd.Queries.
func (q *queries) CreateAuthRequest(ctx context.Context, r *authd.AuthRequest) error {
	return q.write(ctx, nil, `INSERT INTO oauth_auth_requests (`+authRequestColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
		r.ID, r.ClientID, r.RedirectURI, authd.FormatScopes(r.Scopes), nullString(r.State), nullString(r.Nonce),
		nullString(r.CodeChallenge), nullString(r.CodeChallengeMethod), nullTime(r.MinAuthTime), r.ForceConsent,
		r.BrowserBinding, r.CreatedAt, r.ExpiresAt, nullUUID(r.HintSubject))
}

// AuthRequest implements authd.Queries.
func (q *queries) AuthRequest(ctx context.Context, id uuid.UUID) (*authd.AuthRequest, error) {
	var r authd.AuthRequest
	var scopes string
	var state, nonce, challenge, method *string
	var minAuth *time.Time
	var hint *uuid.UUID
	err := q.row(ctx, `SELECT `+authRequestColumns+` FROM oauth_auth_requests WHERE id = $1`+q.forUpdate(), id).Scan(
		&r.ID, &r.ClientID, &r.RedirectURI, &scopes, &state, &nonce, &challenge, &method, &minAuth,
		&r.ForceConsent, &r.BrowserBinding, &r.CreatedAt, &r.ExpiresAt, &hint)
	if err != nil {
		return nil, translate(err)
	}
	r.HintSubject = value(hint)
	r.Scopes, r.State, r.Nonce = authd.ParseScopes(scopes), value(state), value(nonce)
	r.CodeChallenge, r.CodeChallengeMethod, r.MinAuthTime = value(challenge), value(method), value(minAuth)
	return &r, nil
}

// DeleteAuthRequest implements authd.Queries.
func (q *queries) DeleteAuthRequest(ctx context.Context, id uuid.UUID) error {
	return q.write(ctx, mustAffect("authorization request"), `DELETE FROM oauth_auth_requests WHERE id = $1`, id)
}

const authCodeColumns = `id, code_digest, client_id, user_id, session_id, redirect_uri, code_challenge,
	code_challenge_method, nonce, scopes, auth_time, amr, created_at, expires_at, used_at, issued_session_id`

// CreateAuthCode implements authd.Queries.
func (q *queries) CreateAuthCode(ctx context.Context, c *authd.AuthCode) error {
	return q.write(ctx, nil, `INSERT INTO oauth_codes (`+authCodeColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
		c.ID, c.Digest, c.ClientID, c.UserID, c.SessionID, c.RedirectURI, nullString(c.CodeChallenge),
		nullString(c.CodeChallengeMethod), nullString(c.Nonce), authd.FormatScopes(c.Scopes), c.AuthTime,
		authd.FormatAMR(c.AMR), c.CreatedAt, c.ExpiresAt, nullTime(c.UsedAt), nullUUID(c.IssuedSessionID))
}

// AuthCode implements authd.Queries: see ownedRow for the locks.
func (q *queries) AuthCode(ctx context.Context, digest string) (*authd.AuthCode, error) {
	return scanAuthCode(q.ownedRow(ctx, "oauth_codes", "code_digest", authCodeColumns, digest))
}

func scanAuthCode(row pgx.Row) (*authd.AuthCode, error) {
	var c authd.AuthCode
	var scopes, amr string
	var challenge, method, nonce *string
	var usedAt *time.Time
	var issued *uuid.UUID
	err := row.Scan(&c.ID, &c.Digest, &c.ClientID, &c.UserID, &c.SessionID, &c.RedirectURI, &challenge, &method, &nonce,
		&scopes, &c.AuthTime, &amr, &c.CreatedAt, &c.ExpiresAt, &usedAt, &issued)
	if err != nil {
		return nil, translate(err)
	}
	c.CodeChallenge, c.CodeChallengeMethod, c.Nonce = value(challenge), value(method), value(nonce)
	c.Scopes, c.AMR, c.UsedAt, c.IssuedSessionID = authd.ParseScopes(scopes), authd.ParseAMR(amr), value(usedAt), value(issued)
	return &c, nil
}

// UpdateAuthCode implements authd.Queries.
func (q *queries) UpdateAuthCode(ctx context.Context, c *authd.AuthCode) error {
	return q.write(ctx, mustAffect("authorization code"), `UPDATE oauth_codes SET used_at = $2, issued_session_id = $3
		WHERE id = $1`, c.ID, nullTime(c.UsedAt), nullUUID(c.IssuedSessionID))
}

// BrowserSession implements authd.Queries.
func (q *queries) BrowserSession(ctx context.Context, digest string) (*authd.Session, error) {
	return scanSession(q.row(ctx, `SELECT `+sessionColumns+` FROM sessions WHERE browser_digest = $1`+q.forUpdate(), digest))
}

// SetBrowserDigest implements authd.Queries. It runs at once so that a
// taken digest is reported to the caller.
func (q *queries) SetBrowserDigest(ctx context.Context, id uuid.UUID, digest string) error {
	tag, err := q.exec(ctx, `UPDATE sessions SET browser_digest = $2 WHERE id = $1`, id, digest)
	return affected(tag, err, "session")
}

// RevokeClientSessions implements authd.Queries: one user's by their live
// sessions (ix_sessions_user_id_live), every user's by the client's
// (ix_sessions_client_id).
func (q *queries) RevokeClientSessions(ctx context.Context, clientID string, userID uuid.UUID, at time.Time) ([]uuid.UUID, error) {
	if userID == uuid.Nil {
		return q.revokeSessions(ctx, at, revokeClientSessions, at, clientID)
	}
	return q.revokeSessions(ctx, at, revokeUserClientSessions, at, clientID, userID)
}

// revokeClientSessions and revokeUserClientSessions are
// RevokeClientSessions' statements. One for both, with "$3 IS NULL OR
// user_id = $3", read every session the client ever had, for one user's,
// once the statement cache's generic plan took over.
const (
	revokeClientSessions = `UPDATE sessions SET revoked_at = $1
		WHERE client_id = $2 AND revoked_at IS NULL AND expires_at > $1 RETURNING id`
	revokeUserClientSessions = `UPDATE sessions SET revoked_at = $1
		WHERE user_id = $3 AND client_id = $2 AND revoked_at IS NULL AND expires_at > $1 RETURNING id`
)

// Consents implements authd.Queries.
func (q *queries) Consents(ctx context.Context, userID uuid.UUID) ([]*authd.Consent, error) {
	rows, err := q.rows(ctx, `SELECT `+consentColumns+` FROM oauth_consents WHERE user_id = $1
		ORDER BY granted_at DESC, id DESC`, userID)
	if err != nil {
		return nil, translate(err)
	}
	out, err := pgx.CollectRows(rows, rowTo(scanConsent))
	return out, translate(err)
}
