package oidc

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/token"
	"github.com/google/uuid"
)

// Bounds on what an authorization request may carry. maxAuthorizeQuery
// keeps a POSTed request's GET twin well under the server's header limit.
const (
	maxState          = 1024
	maxEchoedState    = 2 * maxState // the longest state refused that is sent back
	maxNonce          = 255
	maxAuthorizeQuery = 8 << 10
)

// authError is a refusal sent back to the client's (registered) redirect
// URI (RFC 6749 §4.1.2.1).
type authError struct{ code, description string }

// authorize is the authorization endpoint (GET or POST, OpenID Connect Core
// §3.1.2.1). The client and its redirect URI are checked first: either
// wrong gets an error page and never a redirect. Any later problem goes back
// to the client with its state and iss (RFC 9207). A POST is answered
// with its GET twin: a cross-site POST carries none of authd's (Lax)
// cookies, so it could see neither the browser's session nor the seed its
// request must be bound to, and would set a new seed over the one the
// browser's open pages use.
func (p *Provider) authorize(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		form, ok := readForm(w, r)
		if !ok {
			p.errorPage(w, http.StatusBadRequest, "Invalid request", "The sign-in request could not be read.")
			return
		}
		query := form.Encode()
		if len(query) > maxAuthorizeQuery {
			p.errorPage(w, http.StatusBadRequest, "Invalid request", "The sign-in request is too large.")
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		p.seeOther(w, r, AuthorizePath+"?"+query)
		return
	}
	q := r.URL.Query()
	if repeated(q) {
		p.errorPage(w, http.StatusBadRequest, "Invalid request", "A parameter of the sign-in request is repeated.")
		return
	}
	oc, err := p.svc.OAuthClient(r.Context(), q.Get("client_id"))
	if err != nil {
		if authd.ErrorCode(err) == authd.ENotFound {
			p.errorPage(w, http.StatusBadRequest, "Unknown application", "The application that sent you here is not registered.")
			return
		}
		p.unavailable(w, r, err)
		return
	}
	redirect := q.Get("redirect_uri")
	if !oc.RedirectsTo(redirect) {
		p.errorPage(w, http.StatusBadRequest, "Invalid redirect",
			"The application asked to send you back to an address it has not registered.")
		return
	}
	state := q.Get("state")
	if len(state) > maxState || !authd.PlainText(state) {
		// A state too long is sent back as received (RFC 6749 §4.1.2.1):
		// a client that finds no state calls the answer forged rather
		// than say what was wrong. Up to maxEchoedState: a longer one
		// would make a Location proxies and clients refuse, so it gets
		// the error page. One that is not text is not echoed: no client
		// sends one.
		if len(state) > maxEchoedState {
			p.errorPage(w, http.StatusBadRequest, "Invalid request", "The application sent a sign-in request whose state is too long.")
			return
		}
		echo := ""
		if authd.PlainText(state) {
			echo = state
		}
		p.redirectError(w, r, redirect, echo, authError{"invalid_request", "state must be text, at most 1024 bytes"})
		return
	}
	req, silent, aerr := p.parseAuthRequest(q, oc)
	if aerr != nil {
		p.redirectError(w, r, redirect, state, *aerr)
		return
	}
	hint, aerr := p.parseIDTokenHint(q.Get("id_token_hint"), oc)
	if aerr != nil {
		p.redirectError(w, r, redirect, state, *aerr)
		return
	}
	req.State = state
	req.HintSubject = hint.user()
	// Bound before it is saved, on every path: see savedRequest.
	req.BrowserBinding = p.formMAC(p.ensureSeed(w, r), requestBinding, "")
	if silent {
		p.authorizeSilently(w, r, req, oc, hint)
		return
	}
	if hint.given {
		sess, _, err := p.browserSession(r)
		if err != nil {
			p.unavailable(w, r, err)
			return
		}
		if !hint.admits(sess) { // the sign-in page, where the user picks the account
			req.MinAuthTime = p.now()
		}
	}
	if err := p.svc.SaveAuthRequest(r.Context(), client(r.Context()), req); err != nil {
		p.saveFailed(w, r, req, err)
		return
	}
	p.continueRequest(w, r, req, oc)
}

// maxMaxAge caps max_age (seconds): ten years is "any sign-in".
const maxMaxAge = 10 * 365 * 24 * 60 * 60

