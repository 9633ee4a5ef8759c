package authd

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// The flows of authd as an OpenID provider (issue 10), in the domain's
// words: a browser signs in (with the same Login and VerifyMFA as the JSON
// API) and holds a cookie that is a session like any other; an
// authorization request waits for it; the user consents once per client
// that is not first-party; a single-use code, bound to client, redirect URI
// and PKCE, starts a session of the client, whose tokens are the JSON API's
// (RFC 9068 access tokens, rotating refresh tokens). The oidc adapter speaks
// the protocol.

// Lifetimes of the OpenID Connect rows.
const (
	AuthRequestTTL = 10 * time.Minute // from /authorize to the code, sign-in and consent included
	AuthCodeTTL    = 60 * time.Second
)

// The scopes authd grants.
const (
	ScopeOpenID        = "openid"
	ScopeEmail         = "email"
	ScopeOfflineAccess = "offline_access"
)

// Scopes are the scopes authd knows, in the order they are shown.
func Scopes() []string { return []string{ScopeOpenID, ScopeEmail, ScopeOfflineAccess} }

// SignIn is the hosted pages' password step: Login exactly (rate limits,
// lockout, enumeration safety, audit), whose new session becomes a browser
// session. It returns the cookie value, a secret whose digest names the
// session. For an account with a second factor the error is *MFARequired,
// and SignInMFA or SignInMFAPasskey finishes. Errors as Login.
func (s *Service) SignIn(ctx context.Context, c Client, email, password string) (string, error) {
	pair, err := s.Login(ctx, c, email, password, browserDevice(c))
	return s.asBrowser(ctx, pair, err)
}

// SignInMFA is the hosted pages' second step: VerifyMFA exactly, whose new
// session becomes a browser session. Errors as VerifyMFA.
func (s *Service) SignInMFA(ctx context.Context, c Client, mfaToken, method, code string) (string, error) {
	pair, err := s.VerifyMFA(ctx, c, mfaToken, method, code)
	return s.asBrowser(ctx, pair, err)
}

// SignInPasskey is the hosted pages' passwordless sign-in:
// FinishPasskeyLogin exactly (amr hwk or swk, and mfa), whose new session
// becomes a browser session. Errors as FinishPasskeyLogin.
func (s *Service) SignInPasskey(ctx context.Context, c Client, credential []byte) (string, error) {
	pair, err := s.FinishPasskeyLogin(ctx, c, credential, browserDevice(c))
	return s.asBrowser(ctx, pair, err)
}

// SignInMFAPasskey is the hosted pages' second step with a passkey:
// VerifyMFAPasskey exactly (amr pwd, hwk or swk, mfa), whose new session
// becomes a browser session. Errors as VerifyMFAPasskey.
func (s *Service) SignInMFAPasskey(ctx context.Context, c Client, mfaToken string, credential []byte) (string, error) {
	pair, err := s.VerifyMFAPasskey(ctx, c, mfaToken, credential)
	return s.asBrowser(ctx, pair, err)
}

// asBrowser turns the result of a sign-in flow into its session's browser
// cookie (browserCookie), or passes its error on.
func (s *Service) asBrowser(ctx context.Context, pair *TokenPair, err error) (string, error) {
	if err != nil {
		return "", err
	}
	return s.browserCookie(ctx, pair.SessionID)
}

// browserDevice describes a browser sign-in in the user's session list.
func browserDevice(c Client) string {
	return truncate("Browser sign-in: "+c.UserAgent, MaxDeviceInfoLength)
}

// browserCookie gives the session a new browser cookie and returns it.
func (s *Service) browserCookie(ctx context.Context, session uuid.UUID) (string, error) {
	raw, digest := newOpaqueToken()
	if err := s.store.SetBrowserDigest(ctx, session, digest); err != nil {
		return "", err
	}
	return raw, nil
}

// BrowserSession returns the live session of a browser cookie and its
// user. Every way a session ends applies: logout, logout-all, password
// change or reset, a second factor's removal, an administrator's revoke or
// lock, erasure, expiry; a revocation on another instance counts as soon
// as it arrives.
// EInvalidToken otherwise, EUnavailable.
func (s *Service) BrowserSession(ctx context.Context, cookie string) (*Session, *User, error) {
	digest, err := opaqueDigest(cookie)
	if err != nil {
		return nil, nil, errInvalidToken
	}
	sess, err := s.store.BrowserSession(ctx, digest)
	if ErrorCode(err) == ENotFound {
		return nil, nil, errInvalidToken
	}
	if err != nil {
		return nil, nil, err
	}
	now := s.now()
	if !sess.Active(now) || s.revocations.Revoked(sess.ID) {
		return nil, nil, errInvalidToken
	}
	u, err := s.store.User(ctx, sess.UserID)
	if err != nil {
		return nil, nil, err
	}
	if u.IsDeleted() || u.LockedByAdmin(now) {
		return nil, nil, errInvalidToken
	}
	return sess, u, nil
}

