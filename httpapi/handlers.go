package httpapi

import (
	"crypto/subtle"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/authd/authd"
	"github.com/google/uuid"
)

var errMissingToken = &authd.Error{Code: authd.EInvalidToken, Message: "A bearer token is required."}

// bearer returns the token of an "Authorization: Bearer …" header, the
// request's only one: of two, which counts would be the reader's choice
// (a proxy may have checked the other).
func bearer(r *http.Request) (string, bool) {
	if len(r.Header.Values("Authorization")) != 1 {
		return "", false
	}
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" || strings.ContainsAny(token, " \t") {
		return "", false
	}
	return token, true
}

// authedFunc is a handler for a request with a valid access token.
type authedFunc func(w http.ResponseWriter, r *http.Request, a *authd.AccessClaims) error

// authenticated checks the bearer access token (signature, claims and
// revocation, without a database round trip while the revocation set is
// current: Service.Authenticate) before h, and refuses an
// OpenID Connect client's token: it is for resource servers and UserInfo,
// and a third party the user let "know who you are" must not read the
// export, list or end sessions, or withdraw consents.
func (s *Server) authenticated(h authedFunc) handlerFunc {
	return s.withToken(func(a *authd.AccessClaims) error {
		if a.ClientToken() {
			return errClientToken
		}
		return nil
	}, h)
}

// bearerToken checks the bearer access token, whoever it was issued to,
// before h: only for what a client may do with its own token (end its
// session).
func (s *Server) bearerToken(h authedFunc) handlerFunc {
	return s.withToken(func(*authd.AccessClaims) error { return nil }, h)
}

// withToken authenticates the bearer access token, has accept refuse it or
// not, then checks the query (handleAuthed), then runs h: every refusal of
// the credentials comes before any word on the query.
func (s *Server) withToken(accept func(*authd.AccessClaims) error, h authedFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		token, ok := bearer(r)
		if !ok {
			return errMissingToken
		}
		a, err := s.svc.Authenticate(r.Context(), token)
		if err != nil {
			return err
		}
		if err := accept(a); err != nil {
			return err
		}
		if err := checkedQuery(r); err != nil {
			return err
		}
		return h(w, r, a)
	}
}

var errClientToken = &authd.Error{Code: authd.EInvalidToken,
	Message: "This token was issued to an OpenID Connect client; the account API takes tokens of authd's own login."}

type accepted struct {
	Status string `json:"status"`
}

func (s *Server) register(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Email    string `json:"email"`
		Password string `json:"password"`
		Consent  *bool  `json:"consent"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if err := required("email", in.Email, "password", in.Password); err != nil {
		return err
	}
	if err := s.svc.Register(r.Context(), client(r), in.Email, in.Password, in.Consent != nil && *in.Consent); err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, accepted{"verification_sent"})
	return nil
}

func (s *Server) verifyEmail(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Token string `json:"token"`
		// With a link that moves the account to a new address: its
		// password, and the second factor when the user has one.
		Password string `json:"password"`
		stepUpIn
	}
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if err := required("token", in.Token); err != nil {
		return err
	}
	// The same answer whether the link verified the account's address or
	// moved it to a new one (SPEC §5).
	if _, err := s.svc.VerifyEmail(r.Context(), client(r), in.Token, in.Password, in.proof()); err != nil {
		if authd.ErrorCode(err) == authd.EInvalidToken {
			return badRequest{err}
		}
		return err // a wrong password is 401, as everywhere
	}
	writeJSON(w, http.StatusOK, accepted{"verified"})
	return nil
}

// beginEmailChangeStepUp begins the passkey ceremony that proves the
// second factor for following a link that moves an account: its assertion
// goes in verify-email's passkey.
func (s *Server) beginEmailChangeStepUp(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Token string `json:"token"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if err := required("token", in.Token); err != nil {
		return err
	}
	options, err := s.svc.BeginEmailChangeStepUp(r.Context(), client(r), in.Token)
	if authd.ErrorCode(err) == authd.EInvalidToken {
		return badRequest{err}
	}
	if err != nil {
		return err
	}
	writeOptions(w, options)
	return nil
}

type emailIn struct {
	Email string `json:"email"`
}

func (s *Server) resendVerification(w http.ResponseWriter, r *http.Request) error {
	var in emailIn
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if err := required("email", in.Email); err != nil {
		return err
	}
	if err := s.svc.ResendVerification(r.Context(), client(r), in.Email); err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, accepted{"accepted"})
	return nil
}

type tokenPair struct {
	AccessToken      string    `json:"access_token"`
	TokenType        string    `json:"token_type"`
	ExpiresIn        int       `json:"expires_in"`
	RefreshToken     string    `json:"refresh_token"`
	RefreshExpiresIn int       `json:"refresh_expires_in"`
	SessionID        uuid.UUID `json:"session_id"`
}

