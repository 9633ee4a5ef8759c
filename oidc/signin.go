package oidc

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/authd/authd"
	"github.com/google/uuid"
)

// The hosted sign-in, second-factor, consent and sign-out pages. They call
// the same domain methods as the JSON API, so lockout, rate limits,
// enumeration safety and audit are the same; only the answers are pages.

func (p *Provider) signInPage(w http.ResponseWriter, r *http.Request) {
	req, oc, ok := p.savedRequest(w, r, r.URL.Query().Get("request"))
	if !ok {
		return
	}
	p.render(w, http.StatusOK, p.signInForm(w, r, req, oc.Name))
}

// signInForm is the sign-in page of req, with the passkey button when
// passkeys are on.
func (p *Provider) signInForm(w http.ResponseWriter, r *http.Request, req *authd.AuthRequest, clientName string) page {
	pg := page{Title: "Sign in", Client: clientName, Request: req.ID.String(),
		CSRF: p.csrfToken(w, r, "signin", req.ID.String()), content: "signin-content", formTo: []string{origin(req.RedirectURI)}}
	if p.svc.PasskeysEnabled() {
		pg.PasskeyCSRF = p.csrfToken(w, r, "passkey", req.ID.String())
	}
	return pg
}

// mfaStep is what the second-factor page carries from one of its forms to
// the next: the challenge's mfa_token, the method asked for, which other
// ways the user has (to offer them; the challenge decides), and the
// address typed at the password step, to name the account (the app's
// entry to read the code from). The address is only shown, back to the
// browser that typed it: the challenge decides whose factors count.
type mfaStep struct {
	token, method, email string
	totp, passkey        bool
}

// stepOf reads the mfaStep a second-factor page's form sent.
func stepOf(form url.Values) mfaStep {
	return mfaStep{token: form.Get("mfa_token"), method: form.Get("method"), email: form.Get("email"),
		totp: form.Get("totp") != "", passkey: form.Get("passkey") != ""}
}

// mfaForm is the second-factor page of req for step, asking for its
// method's code (a recovery code, or the authenticator app's, which takes
// a recovery code too), with the passkey button when the user has a
// passkey.
func (p *Provider) mfaForm(w http.ResponseWriter, r *http.Request, req *authd.AuthRequest, clientName string,
	step mfaStep) page {
	if step.method != authd.MethodRecoveryCode {
		step.method = authd.MethodTOTP
	}
	pg := page{Title: "Two-step verification", Client: clientName, Request: req.ID.String(), MFAToken: step.token,
		Email: step.email, Method: step.method, TOTP: step.totp, CSRF: p.csrfToken(w, r, "mfa", req.ID.String()), content: "mfa-content",
		formTo: []string{origin(req.RedirectURI)}}
	if step.passkey && p.svc.PasskeysEnabled() {
		pg.PasskeyCSRF = p.csrfToken(w, r, "passkey", req.ID.String())
	}
	return pg
}

// expiredSignIn is the sign-in page again after a second-factor challenge
// that cannot be finished (err), saying why: passed already (its form sent
// twice, the first answer's cookie lost), voided by a change to the account
// since the password step, or spent (expired, too many wrong codes); the
// address of the step is filled in again.
func (p *Provider) expiredSignIn(w http.ResponseWriter, r *http.Request, req *authd.AuthRequest, clientName string,
	step mfaStep, err error) {
	again := p.signInForm(w, r, req, clientName)
	again.Email = step.email
	switch {
	case errors.Is(err, authd.ErrChallengeUsed):
		again.Error = "This step was already done by an earlier sending of the form; sign in again."
	case errors.Is(err, authd.ErrChallengeVoided):
		again.Error = "The account changed while you were signing in; sign in again."
	default:
		again.Error = "The sign-in took too long or had too many wrong codes; sign in again."
	}
	p.render(w, http.StatusUnauthorized, again)
}