// EndSession ends a session at the user's request (the sign-out page,
// RP-initiated logout): the session and its tokens, everywhere, logged as
// logout. A session already ended is no error. ENotFound, EUnavailable.
func (s *Service) EndSession(ctx context.Context, c Client, id uuid.UUID) error {
	return s.EndUserSession(ctx, c, id, uuid.Nil)
}

// EndUserSession is EndSession for a session named by a relying party (an
// id_token_hint's sid): it ends it only when it is user's (uuid.Nil: any
// user's, when no one is signed in on this browser). ENotFound, EUnavailable.
func (s *Service) EndUserSession(ctx context.Context, c Client, id, user uuid.UUID) error {
	return s.inTx(ctx, func(tx *txn) error {
		sess, err := tx.Session(ctx, id)
		if err != nil {
			return err
		}
		now := s.now()
		if !sess.RevokedAt.IsZero() || user != uuid.Nil && sess.UserID != user {
			return nil
		}
		if err := s.endSession(ctx, tx, sess, now, string(EventLogout)); err != nil {
			return err
		}
		return tx.CreateSecurityLog(ctx, s.audit(now, c, EventLogout, ResultSuccess, sess.UserID, "",
			map[string]any{"session_id": sess.ID.String(), "client_id": sess.ClientID}))
	})
}

// ErrPublicAccessRevocation refuses a public client's revocation of an
// access token: an access token travels to every resource server, and a
// public client's id is no secret, so whoever saw the token could end the
// user's session with it. A public client revokes its refresh token.
var ErrPublicAccessRevocation = Errorf(EInvalid,
	"A public client revokes its refresh token: an access token is not revoked on a public client's word.")

// foreignRevocationsPerMinute bounds the rows a client's revocations of
// tokens not its own write on one user a minute: a client holding such a
// token could otherwise write its user a row per request. The bound is
// the user's, not the client's alone, so that rows about its own tokens
// cannot spend the budget that logs a victim's.
const foreignRevocationsPerMinute = 10

// RevokeClientToken ends, at its client's request (RFC 7009), the session
// a token of that client (authenticated by the caller) belongs to — an
// access token it was issued (its sid; a confidential client's only:
// ErrPublicAccessRevocation) or a refresh token of one of its sessions,
// rotated out or not — with every token of that session, everywhere,
// logged as a logout. Any other token (unknown, malformed, an expired
// access token, one of another client or of authd's own logins, a session
// ended already) changes nothing and is no error: RFC 7009 answers it
// alike (§2.2), and a client must not learn whether another's token is
// live; another client's is logged on its user, up to
// foreignRevocationsPerMinute rows a minute per client and user. The
// revocation and its row are made whatever the client does meanwhile.
// EUnavailable.
func (s *Service) RevokeClientToken(ctx context.Context, c Client, oc *OAuthClient, raw string) error {
	ctx, cancel := s.detach(ctx)
	defer cancel()
	if strings.Count(raw, ".") == 2 && oc.Type == ClientPublic { // a JWT: an access token, or junk
		return ErrPublicAccessRevocation
	}
	var session uuid.UUID
	if claims, err := s.tokens.Verify(raw, s.now()); err == nil {
		session = claims.SessionID
	}
	digest, derr := opaqueDigest(raw)
	if session == uuid.Nil && derr != nil {
		return nil
	}
	// What cannot change (no such token, another client's session, one
	// ended already) is answered from a read that locks nothing: the
	// transaction's locking read share-locks the user's row, and a flood of
	// such revocations held it without a break (a review: an update of the
	// user waited past 10 s). A live session of the client's is read again,
	// locked, and ended.
	sess, _, err := revocationTarget(ctx, s.store, session, digest)
	var foreign uuid.UUID // the user of a session not the client's (live or not)
	switch {
	case ErrorCode(err) == ENotFound:
		return nil
	case err != nil:
		return err
	case sess.ClientID != oc.ID:
		foreign = sess.UserID
	case !sess.RevokedAt.IsZero():
		return nil
	default:
		if foreign, err = s.endClientSession(ctx, c, oc, session, digest); err != nil || foreign == uuid.Nil {
			return err
		}
	}
	// Past the bound the answer is the same 200, unlogged: the client
	// learns nothing from it.
	if s.limit(ctx, "foreign-revocation:"+oc.ID+":"+foreign.String(), foreignRevocationsPerMinute, time.Minute) != nil {
		return nil
	}
	return s.logEvent(ctx, s.audit(s.now(), c, EventLogout, ResultFailure, foreign,
		"revocation of a token not the client's", map[string]any{"client_id": oc.ID}))
}

