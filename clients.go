package authd

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// The administrator's registry of OpenID Connect relying parties (issue
// 10): `authd clients …` and /v1/admin/clients. Every change writes an
// admin_action row; a client's secret is shown once, when it is made, and
// only its keyed digest is stored.

// Limits on what a client registration may hold.
const (
	MaxClientIDLength    = 64
	MaxClientNameLength  = 255
	MaxRedirectURIs      = 20
	MaxRedirectURILength = 2048
)

// ClientSpec is what an administrator registers. An empty ID gets a random
// one.
type ClientSpec struct {
	ID                     string
	Name                   string
	Type                   ClientType
	RedirectURIs           []string
	PostLogoutRedirectURIs []string
	FirstParty             bool
	RequirePKCE            bool // a public client always requires PKCE
}

// CreateClient registers a relying party and returns it with its secret
// (empty for a public client), which is never shown again. EInvalid (each
// field checked, see ValidRedirectURI), EConflict (the id is taken).
func (s *Service) CreateClient(ctx context.Context, c Client, spec ClientSpec) (*OAuthClient, string, error) {
	if spec.ID == "" {
		b := make([]byte, 16)
		rand.Read(b) // never fails (crypto/rand)
		spec.ID = base64.RawURLEncoding.EncodeToString(b)
	}
	if err := validClientSpec(spec); err != nil {
		return nil, "", err
	}
	if spec.ID == s.cfg.Audience {
		// Its ID tokens would carry the aud every access token carries: a
		// resource server that checks only signature, iss and aud (any
		// generic JWT library) would take one for an access token, and
		// that client's backend an access token for its ID token.
		return nil, "", invalidField("client_id", "is the audience of authd's access tokens (AUTHD_AUDIENCE): choose another")
	}
	now := s.now()
	oc := &OAuthClient{ID: spec.ID, Name: spec.Name, Type: spec.Type, RedirectURIs: spec.RedirectURIs,
		PostLogoutRedirectURIs: spec.PostLogoutRedirectURIs, FirstParty: spec.FirstParty,
		RequirePKCE: spec.RequirePKCE || spec.Type == ClientPublic, CreatedAt: now, UpdatedAt: now}
	if oc.PostLogoutRedirectURIs == nil {
		oc.PostLogoutRedirectURIs = []string{}
	}
	var secret string
	if oc.Type == ClientConfidential {
		secret, _ = newOpaqueToken()
		oc.SecretDigest = s.clientSecretDigest(oc.ID, secret)
	}
	err := s.inTx(ctx, func(tx *txn) error {
		if err := tx.CreateClient(ctx, oc); err != nil {
			if ErrorCode(err) == EConflict {
				return &Error{Code: EConflict, Message: "A client with this id exists.", Err: err}
			}
			return err
		}
		return s.logAdmin(ctx, tx, now, c, uuid.Nil, map[string]any{"action": "create_client", "client_id": oc.ID,
			"name": oc.Name, "type": string(oc.Type), "redirect_uris": oc.RedirectURIs,
			"post_logout_redirect_uris": oc.PostLogoutRedirectURIs, "first_party": oc.FirstParty,
			"require_pkce": oc.RequirePKCE})
	})
	if err != nil {
		return nil, "", err
	}
	return oc, secret, nil
}

// OAuthClients returns every registered client, oldest first. EUnavailable.
func (s *Service) OAuthClients(ctx context.Context) ([]*OAuthClient, error) {
	return s.store.OAuthClients(ctx)
}

// OAuthClient returns the client with the id. ENotFound, EUnavailable.
func (s *Service) OAuthClient(ctx context.Context, id string) (*OAuthClient, error) {
	if !validClientID(id) {
		return nil, errNoClient
	}
	oc, err := s.store.OAuthClient(ctx, id)
	if ErrorCode(err) == ENotFound {
		return nil, errNoClient
	}
	return oc, err
}

var errNoClient = Errorf(ENotFound, "No such client.")