func (p *Provider) signIn(w http.ResponseWriter, r *http.Request) {
	form, req, oc, ok := p.requestForm(w, r, "signin")
	if !ok {
		return
	}
	email := form.Get("email")
	again := p.signInForm(w, r, req, oc.Name)
	again.Email = email
	cookie, err := p.svc.SignIn(r.Context(), client(r.Context()), email, form.Get("password"))
	if mfa, ok := authd.IsMFARequired(err); ok {
		// Without TOTP (a passkey only), the code asked for is a recovery code.
		step := mfaStep{token: mfa.Token, method: authd.MethodTOTP, email: strings.TrimSpace(email),
			totp: slices.Contains(mfa.Methods, authd.MethodTOTP), passkey: slices.Contains(mfa.Methods, authd.MethodPasskey)}
		if !step.totp {
			step.method = authd.MethodRecoveryCode
		}
		p.render(w, http.StatusOK, p.mfaForm(w, r, req, oc.Name, step))
		return
	}
	if err != nil {
		p.signInFailed(w, r, again, err)
		return
	}
	p.signedIn(w, r, req, cookie)
}

func (p *Provider) signInMFA(w http.ResponseWriter, r *http.Request) {
	form, req, oc, ok := p.requestForm(w, r, "mfa")
	if !ok {
		return
	}
	step := stepOf(form)
	again := p.mfaForm(w, r, req, oc.Name, step)
	if form.Get("switch") != "" { // "use a recovery code instead", or back: the form, not an attempt
		p.render(w, http.StatusOK, again)
		return
	}
	// The authenticator app's field takes a recovery code too, told by
	// its shape, as the JSON API's step-ups do.
	method := again.Method
	if method == authd.MethodTOTP {
		method = authd.CodeMethod(form.Get("code"))
	}
	cookie, err := p.svc.SignInMFA(r.Context(), client(r.Context()), step.token, method, form.Get("code"))
	if err != nil {
		if authd.ErrorCode(err) == authd.EInvalidToken {
			p.expiredSignIn(w, r, req, oc.Name, step, err)
			return
		}
		p.signInFailed(w, r, again, err)
		return
	}
	p.signedIn(w, r, req, cookie)
}

// signInPasskey finishes a passkey ceremony the page's script began
// (POST /v1/auth/passkey/begin) and sends here as the form's credential:
// a passwordless sign-in, or with mfa_token the second factor after the
// password. A refused passkey shows the page it came from again.
func (p *Provider) signInPasskey(w http.ResponseWriter, r *http.Request) {
	form, req, oc, ok := p.requestForm(w, r, "passkey")
	if !ok {
		return
	}
	ctx, c := r.Context(), client(r.Context())
	mfaToken, credential := form.Get("mfa_token"), []byte(form.Get("credential"))
	var cookie string
	var err error
	var again page
	if mfaToken == "" {
		cookie, err = p.svc.SignInPasskey(ctx, c, credential)
		again = p.signInForm(w, r, req, oc.Name)
	} else {
		cookie, err = p.svc.SignInMFAPasskey(ctx, c, mfaToken, credential)
		step := stepOf(form)
		step.passkey = true
		again = p.mfaForm(w, r, req, oc.Name, step)
	}
	if err == nil {
		p.signedIn(w, r, req, cookie)
		return
	}
	switch authd.ErrorCode(err) {
	case authd.EInvalidToken:
		if mfaToken != "" {
			p.expiredSignIn(w, r, req, oc.Name, stepOf(form), err)
			return
		}
		again.Error = "The passkey sign-in took too long; try again."
		p.render(w, http.StatusUnauthorized, again)
	case authd.EInvalid, authd.EInvalidCredentials:
		again.Error = "The passkey could not be verified; try again or use another way to sign in."
		p.render(w, http.StatusUnauthorized, again)
	case authd.ENotFound:
		again.Error, again.PasskeyCSRF = "Passkeys are not enabled here; use another way to sign in.", ""
		p.render(w, http.StatusNotFound, again)
	default:
		p.signInFailed(w, r, again, err)
	}
}