// parseAuthRequest checks the parameters of an authorization request
// whose client and redirect URI are known to be right. silent is
// prompt=none, which may not be combined: a combination, were it let
// through, would take the pages' path, which asks for what it names,
// rather than skip the consent it asks for.
func (p *Provider) parseAuthRequest(q url.Values, oc *authd.OAuthClient) (_ *authd.AuthRequest, silent bool, _ *authError) {
	if q.Get("request") != "" || q.Get("request_uri") != "" {
		return nil, false, &authError{"request_not_supported", "request objects are not supported"}
	}
	switch q.Get("response_type") {
	case "code":
	case "": // a required parameter missing (RFC 6749 §4.1.2.1)
		return nil, false, &authError{"invalid_request", "response_type is required: response_type=code"}
	default:
		return nil, false, &authError{"unsupported_response_type", "only the authorization code flow (response_type=code) is supported"}
	}
	if m := q.Get("response_mode"); m != "" && m != "query" {
		return nil, false, &authError{"invalid_request", "only response_mode=query is supported"}
	}
	requested := strings.Fields(q.Get("scope"))
	if !slices.Contains(requested, authd.ScopeOpenID) {
		return nil, false, &authError{"invalid_scope", "the openid scope is required"}
	}
	var scopes []string
	for _, s := range authd.Scopes() { // known scopes only, in a fixed order
		if slices.Contains(requested, s) {
			scopes = append(scopes, s)
		}
	}
	req := &authd.AuthRequest{ClientID: oc.ID, RedirectURI: q.Get("redirect_uri"), Scopes: scopes,
		Nonce: q.Get("nonce"), CodeChallenge: q.Get("code_challenge"), CodeChallengeMethod: q.Get("code_challenge_method")}
	if len(req.Nonce) > maxNonce || !authd.PlainText(req.Nonce) {
		return nil, false, &authError{"invalid_request", "nonce must be text, at most 255 bytes"}
	}
	switch {
	case req.CodeChallenge == "" && (oc.PKCERequired() || privateUse(req.RedirectURI)):
		// A public client, or one its administrator requires it of
		// (RFC 9700 §2.1.1). And a native app's code can reach any app
		// that claims its scheme; the verifier it does not have keeps the
		// code useless to it (RFC 8252 §8.1), whatever secret the app ships.
		return nil, false, &authError{"invalid_request", "PKCE (code_challenge with S256) is required for this client"}
	case req.CodeChallenge == "" && req.CodeChallengeMethod != "":
		return nil, false, &authError{"invalid_request", "code_challenge_method without code_challenge"}
	case req.CodeChallenge != "" && req.CodeChallengeMethod != "S256":
		return nil, false, &authError{"invalid_request", "code_challenge_method must be S256"}
	case req.CodeChallenge != "" && !validChallenge(req.CodeChallenge):
		return nil, false, &authError{"invalid_request", "code_challenge must be 43 base64url characters"}
	}
	now := p.now()
	prompt := strings.Fields(q.Get("prompt"))
	if slices.Contains(prompt, "none") && len(prompt) > 1 {
		return nil, false, &authError{"invalid_request", "prompt=none cannot be combined"}
	}
	// select_account: the sign-in page is where the user picks the account.
	if slices.Contains(prompt, "login") || slices.Contains(prompt, "select_account") {
		req.MinAuthTime = now
	}
	req.ForceConsent = slices.Contains(prompt, "consent")
	if v := q.Get("max_age"); v != "" {
		if strings.Trim(v, "0123456789") != "" { // no sign, no space: a non-negative integer
			return nil, false, &authError{"invalid_request", "max_age must be a number of seconds"}
		}
		age, err := strconv.Atoi(v)
		if err != nil { // digits past an int: any sign-in, as any age past ten years
			age = maxMaxAge
		}
		age = min(age, maxMaxAge) // a larger one would overflow a Duration and ask for a sign-in from the future
		// Not rounded to the second: a sign-in 0.9 s old does not meet
		// max_age=0. The stores keep sessions' times to the microsecond.
		if t := now.Add(-time.Duration(age) * time.Second); t.After(req.MinAuthTime) {
			req.MinAuthTime = t
		}
	}
	return req, slices.Equal(prompt, []string{"none"}), nil
}

// errNotHinted answers a request whose id_token_hint names another user
// than the one who signed in for it (authd.ErrNotHinted).
var errNotHinted = authError{"login_required", "the user who signed in is not the one id_token_hint names"}