// DeleteClient removes a client with its consents, pending requests and
// codes, and ends every session it started (its tokens stop working
// everywhere); its admin_action row counts them (sessions_revoked).
// ENotFound.
func (s *Service) DeleteClient(ctx context.Context, c Client, id string) error {
	details := map[string]any{} // the sessions it ended, for its row
	return s.clientAction(ctx, c, id, "delete_client", details, func(tx *txn, oc *OAuthClient, now time.Time) error {
		ids, err := tx.RevokeClientSessions(ctx, oc.ID, uuid.Nil, now)
		if err != nil {
			return err
		}
		details["sessions_revoked"] = len(ids)
		if len(ids) > 0 {
			if err := tx.revoke(ctx, Revocation{At: now, SessionIDs: ids, Reason: "client_deleted"}); err != nil {
				return err
			}
		}
		return tx.DeleteClient(ctx, oc.ID)
	})
}

// RotateClientSecret gives a confidential client a new secret, which show
// is given once, in the rotation's transaction before it commits: an error
// of show's (the secret could not be written down) leaves the old secret
// in force. The old one stops working once it commits. EInvalid for a
// public client (it has none), ENotFound.
func (s *Service) RotateClientSecret(ctx context.Context, c Client, id string, show func(secret string) error) error {
	return s.clientAction(ctx, c, id, "rotate_client_secret", nil, func(tx *txn, oc *OAuthClient, now time.Time) error {
		if oc.Type != ClientConfidential {
			return &Error{Code: EInvalid, Message: "A public client has no secret to rotate.",
				Hint: "a public client (a browser or native app) proves itself with PKCE; create a confidential client for a server that keeps a secret"}
		}
		secret, _ := newOpaqueToken()
		oc.SecretDigest, oc.UpdatedAt = s.clientSecretDigest(oc.ID, secret), now
		if err := tx.UpdateClient(ctx, oc); err != nil {
			return err
		}
		return show(secret)
	})
}

// ClientChange is what UpdateClient changes; a nil field stays as it is.
type ClientChange struct {
	Name                   *string
	RedirectURIs           []string // nil: unchanged; never empty
	PostLogoutRedirectURIs []string // nil: unchanged; empty: none
	FirstParty             *bool
	// RequirePKCE: whether a confidential client's authorization requests
	// must carry a PKCE challenge (RFC 9700 §2.1.1); once set, a code the
	// client was issued without one is refused at the token endpoint too.
	RequirePKCE *bool
}

// clientField is one field a ClientChange can set: its name in the API,
// whether ch sets it and to what, how it is applied, and whether two
// clients differ in it. One table, so that a field added is added
// everywhere UpdateClient handles one.
type clientField struct {
	name  string
	value func(ch ClientChange) (any, bool) // the value ch sets, if it sets one
	apply func(ch ClientChange, oc *OAuthClient)
	same  func(a, b *OAuthClient) bool
}

var clientFields = []clientField{
	{"name", func(ch ClientChange) (any, bool) { return deref(ch.Name) },
		func(ch ClientChange, oc *OAuthClient) { oc.Name = *ch.Name },
		func(a, b *OAuthClient) bool { return a.Name == b.Name }},
	{"redirect_uris", func(ch ClientChange) (any, bool) { return ch.RedirectURIs, ch.RedirectURIs != nil },
		func(ch ClientChange, oc *OAuthClient) { oc.RedirectURIs = ch.RedirectURIs },
		func(a, b *OAuthClient) bool { return slices.Equal(a.RedirectURIs, b.RedirectURIs) }},
	{"post_logout_redirect_uris", func(ch ClientChange) (any, bool) { return ch.PostLogoutRedirectURIs, ch.PostLogoutRedirectURIs != nil },
		func(ch ClientChange, oc *OAuthClient) { oc.PostLogoutRedirectURIs = ch.PostLogoutRedirectURIs },
		func(a, b *OAuthClient) bool { return slices.Equal(a.PostLogoutRedirectURIs, b.PostLogoutRedirectURIs) }},
	{"first_party", func(ch ClientChange) (any, bool) { return deref(ch.FirstParty) },
		func(ch ClientChange, oc *OAuthClient) { oc.FirstParty = *ch.FirstParty },
		func(a, b *OAuthClient) bool { return a.FirstParty == b.FirstParty }},
	{"require_pkce", func(ch ClientChange) (any, bool) { return deref(ch.RequirePKCE) },
		func(ch ClientChange, oc *OAuthClient) { oc.RequirePKCE = *ch.RequirePKCE },
		func(a, b *OAuthClient) bool { return a.PKCERequired() == b.PKCERequired() }},
}