// requestForm reads a page's form that acts on an authorization request:
// the request must be pending and the CSRF token this browser's for
// purpose; an error page answers otherwise.
func (p *Provider) requestForm(w http.ResponseWriter, r *http.Request, purpose string) (url.Values, *authd.AuthRequest,
	*authd.OAuthClient, bool) {
	form, req, oc, ok := p.pendingForm(w, r)
	if !ok {
		return nil, nil, nil, false
	}
	if !p.checkCSRF(r, form, purpose, req.ID.String()) {
		p.formExpired(w)
		return nil, nil, nil, false
	}
	return form, req, oc, true
}

// pendingForm is requestForm before the CSRF check, for a form whose token
// binds more than the request (consent's).
func (p *Provider) pendingForm(w http.ResponseWriter, r *http.Request) (url.Values, *authd.AuthRequest,
	*authd.OAuthClient, bool) {
	form, ok := readForm(w, r)
	if !ok {
		p.errorPage(w, http.StatusBadRequest, "Invalid request", "The form could not be read.")
		return nil, nil, nil, false
	}
	req, oc, ok := p.savedRequest(w, r, form.Get("request"))
	return form, req, oc, ok
}

func (p *Provider) formExpired(w http.ResponseWriter) {
	p.errorPage(w, http.StatusForbidden, "Form expired", "This form has expired or was not sent by this browser; go back and try again.")
}

// signInFailed shows the form again with what went wrong, as the JSON API
// would say it: the same words whether or not the email has an account.
func (p *Provider) signInFailed(w http.ResponseWriter, r *http.Request, again page, err error) {
	status := http.StatusUnauthorized
	switch authd.ErrorCode(err) {
	case authd.EInvalidCredentials, authd.EEmailNotVerified, authd.EInvalid:
		again.Error = authd.ErrorMessage(err)
		if authd.ErrorCode(err) == authd.EInvalid {
			status, again.Error = http.StatusBadRequest, "Enter an email address and a password."
			if again.content == "mfa-content" {
				again.Error = "Enter the 6-digit code from your authenticator app, or a recovery code."
				if again.Method == authd.MethodRecoveryCode {
					again.Error = "Enter a recovery code: two groups of five letters and digits."
				}
			}
		}
		if authd.ErrorCode(err) == authd.EEmailNotVerified {
			// One click sends the link to the address typed; a passkey's
			// refusal, with none typed, links to the page that asks for it.
			status, again.OfferResend = http.StatusForbidden, true
			if again.Email != "" {
				again.ResendCSRF = p.csrfToken(w, r, "resend", again.Request)
			}
		}
	case authd.EAccountLocked, authd.ERateLimited:
		status = http.StatusTooManyRequests
		if authd.ErrorCode(err) == authd.EAccountLocked {
			status = http.StatusLocked
		}
		again.Error = authd.ErrorMessage(err)
		again.lockedFor = authd.RetryAfterSeconds(err)
	default:
		p.unavailable(w, r, err)
		return
	}
	p.render(w, status, again)
}

// signedIn sets the session cookie and goes on with the request. A
// session the browser held before (another account, prompt=login) ends: a
// cookie that is replaced must not leave a live session behind, so an
// outage while finding or ending it sets no cookie.
func (p *Provider) signedIn(w http.ResponseWriter, r *http.Request, req *authd.AuthRequest, cookie string) {
	old, _, err := p.browserSession(r)
	if err == nil && old != nil {
		err = p.svc.EndSession(r.Context(), client(r.Context()), old.ID)
	}
	if err != nil {
		p.unavailable(w, r, err)
		return
	}
	p.setCookie(w, sessionCookie, cookie, 0)
	p.seeOther(w, r, ResumePath+"?request="+req.ID.String())
}