// idTokenHint is what an authorization request's id_token_hint (OpenID
// Connect Core §3.1.2.1) asks for: the user the relying party believes is
// signed in. A browser signed in as someone else must not answer for it.
type idTokenHint struct {
	given   bool
	subject string // "" when given but not verifiable
	// claimed is the sub the hint claims, verified or not: only that user
	// may finish the request (user).
	claimed string
}

// admits reports whether the browser's session may answer the request
// without a sign-in: there is no hint, or it names the session's user. A
// hint authd cannot verify names no one.
func (h idTokenHint) admits(sess *authd.Session) bool {
	return !h.given || sess != nil && h.subject != "" && sess.UserID.String() == h.subject
}

// user is the only user who may finish the request: uuid.Nil without a
// hint (anyone), the user the hint claims even when authd cannot verify it
// (narrowing who finishes is safe), and uuid.Max, no user's id, for a sub
// that is no authd user id (another issuer's token).
func (h idTokenHint) user() uuid.UUID {
	if !h.given {
		return uuid.Nil
	}
	id, err := uuid.Parse(h.claimed)
	if err != nil || id == uuid.Nil {
		return uuid.Max
	}
	return id
}

// parseIDTokenHint checks an authorization request's id_token_hint. An
// expired one counts (ParseIDHint does not look at exp: the relying party
// sends the ID token it kept); one that does not verify (a key rotation has
// deleted, another issuer's) admits no browser session, but the sub it
// claims still decides who may finish the request. A hint issued to
// another client, or that is no JWT with a sub, is refused.
func (p *Provider) parseIDTokenHint(raw string, oc *authd.OAuthClient) (idTokenHint, *authError) {
	if raw == "" {
		return idTokenHint{}, nil
	}
	hint, err := p.opts.IDKeys.ParseIDHint(raw, p.opts.Issuer)
	if err != nil {
		claimed, ok := token.HintSubject(raw)
		if !ok {
			return idTokenHint{}, &authError{"invalid_request", "id_token_hint is not an ID token"}
		}
		return idTokenHint{given: true, claimed: claimed}, nil
	}
	if hint.Audience != oc.ID {
		return idTokenHint{}, &authError{"invalid_request", "id_token_hint was issued to another client"}
	}
	return idTokenHint{given: true, subject: hint.Subject, claimed: hint.Subject}, nil
}