// deref is *p and whether p is set.
func deref[T any](p *T) (any, bool) {
	if p == nil {
		return nil, false
	}
	return *p, true
}

// UpdateClient changes a client in place and returns it, logged as
// update_client with the fields given and their new values, and which of
// them changed. Its sessions and its users' consents stay (deleting and
// creating it again would end them); a pending authorization request or
// an unredeemed code for a redirect URI no longer registered is refused
// when it is used. EInvalid (a field as CreateClient checks it, nothing to
// change, a public client without PKCE), ENotFound.
func (s *Service) UpdateClient(ctx context.Context, c Client, id string, ch ClientChange) (*OAuthClient, error) {
	details := map[string]any{}
	var given []clientField
	for _, f := range clientFields {
		if v, ok := f.value(ch); ok {
			given, details[f.name] = append(given, f), v
		}
	}
	if len(given) == 0 {
		return nil, &Error{Code: EInvalid, Message: "Nothing to change.",
			Hint: "give at least one of name, redirect_uris, post_logout_redirect_uris, first_party, require_pkce"}
	}
	if err := validClientChange(ch); err != nil {
		return nil, err
	}
	var updated *OAuthClient
	err := s.clientAction(ctx, c, id, "update_client", details, func(tx *txn, oc *OAuthClient, now time.Time) error {
		if ch.RequirePKCE != nil && !*ch.RequirePKCE && oc.Type == ClientPublic {
			return &Error{Code: EInvalid, Message: "A public client always requires PKCE.",
				Fields: []FieldError{{Field: "require_pkce", Message: "must be true for a public client"}}}
		}
		before := *oc
		changed := []string{} // what the row says changed is what did, of the fields given
		for _, f := range given {
			if f.apply(ch, oc); !f.same(&before, oc) {
				changed = append(changed, f.name)
			}
		}
		details["changed"] = changed
		oc.UpdatedAt = now
		updated = oc
		return tx.UpdateClient(ctx, oc)
	})
	if err != nil {
		return nil, err
	}
	return updated, nil
}

// clientAction runs fn on the (locked) client and logs it as action, with
// details (which may be nil, and which fn may fill in) beside the action
// and the client's id.
func (s *Service) clientAction(ctx context.Context, c Client, id, action string, details map[string]any,
	fn func(tx *txn, oc *OAuthClient, now time.Time) error) error {
	if !validClientID(id) {
		return errNoClient
	}
	return s.inTx(ctx, func(tx *txn) error {
		now := s.now()
		oc, err := tx.OAuthClient(ctx, id)
		if ErrorCode(err) == ENotFound {
			return errNoClient
		}
		if err != nil {
			return err
		}
		if err := fn(tx, oc, now); err != nil {
			return err
		}
		logged := map[string]any{"action": action, "client_id": oc.ID}
		maps.Copy(logged, details) // as fn left them
		return s.logAdmin(ctx, tx, now, c, uuid.Nil, logged)
	})
}

var errInvalidClient = &Error{Code: EInvalidCredentials, Message: "The client is unknown or its secret is wrong."}

// badClientAuthsPerMinute bounds the refused client authentications logged
// a minute per client IP, whatever client_id they named: one count for all,
// so that inventing ids cannot flood the security log, and so that the 429
// does not tell a registered client_id (its own count) from an invented one
// (a shared count). Only refusals count: the right secret is never limited.
const badClientAuthsPerMinute = 10