// consent takes the decision of the consent page. Its form is bound to
// the browser session it was shown for (consentBinding): a decision sent
// after the browser signed in as someone else (another tab, another app)
// is not theirs, and gets the expired-form page.
func (p *Provider) consent(w http.ResponseWriter, r *http.Request) {
	form, req, _, ok := p.pendingForm(w, r)
	if !ok {
		return
	}
	sess, _, err := p.browserSession(r)
	if err != nil {
		p.unavailable(w, r, err)
		return
	}
	if sess == nil {
		p.toSignIn(w, r, req)
		return
	}
	if !p.checkCSRF(r, form, "consent", consentBinding(req, sess)) {
		p.formExpired(w)
		return
	}
	if form.Get("decision") != "allow" {
		// Logged first: an outage is answered as one, not as a denial the
		// log never saw.
		if err := p.svc.DenyConsent(r.Context(), client(r.Context()), sess.UserID, req); err != nil {
			if authd.ErrorCode(err) == authd.ENotFound {
				p.requestGone(w) // used by an Allow sent with it, expired, or its client deleted or changed, meanwhile
				return
			}
			p.unavailable(w, r, err)
			return
		}
		p.redirectError(w, r, req.RedirectURI, req.State, authError{"access_denied", "the user denied the request"})
		return
	}
	if sess.CreatedAt.Before(req.MinAuthTime) {
		p.toSignIn(w, r, req) // a fresh sign-in first; the page asks again after it
		return
	}
	// The consent and the code in one transaction (AllowConsent); then
	// answered: prompt=consent must not ask again.
	if !p.issueCode(w, r, req, sess, true) {
		p.toSignIn(w, r, req)
	}
}

// consentBinding binds a consent form to its request and to the browser
// session the page was shown for.
func consentBinding(req *authd.AuthRequest, sess *authd.Session) string {
	return req.ID.String() + " " + sess.ID.String()
}

// logoutParams are RP-initiated logout's parameters (GET query or POST form).
//
// An id_token_hint that cannot be verified (a key that rotation has since
// deleted, another issuer's, a forgery) is ignored as if absent: it cannot
// name a session or a client, but this browser's own session must still
// be able to sign out. Without a verified hint or a client_id no
// post_logout_redirect_uri can be checked, so it is dropped with its state
// and the sign-out ends on authd's own page (RP-Initiated Logout 1.0 §3:
// never a redirect to an address that was not validated). So is an
// address that the named client has not registered, or that an unknown
// client names, with a word on the confirmation page (Dropped): the user
// asked to sign out, and a misconfigured application must not keep them
// signed in. A hint that verifies for another client than client_id
// contradicts itself, and gets the error page.
func (p *Provider) logoutParams(w http.ResponseWriter, r *http.Request, q url.Values) (logoutForm, *authd.OAuthClient, *uuid.UUID, bool) {
	f := logoutForm{ClientID: q.Get("client_id"), PostLogoutRedirectURI: q.Get("post_logout_redirect_uri"),
		State: q.Get("state"), IDTokenHint: q.Get("id_token_hint")}
	var hinted *uuid.UUID
	if f.IDTokenHint != "" {
		hint, err := p.opts.IDKeys.ParseIDHint(f.IDTokenHint, p.opts.Issuer)
		switch {
		case err != nil:
			f.IDTokenHint = ""
		case f.ClientID != "" && hint.Audience != f.ClientID:
			p.errorPage(w, http.StatusBadRequest, "Invalid sign-out request", "The sign-out request's ID token was issued to another application.")
			return f, nil, nil, false
		default:
			f.ClientID = hint.Audience
			if id, err := uuid.Parse(hint.SessionID); err == nil {
				hinted = &id
			}
		}
	}
	if f.ClientID == "" {
		f.Dropped = f.PostLogoutRedirectURI != ""
		f.PostLogoutRedirectURI, f.State = "", ""
	}
	var oc *authd.OAuthClient
	if f.ClientID != "" {
		c, err := p.svc.OAuthClient(r.Context(), f.ClientID)
		if err != nil && authd.ErrorCode(err) != authd.ENotFound {
			p.unavailable(w, r, err)
			return f, nil, nil, false
		}
		oc = c
	}
	if f.PostLogoutRedirectURI != "" && (oc == nil || !slices.Contains(oc.PostLogoutRedirectURIs, f.PostLogoutRedirectURI)) {
		f.PostLogoutRedirectURI, f.State, f.Dropped = "", "", true
	}
	if len(f.State) > maxState || !authd.PlainText(f.State) {
		p.errorPage(w, http.StatusBadRequest, "Invalid sign-out request", "The sign-out request's state is not text or is too long.")
		return f, nil, nil, false
	}
	return f, oc, hinted, true
}