func validChallenge(s string) bool {
	if len(s) != 43 {
		return false
	}
	for _, c := range s {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// authorizeSilently answers prompt=none: a code at once, or an error,
// never a page. A browser signed in as another user than the hint's is
// not signed in for this request.
func (p *Provider) authorizeSilently(w http.ResponseWriter, r *http.Request, req *authd.AuthRequest, oc *authd.OAuthClient,
	hint idTokenHint) {
	sess, _, err := p.browserSession(r)
	if err != nil {
		p.unavailable(w, r, err)
		return
	}
	switch {
	case sess == nil:
		p.redirectError(w, r, req.RedirectURI, req.State, authError{"login_required", "no signed-in session"})
		return
	case sess.CreatedAt.Before(req.MinAuthTime):
		p.redirectError(w, r, req.RedirectURI, req.State, authError{"login_required",
			"the sign-in is older than max_age allows"})
		return
	case !hint.admits(sess):
		p.redirectError(w, r, req.RedirectURI, req.State, authError{"login_required",
			"the signed-in user is not one id_token_hint names (or the hint cannot be verified)"})
		return
	}
	need, err := p.svc.NeedsConsent(r.Context(), oc, sess.UserID, req.Scopes)
	if err != nil {
		p.unavailable(w, r, err)
		return
	}
	if need || mustConfirm(oc, req) {
		p.redirectError(w, r, req.RedirectURI, req.State, authError{"consent_required", "the user has not consented"})
		return
	}
	if err := p.svc.SaveAuthRequest(r.Context(), client(r.Context()), req); err != nil {
		p.saveFailed(w, r, req, err)
		return
	}
	if !p.issueCode(w, r, req, sess, false) {
		p.redirectError(w, r, req.RedirectURI, req.State, authError{"login_required", "no signed-in session"})
	}
}

// mustConfirm reports whether the user must confirm a request by hand even
// when the client is first-party or already allowed: a public client whose
// redirect URI is not https (a private-use scheme or loopback, RFC 8252)
// cannot prove it is the app it names, since any app on the device can
// claim the same scheme or port; without a click the signed-in browser would
// hand it a code (RFC 8252 §8.6). A private-use scheme is a native app's
// whatever the client's type: a secret shipped in an app is anyone's
// (RFC 8252 §8.5), so it proves nothing either. A confidential client's
// loopback http is a web server under development, and goes on silently.
func mustConfirm(oc *authd.OAuthClient, req *authd.AuthRequest) bool {
	scheme := redirectScheme(req.RedirectURI)
	return scheme != "https" && (oc.Type == authd.ClientPublic || scheme != "http")
}

// privateUse reports whether a redirect URI has a private-use scheme
// (RFC 8252 §7.1, com.example.app:/cb): a native app's, neither https nor
// http.
func privateUse(uri string) bool {
	s := redirectScheme(uri)
	return s != "https" && s != "http"
}

// redirectScheme is a redirect URI's scheme, in lower case (url.Parse's).
func redirectScheme(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return ""
	}
	return u.Scheme
}

// resume continues a saved request after sign-in or consent.
func (p *Provider) resume(w http.ResponseWriter, r *http.Request) {
	req, oc, ok := p.savedRequest(w, r, r.URL.Query().Get("request"))
	if !ok {
		return
	}
	p.continueRequest(w, r, req, oc)
}

// continueRequest takes a saved request one step on: sign in, consent, or
// the code.
func (p *Provider) continueRequest(w http.ResponseWriter, r *http.Request, req *authd.AuthRequest, oc *authd.OAuthClient) {
	sess, u, err := p.browserSession(r)
	if err != nil {
		p.unavailable(w, r, err)
		return
	}
	if sess == nil || sess.CreatedAt.Before(req.MinAuthTime) {
		p.toSignIn(w, r, req)
		return
	}
	if req.HintSubject != uuid.Nil && sess.UserID != req.HintSubject {
		// Signed in, since the request came, as another user than the
		// hint's: no consent is asked, and the service refuses the code
		// and ends the request (IssueCode, ErrNotHinted).
		if !p.issueCode(w, r, req, sess, false) {
			p.toSignIn(w, r, req)
		}
		return
	}
	need, err := p.svc.NeedsConsent(r.Context(), oc, sess.UserID, req.Scopes)
	if err != nil {
		p.unavailable(w, r, err)
		return
	}
	if need || req.ForceConsent || mustConfirm(oc, req) {
		p.render(w, http.StatusOK, page{Title: "Allow access?", Client: oc.Name, Email: u.Email, Scopes: req.Scopes,
			Request: req.ID.String(), CSRF: p.csrfToken(w, r, "consent", consentBinding(req, sess)), content: "consent-content",
			formTo: []string{origin(req.RedirectURI)}})
		return
	}
	if !p.issueCode(w, r, req, sess, false) {
		p.toSignIn(w, r, req)
	}
}

// toSignIn sends a browser that is not signed in, or not recently enough
// for the request, to the sign-in page, which continues the request.
func (p *Provider) toSignIn(w http.ResponseWriter, r *http.Request, req *authd.AuthRequest) {
	p.seeOther(w, r, SignInPath+"?request="+req.ID.String())
}

// issueCode answers with a code for the request, and reports false,
// having answered nothing, when the browser session ended since the
// caller read it (a sign-out in another tab): the caller answers as to a
// browser that is not signed in, and the request waits for the sign-in.
func (p *Provider) issueCode(w http.ResponseWriter, r *http.Request, req *authd.AuthRequest, sess *authd.Session,
	consented bool) bool {
	issue := p.svc.IssueCode
	if consented {
		issue = p.svc.AllowConsent // the consent page's Allow: remembered with the code
	}
	code, issued, err := issue(r.Context(), client(r.Context()), req.ID, sess)
	if errors.Is(err, authd.ErrNotHinted) {
		p.redirectError(w, r, req.RedirectURI, req.State, errNotHinted)
		return true
	}
	switch authd.ErrorCode(err) {
	case "":
		p.redirectTo(w, r, issued.RedirectURI, url.Values{"code": {code}}, issued.State)
	case authd.EInvalidToken:
		return false
	case authd.ENotFound:
		p.requestGone(w)
	default:
		p.unavailable(w, r, err)
	}
	return true
}

// requestBinding is the formMAC purpose of a saved request's
// BrowserBinding. No form token is made for it, so a binding is no form's
// token and no token is a binding.
const requestBinding = "request binding"

// savedRequest loads the request a page form or link names; an error page
// answers when there is none. A request saved by another browser is
// refused as if unknown: its id travels in URLs and leaks (history, logs,
// Referer), and another browser, signed in as someone else, must not finish
// it and plant the code, which carries this request's state and PKCE
// challenge, in the browser that started it (login CSRF). The same answer
// as an unknown id, so that nobody learns that an id exists.
func (p *Provider) savedRequest(w http.ResponseWriter, r *http.Request, id string) (*authd.AuthRequest, *authd.OAuthClient, bool) {
	rid, err := uuid.Parse(id)
	if err != nil {
		p.errorPage(w, http.StatusBadRequest, "Request expired", "This sign-in request is not known; start again from the application.")
		return nil, nil, false
	}
	req, oc, err := p.svc.AuthRequest(r.Context(), rid)
	if authd.ErrorCode(err) == authd.ENotFound || err == nil && !p.thisBrowsers(r, req.BrowserBinding, requestBinding, "") {
		p.requestGone(w)
		return nil, nil, false
	}
	if err != nil {
		p.unavailable(w, r, err)
		return nil, nil, false
	}
	return req, oc, true
}

// requestGone answers a request id this browser cannot use: expired, used,
// or another browser's, all alike.
func (p *Provider) requestGone(w http.ResponseWriter) {
	p.errorPage(w, http.StatusBadRequest, "Request expired",
		"This sign-in request has expired or was already used; start again from the application.")
}

// redirectError sends an error back to the client (RFC 6749 §4.1.2.1).
func (p *Provider) redirectError(w http.ResponseWriter, r *http.Request, redirect, state string, e authError) {
	p.redirectTo(w, r, redirect, url.Values{"error": {e.code}, "error_description": {e.description}}, state)
}

// redirectTo sends the browser to the client's redirect URI with params,
// state and iss (RFC 9207).
func (p *Provider) redirectTo(w http.ResponseWriter, r *http.Request, redirect string, params url.Values, state string) {
	if state != "" {
		params.Set("state", state)
	}
	params.Set("iss", p.opts.Issuer)
	sep := "?"
	if strings.Contains(redirect, "?") {
		sep = "&"
	}
	http.Redirect(w, r, redirect+sep+params.Encode(), http.StatusFound)
}

// browserSession is the live session of this browser's cookie, or nil
// (and no error) when the browser is not signed in: no cookie, or one of an
// unknown, expired or revoked session. An error is an outage and must be
// answered as one: taken for "not signed in", it would send prompt=none
// back with login_required and show the sign-in page while the database is
// down.
func (p *Provider) browserSession(r *http.Request) (*authd.Session, *authd.User, error) {
	cookie := p.cookie(r, sessionCookie)
	if cookie == "" {
		return nil, nil, nil
	}
	sess, u, err := p.svc.BrowserSession(r.Context(), cookie)
	if authd.ErrorCode(err) == authd.EInvalidToken {
		return nil, nil, nil
	}
	return sess, u, err
}

// saveFailed answers a request that could not be kept: too many from this
// client go back as temporarily_unavailable, one the service refuses as
// invalid_request, anything else is an outage.
func (p *Provider) saveFailed(w http.ResponseWriter, r *http.Request, req *authd.AuthRequest, err error) {
	switch authd.ErrorCode(err) {
	case authd.ERateLimited:
		p.redirectError(w, r, req.RedirectURI, req.State, authError{"temporarily_unavailable", "too many requests; try again later"})
	case authd.EInvalid:
		p.redirectError(w, r, req.RedirectURI, req.State, authError{"invalid_request", authd.ErrorMessage(err)})
	default:
		p.unavailable(w, r, err)
	}
}

// unavailable answers a request the provider could not serve for an
// outage (or shed for want of capacity) with 503, and logs it: which
// request (the X-Request-Id the API's middleware gave it, the one the
// client was told) and why.
func (p *Provider) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, authd.ErrBusy):
		p.shed.Note(r.Context())
	case authd.ErrorCode(err) == authd.EUnavailable:
		// An outage fails every request alike: told sampled, naming the
		// latest (the X-Request-Id its client was told).
		p.down.Note(r.Context(), err, authd.ErrorHint(err),
			"method", r.Method, "path", r.URL.Path, "request_id", w.Header().Get("X-Request-Id"))
	default:
		p.opts.Logger.ErrorContext(r.Context(), "openid provider",
			"method", r.Method, "path", r.URL.Path, "request_id", w.Header().Get("X-Request-Id"), "err", err)
	}
	w.Header().Set("Retry-After", "1")
	p.errorPage(w, http.StatusServiceUnavailable, "Try again", "The service is busy or unavailable; try again in a moment.")
}