// AuthenticateClient checks a client's credentials at the token endpoint:
// a confidential client must present its secret, a public one none. method
// is how they came (client_secret_basic, client_secret_post, none), for the
// audit row. A refusal is logged as oidc_client_auth_failed with the
// client_id as presented and the method, never the secret; past
// badClientAuthsPerMinute refusals a minute from one IP it is
// ERateLimited, unlogged. EInvalidCredentials for an unknown client or a
// wrong, missing or unexpected secret (one answer for all), ERateLimited,
// EUnavailable.
func (s *Service) AuthenticateClient(ctx context.Context, c Client, id, secret, method string) (*OAuthClient, error) {
	refuse := func(known *OAuthClient, reason string) error {
		return s.refuseClient(ctx, c, known, id, method, reason)
	}
	if !validClientID(id) {
		return nil, refuse(nil, "unknown client")
	}
	oc, err := s.store.OAuthClient(ctx, id)
	if ErrorCode(err) == ENotFound {
		return nil, refuse(nil, "unknown client")
	}
	if err != nil {
		return nil, err
	}
	switch {
	case oc.ID == s.cfg.Audience:
		// Made before CreateClient refused the id (serve logs an error):
		// its ID tokens would carry every access token's aud.
		return nil, refuse(oc, "client id is the access tokens' audience")
	case oc.Type == ClientPublic && secret != "":
		return nil, refuse(oc, "secret from a public client")
	case oc.Type == ClientPublic:
	case secret == "":
		return nil, refuse(oc, "no secret from a confidential client")
	case len(secret) > 512 ||
		subtle.ConstantTimeCompare([]byte(s.clientSecretDigest(oc.ID, secret)), []byte(oc.SecretDigest)) != 1:
		return nil, refuse(oc, "wrong secret")
	}
	return oc, nil
}

// RefuseClient logs a client authentication the token endpoint refused
// before AuthenticateClient could check it (Basic credentials that do not
// decode, no credentials at all) as AuthenticateClient logs its own
// refusals, under the same bound: id is the client_id as far as it could
// be read (a registered one is named, any other text digested), method and
// reason as AuthenticateClient's. EInvalidCredentials, ERateLimited or
// EUnavailable.
func (s *Service) RefuseClient(ctx context.Context, c Client, id, method, reason string) error {
	var known *OAuthClient
	if validClientID(id) {
		oc, err := s.store.OAuthClient(ctx, id)
		switch {
		case err == nil:
			known = oc
		case ErrorCode(err) != ENotFound:
			return err
		}
	}
	return s.refuseClient(ctx, c, known, id, method, reason)
}

// refuseClient logs a refused client authentication and returns
// errInvalidClient, or ERateLimited (unlogged) past the bound. known is
// the registered client, nil when id names none. A registered client_id is
// a public identifier and is logged as it is; any other text is logged as
// its digest and length only, since what comes in the client_id field may
// be a secret pasted into the wrong one.
func (s *Service) refuseClient(ctx context.Context, c Client, known *OAuthClient, id, method, reason string) error {
	if err := s.limit(ctx, "bad-client:"+clientKey(c), badClientAuthsPerMinute, time.Minute); err != nil {
		return err
	}
	details := map[string]any{"auth_method": truncate(method, 32)}
	if known != nil {
		details["client_id"] = known.ID
	} else {
		details["client_id_digest"], details["client_id_length"] = s.clientIDDigest(id), len(id)
	}
	l := s.audit(s.now(), c, EventOIDCClientAuthFailed, ResultFailure, uuid.Nil, reason, details)
	if err := s.logEvent(ctx, l); err != nil {
		return err
	}
	return errInvalidClient
}

// clientIDDigest names a client_id that matches no client in the security
// log: HMAC-SHA-256 under the shared refresh key with its own label, cut to
// 12 hex characters. Repeats of one text can be grouped; without the key
// no one can test a guess against the log, and 48 bits of a secret's
// digest give nothing of the secret.
func (s *Service) clientIDDigest(id string) string {
	return hex.EncodeToString(labelledMAC(s.refreshKey, "authd unknown client id v1", id)[:6])
}