func writePair(w http.ResponseWriter, p *authd.TokenPair) {
	writeJSON(w, http.StatusOK, tokenPair{
		AccessToken: p.AccessToken, TokenType: "Bearer", ExpiresIn: int(p.ExpiresIn / time.Second),
		RefreshToken: p.RefreshToken, RefreshExpiresIn: int(p.RefreshExpiresIn / time.Second), SessionID: p.SessionID,
	})
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Email      string `json:"email"`
		Password   string `json:"password"`
		DeviceInfo string `json:"device_info"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if err := required("email", in.Email, "password", in.Password); err != nil {
		return err
	}
	pair, err := s.svc.Login(r.Context(), client(r), in.Email, in.Password, in.DeviceInfo)
	if err != nil {
		return err
	}
	writePair(w, pair)
	return nil
}

func (s *Server) refresh(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if err := required("refresh_token", in.RefreshToken); err != nil {
		return err
	}
	pair, err := s.svc.Refresh(r.Context(), client(r), in.RefreshToken)
	if err != nil {
		return err
	}
	writePair(w, pair)
	return nil
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, a *authd.AccessClaims) error {
	if err := s.svc.Logout(r.Context(), client(r), a); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) logoutAll(w http.ResponseWriter, r *http.Request, a *authd.AccessClaims) error {
	if err := s.svc.LogoutAll(r.Context(), client(r), a); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) forgotPassword(w http.ResponseWriter, r *http.Request) error {
	var in emailIn
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if err := required("email", in.Email); err != nil {
		return err
	}
	if err := s.svc.ForgotPassword(r.Context(), client(r), in.Email); err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, accepted{"accepted"})
	return nil
}

func (s *Server) resetPassword(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Token       string `json:"token"`
		NewPassword string `json:"new_password"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if err := required("token", in.Token, "new_password", in.NewPassword); err != nil {
		return err
	}
	if err := s.svc.ResetPassword(r.Context(), client(r), in.Token, in.NewPassword); err != nil {
		return badRequest{err}
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) changePassword(w http.ResponseWriter, r *http.Request, a *authd.AccessClaims) error {
	var in struct {
		CurrentPassword string `json:"current_password"`
		NewPassword     string `json:"new_password"`
		stepUpIn               // the second factor, when the user has one
	}
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if err := required("current_password", in.CurrentPassword, "new_password", in.NewPassword); err != nil {
		return err
	}
	if err := s.svc.ChangePassword(r.Context(), client(r), a, in.CurrentPassword, in.NewPassword,
		in.proof()); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// changeEmail asks to move the account to new_email: a link goes there
// (POST /v1/auth/verify-email redeems it), a notice to the old address.
// The same 202 whether or not new_email has an account.
func (s *Server) changeEmail(w http.ResponseWriter, r *http.Request, a *authd.AccessClaims) error {
	var in struct {
		NewEmail string `json:"new_email"`
		Password string `json:"password"`
		stepUpIn        // the second factor, when the user has one
	}
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if err := required("new_email", in.NewEmail, "password", in.Password); err != nil {
		return err
	}
	if err := s.svc.RequestEmailChange(r.Context(), client(r), a, in.NewEmail, in.Password, in.proof()); err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, accepted{"verification_sent"})
	return nil
}

// cancelEmailChange voids a pending address change: 204 whether or not
// one was pending.
func (s *Server) cancelEmailChange(w http.ResponseWriter, r *http.Request, a *authd.AccessClaims) error {
	if err := s.svc.CancelEmailChange(r.Context(), client(r), a); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// userOut is a user as the API shows it: never the hash or lockout internals.
type userOut struct {
	ID                    uuid.UUID  `json:"id"`
	Email                 string     `json:"email"`
	EmailVerified         bool       `json:"email_verified"`
	AccountStatus         string     `json:"account_status"`
	RegistrationTimestamp time.Time  `json:"registration_timestamp"`
	LastLoginTimestamp    *time.Time `json:"last_login_timestamp"`
	LastPasswordChange    time.Time  `json:"last_password_change"`
	ConsentStatus         bool       `json:"consent_status"`
	ConsentTimestamp      time.Time  `json:"consent_timestamp"`
	CreatedAt             time.Time  `json:"created_at"`
	UpdatedAt             time.Time  `json:"updated_at"`
}

func toUser(u *authd.User) userOut {
	out := userOut{ID: u.ID, Email: u.Email, EmailVerified: u.EmailVerified, AccountStatus: string(u.AccountStatus),
		RegistrationTimestamp: u.RegistrationTimestamp, LastPasswordChange: u.LastPasswordChange,
		ConsentStatus: u.ConsentStatus, ConsentTimestamp: u.ConsentTimestamp, CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt}
	if !u.LastLoginTimestamp.IsZero() {
		t := u.LastLoginTimestamp
		out.LastLoginTimestamp = &t
	}
	return out
}

func (s *Server) me(w http.ResponseWriter, r *http.Request, a *authd.AccessClaims) error {
	u, err := s.svc.Me(r.Context(), a)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toUser(u))
	return nil
}

type sessionOut struct {
	ID         uuid.UUID `json:"id"`
	DeviceInfo string    `json:"device_info"`
	CreatedAt  time.Time `json:"created_at"`
	LastUsedAt time.Time `json:"last_used_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	Current    bool      `json:"current"`
}

func (s *Server) sessions(w http.ResponseWriter, r *http.Request, a *authd.AccessClaims) error {
	list, err := s.svc.Sessions(r.Context(), a)
	if err != nil {
		return err
	}
	items := make([]sessionOut, 0, len(list))
	for _, ss := range list {
		items = append(items, sessionOut{ID: ss.ID, DeviceInfo: ss.DeviceInfo, CreatedAt: ss.CreatedAt,
			LastUsedAt: ss.LastUsedAt, ExpiresAt: ss.ExpiresAt, Current: ss.ID == a.SessionID})
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
	return nil
}

func (s *Server) deleteSession(w http.ResponseWriter, r *http.Request, a *authd.AccessClaims) error {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		return authd.Errorf(authd.ENotFound, "No such session.")
	}
	if err := s.svc.RevokeSession(r.Context(), client(r), a, id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) updateConsent(w http.ResponseWriter, r *http.Request, a *authd.AccessClaims) error {
	var in struct {
		Consent *bool `json:"consent"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if in.Consent == nil {
		return invalid("consent", "is required (true or false)")
	}
	u, err := s.svc.UpdateConsent(r.Context(), client(r), a, *in.Consent)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"consent_status": u.ConsentStatus, "consent_timestamp": u.ConsentTimestamp})
	return nil
}