// endClientSession is RevokeClientToken's transaction: it ends the session
// the token names, read again and locked, when it is still oc's and live.
// foreign is its user when it is another client's.
func (s *Service) endClientSession(ctx context.Context, c Client, oc *OAuthClient, session uuid.UUID,
	digest string) (foreign uuid.UUID, err error) {
	err = s.inTx(ctx, func(tx *txn) error {
		now := s.now()
		sess, t, err := revocationTarget(ctx, tx, session, digest)
		if ErrorCode(err) == ENotFound {
			return nil
		}
		if err != nil {
			return err
		}
		switch {
		case sess.ClientID != oc.ID:
			foreign = sess.UserID
			return nil
		case !sess.RevokedAt.IsZero():
			return nil
		}
		if err := s.endSession(ctx, tx, sess, now, string(EventLogout)); err != nil {
			return err
		}
		return tx.CreateSecurityLog(ctx, s.audit(now, c, EventLogout, ResultSuccess, sess.UserID, "",
			map[string]any{"session_id": sess.ID.String(), "client_id": oc.ID, "token_revoked": true,
				"rotated": t != nil && t.Revoked}))
	})
	return foreign, err
}

// revocationTarget reads through q the session a client's token names: by
// its sid (session, an access token's) or by the refresh token's digest;
// with that refresh token, when it is one.
func revocationTarget(ctx context.Context, q Queries, session uuid.UUID, digest string) (*Session, *Token, error) {
	if session != uuid.Nil {
		sess, err := q.Session(ctx, session)
		return sess, nil, err
	}
	t, sess, _, err := q.RefreshSession(ctx, digest)
	return sess, t, err
}

// SaveAuthRequest keeps a validated authorization request for
// AuthRequestTTL, giving it its id and times. Each costs a row, so the
// client IP's rate limit applies (SPEC 6.7). EInvalid (a state or nonce
// that is not PlainText), ENotFound (no such client), ERateLimited,
// EUnavailable.
func (s *Service) SaveAuthRequest(ctx context.Context, c Client, r *AuthRequest) error {
	for _, f := range [...]struct{ name, v string }{{"state", r.State}, {"nonce", r.Nonce}} {
		if !PlainText(f.v) {
			return &Error{Code: EInvalid, Message: "invalid authorization request",
				Fields: []FieldError{{Field: f.name, Message: "must be UTF-8 text without control characters"}}}
		}
	}
	if err := s.limitIP(ctx, "authorize", c); err != nil {
		return err
	}
	now := s.now()
	r.ID, r.CreatedAt, r.ExpiresAt = NewID(), now, now.Add(AuthRequestTTL)
	return s.store.CreateAuthRequest(ctx, r)
}

var errNoAuthRequest = Errorf(ENotFound, "This sign-in request has expired or was already used; start again from the application.")

// lockRequester locks, first in a transaction that writes rows of theirs
// (Store.InTx), the user a browser signed in, and refuses one erased or
// locked by an administrator (errNoAuthRequest: the request died with the
// account's access), so that no consent or code outlives an erasure or a
// lock that committed while the request waited for it.
func lockRequester(ctx context.Context, tx *txn, user uuid.UUID, now time.Time) error {
	u, err := tx.User(ctx, user)
	if ErrorCode(err) == ENotFound || err == nil && (u.IsDeleted() || u.LockedByAdmin(now)) {
		return errNoAuthRequest
	}
	return err
}

// AuthRequest returns a pending authorization request and its client.
// ENotFound when it is unknown, used or expired, or its client deleted or
// its redirect URI no longer the client's; EUnavailable.
func (s *Service) AuthRequest(ctx context.Context, id uuid.UUID) (*AuthRequest, *OAuthClient, error) {
	r, err := s.store.AuthRequest(ctx, id)
	if ErrorCode(err) == ENotFound {
		return nil, nil, errNoAuthRequest
	}
	if err != nil {
		return nil, nil, err
	}
	if !s.now().Before(r.ExpiresAt) {
		return nil, nil, errNoAuthRequest
	}
	oc, err := s.store.OAuthClient(ctx, r.ClientID)
	if ErrorCode(err) == ENotFound || err == nil && !oc.RedirectsTo(r.RedirectURI) {
		return nil, nil, errNoAuthRequest // its client deleted, or its redirect URI no longer registered
	}
	return r, oc, err
}