// clientSecretDigest is the stored form of a client secret:
// HMAC-SHA-256 under the shared refresh key, labelled and bound to the
// client. The secrets are 256-bit random strings, so a fast digest is as
// strong as a slow hash, and without the key a copy of the database cannot
// even test a guess.
func (s *Service) clientSecretDigest(clientID, secret string) string {
	return hex.EncodeToString(labelledMAC(s.refreshKey, "authd client secret v1", clientID, secret))
}

// PlainText reports whether s is text a client may hand authd to keep or
// echo (a name, an OAuth state or nonce): valid UTF-8 without control
// characters. PostgreSQL refuses invalid UTF-8 and NUL outright.
func PlainText(s string) bool {
	return utf8.ValidString(s) && strings.IndexFunc(s, unicode.IsControl) < 0
}

// validClientID reports whether id can name a client: 1 to 64 characters
// of letters, digits, '.', '_' and '-'.
func validClientID(id string) bool {
	if id == "" || len(id) > MaxClientIDLength {
		return false
	}
	for _, r := range id {
		if !(r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("._-", r))) {
			return false
		}
	}
	return true
}

func validClientSpec(spec ClientSpec) error {
	var fields []FieldError
	// Not only dots: "." and ".." are cleaned out of every URL path that
	// would name the client (one made before this rule is still found by
	// the CLI, which names it without a path).
	if !validClientID(spec.ID) || strings.Trim(spec.ID, ".") == "" {
		fields = append(fields, FieldError{Field: "client_id", Message: "must be 1 to 64 letters, digits, '.', '_' or '-', not only dots"})
	}
	fields = append(fields, nameErrors(spec.Name)...)
	if _, err := ParseClientType(string(spec.Type)); err != nil {
		fields = append(fields, FieldError{Field: "type", Message: "must be public or confidential"})
	}
	return fieldErrors(append(fields, uriErrors(spec.RedirectURIs, spec.PostLogoutRedirectURIs, true)...))
}

// validClientChange checks what ch sets as CreateClient checks it.
func validClientChange(ch ClientChange) error {
	var fields []FieldError
	if ch.Name != nil {
		fields = nameErrors(*ch.Name)
	}
	return fieldErrors(append(fields, uriErrors(ch.RedirectURIs, ch.PostLogoutRedirectURIs, ch.RedirectURIs != nil)...))
}

func fieldErrors(fields []FieldError) error {
	if len(fields) > 0 {
		return &Error{Code: EInvalid, Message: InvalidFields, Fields: fields} // invalidField's, of several
	}
	return nil
}

// nameErrors checks a client's name, which the consent page shows. No
// bidirectional control: U+202E (right-to-left override) would let
// "App\u202eelgoog" read as another name there; no invisible format
// character (a zero-width space, a soft hyphen), which would let two
// clients show one name. The joiners and tags that scripts and emoji need
// stay, where they do something (hiddenFormat).
func nameErrors(name string) []FieldError {
	if trimmed := strings.TrimSpace(name); trimmed == "" || trimmed != name || utf8.RuneCountInString(name) > MaxClientNameLength ||
		!PlainText(name) || hiddenFormat([]rune(name)) {
		return []FieldError{{Field: "name", Message: "must be 1 to 255 printable characters, without leading or trailing " +
			"spaces, nor characters that show nothing (zero-width, fillers, controls)"}}
	}
	return nil
}

