package authd

import (
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// The rows of authd as an OpenID provider (migration 00007). The protocol
// itself lives in the oidc adapter; these are the domain's records of it.

// ClientType is oauth_clients.type: whether a relying party can keep a
// secret (RFC 6749 §2.1).
type ClientType string

// Client types.
const (
	ClientPublic       ClientType = "public"       // a browser or native app: no secret, PKCE required
	ClientConfidential ClientType = "confidential" // a server: authenticates with its secret
)

// ClientTypes lists every client type, in schema order.
func ClientTypes() []ClientType { return []ClientType{ClientPublic, ClientConfidential} }

// ParseClientType rejects anything but the labels of ClientTypes.
func ParseClientType(s string) (ClientType, error) {
	return parseEnum("client type", s, ClientTypes())
}

// OAuthClient is a registered relying party (table oauth_clients). ID is
// its client_id. SecretDigest is the keyed digest of its secret, empty
// (NULL) for a public client; the secret itself is shown once and never
// stored.
type OAuthClient struct {
	ID                     string
	Name                   string
	Type                   ClientType
	SecretDigest           string
	RedirectURIs           []string
	PostLogoutRedirectURIs []string
	FirstParty             bool // trusted: its users are never asked to consent
	RequirePKCE            bool // its authorization requests carry a PKCE challenge (PKCERequired)
	CreatedAt              time.Time
	UpdatedAt              time.Time
}

// PKCERequired reports whether the client's authorization requests must
// carry a PKCE challenge: always for a public client, and for a
// confidential one whose administrator said so.
func (c *OAuthClient) PKCERequired() bool { return c.Type == ClientPublic || c.RequirePKCE }

// RedirectsTo reports whether uri is one of the client's redirect URIs as
// they are registered now: character for character, but for the port of an
// http URI to a loopback IP literal (http://127.0.0.1:PORT/…,
// http://[::1]:PORT/…), which a native app takes from the free ones at
// each sign-in: RFC 8252 §7.3 has any port allowed. A port on the loopback
// interface protects nothing (any local process may take one; PKCE does),
// and `localhost`, which may not resolve to the loopback interface (RFC
// 8252 §8.3), is matched as written.
func (c *OAuthClient) RedirectsTo(uri string) bool {
	if slices.Contains(c.RedirectURIs, uri) {
		return true
	}
	want, ok := anyLoopbackPort(uri)
	return ok && slices.ContainsFunc(c.RedirectURIs, func(r string) bool {
		got, ok := anyLoopbackPort(r)
		return ok && got == want
	})
}

// anyLoopbackPort returns uri without its port when uri is an http URI to a
// loopback IP literal with a port from 1 to 65535 (no leading zero) or
// none; ok is false for any other URI.
func anyLoopbackPort(uri string) (_ string, ok bool) {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "http" || u.User != nil || u.Opaque != "" || strings.HasSuffix(u.Host, ":") ||
		!strings.HasPrefix(uri, "http://"+u.Host) {
		return "", false
	}
	port := u.Port()
	if u.Hostname() == "localhost" || !loopbackHost(u.Hostname()) || port != "" && !validPort(port) {
		return "", false
	}
	host := strings.TrimSuffix(u.Host, ":"+port)
	return "http://" + host + uri[len("http://"+u.Host):], true
}

// Consent is what a user granted a client that is not first-party (table
// oauth_consents), remembered so that the consent screen shows once.
type Consent struct {
	ID        uuid.UUID
	UserID    uuid.UUID
	ClientID  string
	Scopes    []string
	GrantedAt time.Time
}

// Covers reports whether the consent includes every scope of scopes.
func (c *Consent) Covers(scopes []string) bool {
	for _, s := range scopes {
		if !slices.Contains(c.Scopes, s) {
			return false
		}
	}
	return true
}

// AuthRequest is a validated authorization request waiting for its browser
// to sign in and consent (table oauth_auth_requests), so that any instance
// can finish it.
type AuthRequest struct {
	ID                  uuid.UUID
	ClientID            string
	RedirectURI         string
	Scopes              []string
	State               string
	Nonce               string
	CodeChallenge       string
	CodeChallengeMethod string
	// MinAuthTime, when not zero, is the earliest sign-in that satisfies
	// the request (prompt=login: its own creation; max_age: now - max_age).
	MinAuthTime time.Time
	// ForceConsent (prompt=consent) shows the consent screen even when an
	// earlier consent covers the scopes.
	ForceConsent bool
	// BrowserBinding ties the request to the browser that started it (an
	// HMAC of that browser's cookie, computed by the OpenID provider): the
	// request's id alone, which leaks through history, logs and Referer,
	// must not let another browser finish it. Empty on rows saved before
	// it existed, which no browser matches.
	BrowserBinding string
	// HintSubject is the user an id_token_hint names (uuid.Nil: no hint):
	// the sub a verified hint carries, or the one an unverifiable hint
	// claims, or uuid.Max (no user) for a sub that is no authd user id.
	// Only that user's sign-in may finish the request (IssueCode).
	HintSubject uuid.UUID
	CreatedAt   time.Time
	ExpiresAt   time.Time
}

// AuthCode is an authorization code (table oauth_codes), stored as its
// digest: single use, bound to its client, redirect URI, PKCE challenge and
// the browser session that signed in. IssuedSessionID is the session its
// redemption started, which a second redemption revokes.
type AuthCode struct {
	ID                  uuid.UUID
	Digest              string
	ClientID            string
	UserID              uuid.UUID
	SessionID           uuid.UUID
	RedirectURI         string
	CodeChallenge       string
	CodeChallengeMethod string
	Nonce               string
	Scopes              []string
	AuthTime            time.Time
	AMR                 []string
	CreatedAt           time.Time
	ExpiresAt           time.Time
	UsedAt              time.Time // zero: not redeemed
	IssuedSessionID     uuid.UUID // Nil: not redeemed, or its session is gone
}

// FormatScopes is how scopes are stored: space-separated, as OAuth writes them.
func FormatScopes(scopes []string) string { return strings.Join(scopes, " ") }

// ParseScopes reads a stored or requested scope string; nil when empty.
func ParseScopes(s string) []string {
	if f := strings.Fields(s); len(f) > 0 {
		return f
	}
	return nil
}