// introspect answers RFC 7662 token introspection for resource servers
// holding a service token. Any invalid, expired or revoked token is
// {"active": false}.
func (s *Server) introspect(w http.ResponseWriter, r *http.Request) error {
	if !s.serviceToken(r) {
		return &authd.Error{Code: authd.EInvalidToken, Message: "A service token is required (AUTHD_SERVICE_TOKENS)."}
	}
	if err := checkedQuery(r); err != nil {
		return err
	}
	token, err := introspectionToken(w, r)
	if err != nil {
		return err
	}
	a, err := s.svc.Authenticate(r.Context(), token)
	if authd.ErrorCode(err) == authd.EInvalidToken {
		writeJSON(w, http.StatusOK, map[string]bool{"active": false})
		return nil
	}
	if err != nil {
		return err
	}
	amr := a.AMR
	if len(amr) == 0 {
		amr = []string{authd.AMRPassword} // a token from before amr was issued: a password login
	}
	out := map[string]any{
		"active": true, "sub": a.UserID, "exp": a.ExpiresAt.Unix(), "iat": a.IssuedAt.Unix(), "nbf": a.IssuedAt.Unix(),
		"jti": a.JTI, "sid": a.SessionID, "iss": a.Issuer, "aud": a.Audience, "token_type": "Bearer", "amr": amr,
	}
	if a.ClientToken() { // RFC 7662: whose token it is, and what it may do
		out["client_id"], out["scope"] = a.ClientID, strings.Join(a.Scope, " ")
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// introspectionToken reads the token from an RFC 7662 form body or a JSON
// body; never from the query string.
func introspectionToken(w http.ResponseWriter, r *http.Request) (string, error) {
	var in struct {
		Token         string `json:"token"`
		TokenTypeHint string `json:"token_type_hint"`
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mt {
	case "application/x-www-form-urlencoded", "application/json":
	default:
		return "", &authd.Error{Code: authd.EUnsupportedMedia,
			Message: "Send the body as application/x-www-form-urlencoded (RFC 7662) or application/json."}
	}
	if mt == "application/x-www-form-urlencoded" {
		body, err := readBody(w, r, mt)
		if err != nil {
			return "", err
		}
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return "", invalid("", "is not a valid form")
		}
		if len(form["token"]) != 1 {
			return "", invalid("token", "is required once")
		}
		in.Token = form.Get("token")
	} else if err := decodeJSON(w, r, &in); err != nil {
		return "", err
	}
	return in.Token, required("token", in.Token)
}

// serviceToken reports whether the request carries one of the configured
// service tokens, comparing against all of them in constant time.
func (s *Server) serviceToken(r *http.Request) bool { return s.serviceTokenIndex(r) >= 0 }

// serviceTokenIndex returns the index in Options.ServiceTokens of the
// service token the request carries, -1 for none; every token is compared
// in constant time.
func (s *Server) serviceTokenIndex(r *http.Request) int {
	token, ok := bearer(r)
	if !ok {
		return -1
	}
	found := -1
	for i, t := range s.opts.ServiceTokens {
		found = subtle.ConstantTimeSelect(subtle.ConstantTimeCompare([]byte(token), []byte(t)), i, found)
	}
	return found
}