// hiddenFormat reports whether rs holds a character that shows nothing,
// or not itself, where it stands: a bidirectional control, a format or
// control character, a line or paragraph separator, a space other than
// U+0020, a default-ignorable one (a Hangul filler, the combining grapheme
// joiner), the blank braille pattern. Kept where they do something: ZWNJ
// and ZWJ between letters of the scripts they shape (Arabic, Indic, …) or
// in emoji sequences, a variation selector after a symbol or ideograph it
// can vary, and the tags of a subdivision's flag (U+1F3F4, tags,
// U+E007F). "Grafana\u200d", "a\u3164" or "a\u034f" would otherwise read
// as "Grafana" or "a".
func hiddenFormat(rs []rune) bool {
	const blackFlag, cancelTag = 0x1F3F4, 0xE007F
	isTag := func(r rune) bool { return r >= 0xE0020 && r < cancelTag }
	hidden := func(r rune) bool {
		return unicode.In(r, unicode.Bidi_Control, unicode.Cf, unicode.Cc, unicode.Zl, unicode.Zp,
			unicode.Other_Default_Ignorable_Code_Point) || unicode.Is(unicode.Zs, r) && r != ' ' || r == '\u2800'
	}
	// varies: a character with variation sequences: a symbol (emoji's text
	// or picture form) or a Han ideograph, not ASCII.
	varies := func(i int) bool {
		return i >= 0 && i < len(rs) && rs[i] > unicode.MaxASCII && unicode.In(rs[i], unicode.So, unicode.Han)
	}
	// joins: a character of a script whose letters ZWNJ and ZWJ shape, or
	// of emoji (symbols, modifiers; a variation selector ends one), not
	// ASCII (^ and ` are symbols too).
	joins := func(i int) bool {
		return i >= 0 && i < len(rs) && rs[i] > unicode.MaxASCII && (unicode.In(rs[i], unicode.Arabic, unicode.Syriac,
			unicode.Nko, unicode.Thaana, unicode.Mongolian, unicode.Devanagari, unicode.Bengali, unicode.Gurmukhi,
			unicode.Gujarati, unicode.Oriya, unicode.Tamil, unicode.Telugu, unicode.Kannada, unicode.Malayalam,
			unicode.Sinhala, unicode.So, unicode.Sk) || unicode.Is(unicode.Variation_Selector, rs[i]))
	}
	for i := 0; i < len(rs); i++ {
		switch r := rs[i]; {
		case r == '\u200c' || r == '\u200d':
			if !joins(i-1) || !joins(i+1) || unicode.Is(unicode.Variation_Selector, rs[i+1]) {
				return true
			}
		case unicode.Is(unicode.Variation_Selector, r):
			if !varies(i - 1) {
				return true
			}
		case isTag(r) && i > 0 && rs[i-1] == blackFlag:
			j := i
			for j < len(rs) && isTag(rs[j]) {
				j++
			}
			if j == len(rs) || rs[j] != cancelTag {
				return true
			}
			i = j // past the cancel tag
		case hidden(r):
			return true
		}
	}
	return false
}

// uriErrors checks a client's redirect URIs (at least one when
// redirectsGiven) and post-logout redirect URIs.
func uriErrors(redirects, logouts []string, redirectsGiven bool) []FieldError {
	var fields []FieldError
	bad := func(field, msg string) { fields = append(fields, FieldError{Field: field, Message: msg}) }
	if redirectsGiven && len(redirects) == 0 || len(redirects) > MaxRedirectURIs {
		bad("redirect_uris", fmt.Sprintf("must list 1 to %d URIs", MaxRedirectURIs))
	}
	if len(logouts) > MaxRedirectURIs {
		bad("post_logout_redirect_uris", fmt.Sprintf("must list at most %d URIs", MaxRedirectURIs))
	}
	for _, list := range []struct {
		field string
		uris  []string
	}{{"redirect_uris", redirects}, {"post_logout_redirect_uris", logouts}} {
		seen := map[string]bool{}
		for _, u := range list.uris {
			if err := ValidRedirectURI(u); err != nil {
				bad(list.field, fmt.Sprintf("%q: %v", truncate(u, 100), err))
			} else if seen[u] {
				bad(list.field, fmt.Sprintf("%q is listed twice", u))
			}
			seen[u] = true
		}
	}
	return fields
}