// NeedsConsent reports whether the user must still consent to give the
// client the scopes: never for a first-party client, else unless an earlier
// consent covers them. EUnavailable.
func (s *Service) NeedsConsent(ctx context.Context, oc *OAuthClient, user uuid.UUID, scopes []string) (bool, error) {
	if oc.FirstParty {
		return false, nil
	}
	consent, err := s.store.Consent(ctx, user, oc.ID)
	if ErrorCode(err) == ENotFound {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return !consent.Covers(scopes), nil
}

// saveConsent remembers, in tx, that the user lets the client have the
// scopes (with any granted before), logged as oidc_consent_granted.
func (s *Service) saveConsent(ctx context.Context, tx *txn, c Client, user uuid.UUID, clientID string, scopes []string,
	now time.Time) error {
	granted := scopes
	old, err := tx.Consent(ctx, user, clientID)
	switch ErrorCode(err) {
	case "":
		granted = append([]string{}, old.Scopes...)
		for _, sc := range scopes {
			if !slices.Contains(granted, sc) {
				granted = append(granted, sc)
			}
		}
	case ENotFound:
	default:
		return err
	}
	if err := tx.SaveConsent(ctx, &Consent{ID: NewID(), UserID: user, ClientID: clientID, Scopes: granted,
		GrantedAt: now}); err != nil {
		return err
	}
	return tx.CreateSecurityLog(ctx, s.audit(now, c, EventOIDCConsentGranted, ResultSuccess, user, "",
		map[string]any{"client_id": clientID, "scopes": FormatScopes(granted)}))
}

// holdClient holds the client against deletion until tx ends
// (SharedClient), before anything else the flow locks, and returns it as it
// is now: a deletion, which locks the client first, and then its requests,
// consents and codes (the cascade), waits for the flow or the flow for it,
// and neither holds a row the other needs (a request, a consent) while it
// waits for the client's key-share lock a new code or consent takes.
// ENotFound (as errNoAuthRequest, the request gone with its client) when
// it is gone.
func holdClient(ctx context.Context, tx *txn, id string) (*OAuthClient, error) {
	oc, err := tx.SharedClient(ctx, id)
	if ErrorCode(err) == ENotFound {
		return nil, errNoAuthRequest
	}
	return oc, err
}

// DenyConsent records that the user refused the client the scopes of
// the request on the consent page: an oidc_consent_granted row with result
// failure and reason "consent denied" (SPEC 6.10: every step logged),
// written before the client hears access_denied, in the transaction that
// ends the request, so that the decision is final: the page cannot be sent
// again with Allow for a consent or a code, and a request a concurrent
// Allow already used (a double submit) is not denied after it got its
// code. Nothing else changes: a consent given before stays. ENotFound
// (errNoAuthRequest: used, expired, its client deleted, or its redirect
// URI no longer the client's), EUnavailable.
func (s *Service) DenyConsent(ctx context.Context, c Client, user uuid.UUID, req *AuthRequest) error {
	return s.inTx(ctx, func(tx *txn) error {
		now := s.now()
		oc, err := holdClient(ctx, tx, req.ClientID)
		if err != nil {
			return err
		}
		if err := endRequest(ctx, tx, oc, req, now); err != nil {
			return err
		}
		return tx.CreateSecurityLog(ctx, s.audit(now, c, EventOIDCConsentGranted, ResultFailure, user, "consent denied",
			map[string]any{"client_id": req.ClientID, "scopes": FormatScopes(req.Scopes)}))
	})
}

// pendingRequest reads, locked, the request of the client oc (held) read
// as req before tx, and refuses it (errNoAuthRequest) when it was used,
// denied or expired since, or its redirect URI is no longer one of the
// client's (an administrator changed them): nothing goes there.
func pendingRequest(ctx context.Context, tx *txn, oc *OAuthClient, req *AuthRequest, now time.Time) (*AuthRequest, error) {
	r, err := tx.AuthRequest(ctx, req.ID)
	if ErrorCode(err) == ENotFound || err == nil && (!now.Before(r.ExpiresAt) || r.ClientID != oc.ID ||
		!oc.RedirectsTo(r.RedirectURI)) {
		return nil, errNoAuthRequest
	}
	return r, err
}

// endRequest deletes the pending request read as req before tx
// (pendingRequest): it gets no code.
func endRequest(ctx context.Context, tx *txn, oc *OAuthClient, req *AuthRequest, now time.Time) error {
	if _, err := pendingRequest(ctx, tx, oc, req, now); err != nil {
		return err
	}
	return tx.DeleteAuthRequest(ctx, req.ID)
}

// Consents lists the clients the user has let in, newest first, with
// their names. A client deleted meanwhile (its consents go with it) is
// left out. EUnavailable.
func (s *Service) Consents(ctx context.Context, a *AccessClaims) ([]*Consent, map[string]*OAuthClient, error) {
	list, err := s.store.Consents(ctx, a.UserID)
	if err != nil {
		return nil, nil, err
	}
	clients := map[string]*OAuthClient{}
	kept := list[:0]
	for _, c := range list {
		if _, ok := clients[c.ClientID]; !ok {
			oc, err := s.store.OAuthClient(ctx, c.ClientID)
			if ErrorCode(err) == ENotFound {
				continue
			}
			if err != nil {
				return nil, nil, err
			}
			clients[c.ClientID] = oc
		}
		kept = append(kept, c)
	}
	return kept, clients, nil
}

// RevokeConsent withdraws the user's consent to a client and ends every
// session the client holds for the user (its tokens stop working
// everywhere); the next sign-in asks again. Logged as oidc_consent_revoked.
// ENotFound (no such consent: a first-party client's sessions end one by
// one, DELETE /v1/users/me/sessions/{id}), EUnavailable.
func (s *Service) RevokeConsent(ctx context.Context, c Client, a *AccessClaims, clientID string) error {
	if !validClientID(clientID) { // no client's, so no consent (nor a query the store refuses)
		return errNoConsent
	}
	return s.inTx(ctx, func(tx *txn) error {
		// The client first, held (as holdClient does): a deletion ends the
		// client's sessions, then deletes its consents. Then the user
		// before the consent and sessions, as every flow locks them
		// (Store.InTx): an erasure holds the user, ends the sessions and
		// deletes the consent.
		if _, err := tx.SharedClient(ctx, clientID); ErrorCode(err) == ENotFound {
			return errNoConsent
		} else if err != nil {
			return err
		}
		if _, err := tx.User(ctx, a.UserID); err != nil {
			return err
		}
		now := s.now()
		if err := tx.DeleteConsent(ctx, a.UserID, clientID); err != nil {
			if ErrorCode(err) == ENotFound {
				return errNoConsent
			}
			return err
		}
		ids, err := tx.RevokeClientSessions(ctx, clientID, a.UserID, now)
		if err != nil {
			return err
		}
		if len(ids) > 0 {
			if err := tx.revoke(ctx, Revocation{At: now, SessionIDs: ids, Reason: string(EventOIDCConsentRevoked)}); err != nil {
				return err
			}
		}
		return tx.CreateSecurityLog(ctx, s.audit(now, c, EventOIDCConsentRevoked, ResultSuccess, a.UserID, "",
			map[string]any{"client_id": clientID, "sessions_revoked": len(ids)}))
	})
}

var errNoConsent = Errorf(ENotFound, "No consent to this client.")

// ErrNotHinted refuses a code to a browser signed in as another user than
// the one the request's id_token_hint names (AuthRequest.HintSubject): an
// application that asked its user to confirm who they are must not get a
// code, with a fresh auth_time, for whoever signed in instead (OpenID
// Connect Core §3.1.2.1: login_required).
var ErrNotHinted = Errorf(EForbidden, "The account signed in is not the one the application asked for.")

// errSignInEnded refuses a code to a browser session that ended between
// the caller's read of it and the code's transaction.
var errSignInEnded = Errorf(EInvalidToken, "The sign-in ended; sign in again.")

// IssueCode finishes an authorization request for a signed-in browser
// session: the request is used up and a code valid for AuthCodeTTL is
// returned (the raw value; only its digest is kept), logged as
// oidc_authorized. The caller has checked consent and the request's
// MinAuthTime. ENotFound (the request is gone or its redirect URI no
// longer the client's, or its user was erased or locked by an
// administrator meanwhile), EInvalidToken (the browser
// session ended meanwhile: the request stays, for a new sign-in),
// ErrNotHinted (the request ends, logged), EUnavailable.
func (s *Service) IssueCode(ctx context.Context, c Client, requestID uuid.UUID, sess *Session) (string, *AuthRequest, error) {
	return s.issueCode(ctx, c, requestID, sess, false)
}

// AllowConsent is IssueCode for the consent page's Allow: in the same
// transaction the user's consent to the request's client and scopes is
// remembered (saveConsent). One transaction, so that a Deny sent from the
// same page (a second tab, a double submit) either ends the request first,
// and no consent is kept, or finds it used (DenyConsent).
func (s *Service) AllowConsent(ctx context.Context, c Client, requestID uuid.UUID, sess *Session) (string, *AuthRequest, error) {
	return s.issueCode(ctx, c, requestID, sess, true)
}

func (s *Service) issueCode(ctx context.Context, c Client, requestID uuid.UUID, sess *Session, consent bool) (string, *AuthRequest, error) {
	raw, digest := newOpaqueToken()
	// Its client, first: read before the transaction, which holds it.
	pending, err := s.store.AuthRequest(ctx, requestID)
	if ErrorCode(err) == ENotFound {
		return "", nil, errNoAuthRequest
	}
	if err != nil {
		return "", nil, err
	}
	var req *AuthRequest
	err = s.inTx(ctx, func(tx *txn) error {
		now := s.now()
		oc, err := holdClient(ctx, tx, pending.ClientID)
		if err != nil {
			return err
		}
		if err := lockRequester(ctx, tx, sess.UserID, now); err != nil {
			return err
		}
		// The browser session again, locked after its user: a sign-out of
		// it in flight commits first, and no code, nor an oidc_authorized
		// row, is made for a sign-in that ended.
		browser, err := tx.Session(ctx, sess.ID)
		if ErrorCode(err) == ENotFound || err == nil && !browser.Active(now) {
			return errSignInEnded
		}
		if err != nil {
			return err
		}
		req, err = pendingRequest(ctx, tx, oc, pending, now)
		if err != nil {
			return err
		}
		if req.HintSubject != uuid.Nil && browser.UserID != req.HintSubject {
			// The request ends here, as its client is told (login_required):
			// a sign-in of the hint's user afterwards must not finish it.
			if err := tx.DeleteAuthRequest(ctx, req.ID); err != nil {
				return err
			}
			return tx.refuse(ctx, s.audit(now, c, EventOIDCAuthorized, ResultFailure, browser.UserID,
				"signed in as another user than id_token_hint names", map[string]any{"client_id": req.ClientID}), ErrNotHinted)
		}
		if consent {
			if err := s.saveConsent(ctx, tx, c, browser.UserID, req.ClientID, req.Scopes, now); err != nil {
				return err
			}
		}
		if err := tx.DeleteAuthRequest(ctx, req.ID); err != nil {
			return err
		}
		// The sign-in is in use: past AUTHD_MAX_SESSIONS, the sessions
		// that end first are the least recently used (SignInState), and
		// the one this code's redemption makes must not end it.
		browser.LastUsedAt = now
		if err := tx.UpdateSession(ctx, browser); err != nil {
			return err
		}
		if err := tx.CreateAuthCode(ctx, &AuthCode{ID: NewID(), Digest: digest, ClientID: req.ClientID,
			UserID: browser.UserID, SessionID: browser.ID, RedirectURI: req.RedirectURI, CodeChallenge: req.CodeChallenge,
			CodeChallengeMethod: req.CodeChallengeMethod, Nonce: req.Nonce, Scopes: req.Scopes,
			AuthTime: browser.CreatedAt, AMR: browser.AMR, CreatedAt: now, ExpiresAt: now.Add(AuthCodeTTL)}); err != nil {
			return err
		}
		return tx.CreateSecurityLog(ctx, s.audit(now, c, EventOIDCAuthorized, ResultSuccess, browser.UserID, "",
			map[string]any{"client_id": req.ClientID, "scopes": FormatScopes(req.Scopes), "session_id": browser.ID.String()}))
	})
	if err != nil {
		return "", nil, err
	}
	return raw, req, nil
}

// CodeGrant is what redeeming a code yields: the session's token pair, the
// code (nonce, scopes, auth_time, amr for the ID token) and the user.
type CodeGrant struct {
	Pair *TokenPair
	Code *AuthCode
	User *User
}

// RedeemCode exchanges an authorization code of the (authenticated) client
// for a new session of that client and its first token pair (RFC 6749
// §4.1.3, RFC 7636). The code must be unused, unexpired, the client's,
// issued for redirectURI, and match the PKCE verifier when it has a
// challenge; the browser session it came from must still be live. A code
// presented a second time, with its redirect URI and verifier, ends the
// session its first redemption started (RFC 6749 §4.1.2) and is logged as
// oidc_code_reuse; without them it is refused as any code. Every refusal is
// EInvalidToken and logged; ERateLimited, EUnavailable.
func (s *Service) RedeemCode(ctx context.Context, c Client, client *OAuthClient, code, redirectURI, verifier string) (*CodeGrant, error) {
	// A redemption finishes whatever the client does (as a refresh): one
	// that half-closed while its COMMIT ran, told it failed, would retry
	// with a code now used, a reuse that ends the session it started; and
	// a refusal is logged.
	ctx, cancel := s.detach(ctx)
	defer cancel()
	digest, err := opaqueDigest(code)
	if err != nil {
		return nil, s.refuseToken(ctx, nil, c, EventOIDCCodeRedeemed, uuid.Nil, "malformed code",
			map[string]any{"client_id": client.ID})
	}
	// An unknown code is refused before the transaction, so that only a
	// redemption that can succeed holds the client (below): anyone may send
	// codes in a public client's name, and a stream of share locks could
	// hold off its deletion.
	if _, err := s.store.AuthCode(ctx, digest); ErrorCode(err) == ENotFound {
		return nil, s.refuseToken(ctx, nil, c, EventOIDCCodeRedeemed, uuid.Nil, "unknown code",
			map[string]any{"client_id": client.ID})
	} else if err != nil {
		return nil, err
	}
	var grant *CodeGrant
	err = s.inTx(ctx, func(tx *txn) error {
		now := s.now()
		// The client, as it is now (deleted or changed since its
		// authentication?), held against deletion until the commit: a
		// deletion waits, then ends the session this starts. Read before,
		// the deletion ended the client's sessions without this one, which
		// outlived its client.
		oc, err := tx.SharedClient(ctx, client.ID)
		if ErrorCode(err) == ENotFound {
			return s.refuseToken(ctx, tx, c, EventOIDCCodeRedeemed, uuid.Nil, "client deleted",
				map[string]any{"client_id": client.ID})
		}
		if err != nil {
			return err
		}
		ac, err := tx.AuthCode(ctx, digest) // locked: one redemption wins
		if ErrorCode(err) == ENotFound {
			return s.refuseToken(ctx, tx, c, EventOIDCCodeRedeemed, uuid.Nil, "unknown code", map[string]any{"client_id": oc.ID})
		}
		if err != nil {
			return err
		}
		ctxt := map[string]any{"client_id": oc.ID}
		refuse := func(reason string) error {
			return s.refuseToken(ctx, tx, c, EventOIDCCodeRedeemed, ac.UserID, reason, ctxt)
		}
		// A reuse is told only to whoever could have redeemed the code
		// (the client, authenticated or with the PKCE verifier): anyone
		// else who read a used code (history, logs) could otherwise end
		// the session it started.
		switch {
		case ac.ClientID != oc.ID:
			return refuse("code of another client")
		case ac.RedirectURI != redirectURI:
			return refuse("redirect_uri differs from the authorization request's")
		case !pkceMatches(ac.CodeChallenge, ac.CodeChallengeMethod, verifier):
			return refuse("PKCE verifier does not match")
		case !ac.UsedAt.IsZero():
			return s.codeReuse(ctx, tx, c, ac, now)
		case ac.CodeChallenge == "" && oc.PKCERequired():
			// Issued before the administrator required PKCE of the client
			// (a reuse of one redeemed before is still a reuse, above).
			return refuse("PKCE required for this client")
		case !oc.RedirectsTo(ac.RedirectURI):
			// Issued before the administrator removed the URI.
			return refuse("redirect_uri no longer registered")
		case !now.Before(ac.ExpiresAt):
			return refuse("code expired")
		}
		// The user and the sessions a new one ends before the browser
		// session, locked as every sign-in locks them (SignInState): a login
		// that would end this browser session holds the user while it
		// waits for the session, and a sign-out of it writes its audit row
		// under a lock on the user that this one lets through.
		st, err := tx.SignInState(ctx, ac.UserID, s.sessionKeep(), now)
		if err != nil {
			return err
		}
		u := st.User
		browser, err := tx.Session(ctx, ac.SessionID)
		if err != nil {
			return err
		}
		if !browser.Active(now) || u.IsDeleted() || u.LockedByAdmin(now) {
			return refuse("the sign-in ended before the code was redeemed")
		}
		if !oc.FirstParty {
			// A consent withdrawn after the code was issued takes it back.
			consent, err := tx.Consent(ctx, u.ID, oc.ID)
			if err != nil && ErrorCode(err) != ENotFound {
				return err
			}
			if consent == nil || !consent.Covers(ac.Scopes) {
				return refuse("consent withdrawn before the code was redeemed")
			}
		}
		sess := &Session{ID: NewID(), UserID: u.ID, DeviceInfo: truncate("OpenID client: "+oc.Name, MaxDeviceInfoLength),
			CreatedAt: now, LastUsedAt: now, ExpiresAt: browser.ExpiresAt, AMR: ac.AMR, ClientID: oc.ID, Scopes: ac.Scopes,
			SignedInWith: browser.SignedInWith}
		if err := s.evictSessions(ctx, tx, c, u.ID, st.Excess, now); err != nil {
			return err
		}
		if err := tx.CreateSession(ctx, sess); err != nil {
			return err
		}
		raw, _ := newOpaqueToken()
		pair, err := s.issuePair(ctx, tx, sess, raw, uuid.Nil, now)
		if err != nil {
			return err
		}
		ac.UsedAt, ac.IssuedSessionID = now, sess.ID
		if err := tx.UpdateAuthCode(ctx, ac); err != nil {
			return err
		}
		grant = &CodeGrant{Pair: pair, Code: ac, User: u}
		return tx.CreateSecurityLog(ctx, s.audit(now, c, EventOIDCCodeRedeemed, ResultSuccess, u.ID, "",
			map[string]any{"client_id": oc.ID, "session_id": sess.ID.String(), "scopes": FormatScopes(ac.Scopes)}))
	})
	if err != nil {
		return nil, err // a pair made before a failed commit is no pair
	}
	return grant, nil
}

// codeReuse answers a code presented again: whatever its first redemption
// issued stops working everywhere.
func (s *Service) codeReuse(ctx context.Context, tx *txn, c Client, ac *AuthCode, now time.Time) error {
	ctxt := map[string]any{"client_id": ac.ClientID, "code_id": ac.ID.String()}
	if ac.IssuedSessionID != uuid.Nil {
		sess, err := tx.Session(ctx, ac.IssuedSessionID)
		switch {
		case err == nil && sess.RevokedAt.IsZero():
			if err := s.endSession(ctx, tx, sess, now, string(EventOIDCCodeReuse)); err != nil {
				return err
			}
		case err != nil && ErrorCode(err) != ENotFound:
			return err
		}
		ctxt["session_id"] = ac.IssuedSessionID.String()
	}
	return tx.refuse(ctx, s.audit(now, c, EventOIDCCodeReuse, ResultFailure, ac.UserID,
		"authorization code presented again", ctxt), errInvalidToken)
}

// pkceMatches checks a PKCE verifier against the code's challenge (RFC
// 7636 §4.6): S256 only. A code without a challenge takes no verifier.
func pkceMatches(challenge, method, verifier string) bool {
	if challenge == "" {
		return verifier == ""
	}
	if method != "S256" || len(verifier) < 43 || len(verifier) > 128 ||
		strings.Trim(verifier, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~") != "" {
		return false // RFC 7636 §4.1: 43-128 unreserved characters
	}
	sum := sha256.Sum256([]byte(verifier))
	got := base64.RawURLEncoding.EncodeToString(sum[:])
	return subtle.ConstantTimeCompare([]byte(got), []byte(challenge)) == 1
}

// UserInfo returns the user of an access token (checked by Authenticate)
// and the scopes its session was granted. Only a token an OpenID Connect
// client was issued with the openid scope is taken (OIDC Core §5.3: the
// token of an OpenID Connect authentication); authd's own logins' tokens
// are not. EInvalidToken (not such a token; the user or session is gone,
// ended — by another instance too, before its notification arrives —
// deleted or locked by an administrator), EUnavailable.
func (s *Service) UserInfo(ctx context.Context, a *AccessClaims) (*User, []string, error) {
	if !a.ClientToken() || !slices.Contains(a.Scope, ScopeOpenID) {
		return nil, nil, errInvalidToken
	}
	u, err := s.Me(ctx, a)
	if err != nil {
		return nil, nil, err
	}
	sess, err := s.store.Session(ctx, a.SessionID)
	if ErrorCode(err) == ENotFound || err == nil && !sess.Active(s.now()) {
		return nil, nil, errInvalidToken
	}
	if err != nil {
		return nil, nil, err
	}
	return u, sess.Scopes, nil
}

// IsMFARequired returns the second-factor challenge of a sign-in, if that is
// what err is.
func IsMFARequired(err error) (*MFARequired, bool) {
	return errors.AsType[*MFARequired](err)
}