// logoutPage is the end-session endpoint's GET: a confirmation page (a GET
// never signs out, so that no link or image can).
func (p *Provider) logoutPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if repeated(q) {
		p.errorPage(w, http.StatusBadRequest, "Invalid sign-out request", "A parameter of the sign-out request is repeated.")
		return
	}
	f, oc, _, ok := p.logoutParams(w, r, q)
	if !ok {
		return
	}
	pg := page{Title: "Sign out", Logout: f, CSRF: p.csrfToken(w, r, "logout", ""), content: "logout-content"}
	if oc != nil {
		pg.Client = oc.Name
	}
	if f.PostLogoutRedirectURI != "" {
		pg.formTo = []string{origin(f.PostLogoutRedirectURI)}
	}
	_, u, err := p.browserSession(r)
	if err != nil {
		p.unavailable(w, r, err)
		return
	}
	if u != nil {
		pg.Email = u.Email
	}
	p.render(w, http.StatusOK, pg)
}

// logout ends this browser's session and the session the id_token_hint
// names (when it is the same user's), everywhere (SPEC 6.5), then returns to
// the client or shows that it is done. An outage is answered as one, never
// as "signed out" with the sessions still alive. A POST without a csrf
// field is a client's logout request sent as a form (RP-Initiated Logout
// §2: the OP supports POST as GET): a 303 to the same request as a GET,
// whose confirmation page signs out. (A cross-site POST carries none of
// authd's SameSite=Lax cookies: a page shown to it would not know the
// session, and would replace the CSRF cookie every other open form uses.)
func (p *Provider) logout(w http.ResponseWriter, r *http.Request) {
	form, ok := readForm(w, r)
	if !ok {
		p.errorPage(w, http.StatusBadRequest, "Invalid request", "The form could not be read.")
		return
	}
	if _, sent := form["csrf"]; !sent {
		q := url.Values{}
		for _, k := range []string{"id_token_hint", "client_id", "post_logout_redirect_uri", "state"} {
			if v, ok := form[k]; ok {
				q[k] = v
			}
		}
		p.seeOther(w, r, LogoutPath+"?"+q.Encode())
		return
	}
	f, _, hinted, ok := p.logoutParams(w, r, form)
	if !ok {
		return
	}
	if !p.checkCSRF(r, form, "logout", "") {
		p.formExpired(w)
		return
	}
	ctx, c := r.Context(), client(r.Context())
	sess, _, err := p.browserSession(r)
	if err != nil {
		p.unavailable(w, r, err)
		return
	}
	if sess != nil {
		if err := p.svc.EndSession(ctx, c, sess.ID); err != nil {
			p.unavailable(w, r, err)
			return
		}
	}
	// The hinted session ends only for the user signed in on this browser:
	// an ID token leaks easily (it travels in URLs), and must not let anyone
	// end its session from anywhere. (The client can end its own session
	// with POST /v1/auth/logout and its access token.)
	if hinted != nil && sess != nil {
		if err := p.svc.EndUserSession(ctx, c, *hinted, sess.UserID); err != nil && authd.ErrorCode(err) != authd.ENotFound {
			p.unavailable(w, r, err)
			return
		}
	}
	p.setCookie(w, sessionCookie, "", -1)
	if f.PostLogoutRedirectURI != "" {
		target := f.PostLogoutRedirectURI
		if f.State != "" {
			sep := "?"
			if strings.Contains(target, "?") {
				sep = "&"
			}
			target += sep + url.Values{"state": {f.State}}.Encode()
		}
		http.Redirect(w, r, target, http.StatusSeeOther)
		return
	}
	p.render(w, http.StatusOK, page{Title: "Signed out", content: "signed-out-content"})
}