// ValidRedirectURI checks a redirect or post-logout URI for registration
// (RFC 6749 §3.1.2, RFC 8252, OAuth 2.1): absolute, no fragment, no
// credentials, no wildcard; https to a host name written as DNS does or an
// IP address, or http only to a loopback address, or a private-use scheme
// of a native app (one with a dot, such as com.example.app:/callback). They
// are matched exactly when used.
func ValidRedirectURI(raw string) error {
	if !utf8.ValidString(raw) {
		return errors.New("must be UTF-8 text") // not matched as given, once stored
	}
	if raw == "" || len(raw) > MaxRedirectURILength || strings.ContainsAny(raw, " \t\r\n*\\") ||
		strings.IndexFunc(raw, unicode.IsControl) >= 0 {
		return fmt.Errorf("must be an absolute URI of at most %d characters, without spaces or wildcards", MaxRedirectURILength)
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() {
		return fmt.Errorf("must be an absolute URI")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return fmt.Errorf("must not have a fragment")
	}
	if u.User != nil {
		return fmt.Errorf("must not carry credentials")
	}
	if strings.HasSuffix(u.Host, ":") {
		return fmt.Errorf("must not end its host with an empty port")
	}
	if p := u.Port(); p != "" && !validPort(p) {
		return fmt.Errorf("must have a port from 1 to 65535, without leading zeros")
	}
	if name := responseParam(u.RawQuery); name != "" {
		return fmt.Errorf("must not have %q in its query: authd adds it to the answer (as %s)", name, strings.Join(responseParams, ", "))
	}
	switch u.Scheme {
	case "https":
		if u.Host == "" {
			return fmt.Errorf("must name a host")
		}
		if !hostName(u.Hostname()) {
			return fmt.Errorf("must name its host as an RFC 1123 host name (labels of ASCII letters, digits and inner hyphens, " +
				"no empty one, no final dot, the last not a number; a Unicode name as its xn-- form) or an IP address without a zone")
		}
	case "http":
		if !loopbackHost(u.Hostname()) {
			return fmt.Errorf("http is allowed only to a loopback address (127.0.0.1, [::1], localhost); use https")
		}
	default:
		if !strings.Contains(u.Scheme, ".") {
			return fmt.Errorf("must be https, http to a loopback address, or a reverse-domain private-use scheme")
		}
	}
	return nil
}

// responseParams are the parameters authd adds to a redirect URI's query
// in an answer (RFC 6749 §4.1.2, RFC 9207): one the URI has already would
// come twice, and a client reading the first would take the one
// registered, say a fixed state, and fail every sign-in.
var responseParams = []string{"code", "state", "iss", "error", "error_description", "error_uri"}

// responseParam is the first name of responseParams that query has, or "".
// Pairs are split at ";" as well as "&", as some clients' parsers do.
func responseParam(query string) string {
	for pair := range strings.FieldsFuncSeq(query, func(r rune) bool { return r == '&' || r == ';' }) {
		name, _, _ := strings.Cut(pair, "=")
		if unescaped, err := url.QueryUnescape(name); err == nil {
			name = unescaped
		}
		if slices.Contains(responseParams, name) {
			return name
		}
	}
	return ""
}

// hostName reports whether host is an IP address (no zone, no IPv4
// mapped into IPv6: browsers refuse the one and read the other otherwise)
// or a DNS host name (DNSHostName). These are the hosts a page's
// Content-Security-Policy can name, so that the sign-in pages' form-action
// allows the redirect to this host alone, not to every https URL (an IPv6
// literal aside, which CSP cannot name).
func hostName(host string) bool {
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.Zone() == "" && !ip.Is4In6()
	}
	return DNSHostName(host)
}

// DNSHostName reports whether host is an RFC 1123 host name (a Unicode
// name in its xn-- form) of at most 253 bytes whose last label is not a
// number, which a browser would read as an IPv4 address (WHATWG URL:
// 0x7f000001 is 127.0.0.1, 1.2.3 is 1.2.0.3): a host CSP3's host-source
// names as the browser does.
func DNSHostName(host string) bool {
	labels := strings.Split(host, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' ||
			strings.ContainsFunc(l, func(r rune) bool {
				return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-')
			}) {
			return false
		}
	}
	last := strings.ToLower(labels[len(labels)-1])
	hex, isHex := strings.CutPrefix(last, "0x")
	return len(host) <= 253 && strings.Trim(last, "0123456789") != "" && !(isHex && strings.Trim(hex, "0123456789abcdef") == "")
}

// validPort reports whether p is a port from 1 to 65535 written without a
// leading zero.
func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535 && p[0] != '0'
}

func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback() && ip.Zone() == "" && !ip.Is4In6()
}
