package oidc

import (
	"context"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/coding"
	"github.com/authd/authd/token"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// server implements the token, revocation and UserInfo endpoints of
// op.Server on the domain. Every other method stays unimplemented (the
// library answers 404), and only these three endpoints are routed to it.
type server struct {
	op.UnimplementedServer
	p *Provider
}

var _ op.Server = (*server)(nil)

// discoveryDocument is OpenID Connect Discovery 1.0 plus RFC 9207's flag.
type discoveryDocument struct {
	*oidc.DiscoveryConfiguration
	AuthorizationResponseIssParameterSupported bool `json:"authorization_response_iss_parameter_supported"`
}

func (p *Provider) discovery(w http.ResponseWriter, r *http.Request) {
	doc := discoveryDocument{DiscoveryConfiguration: &oidc.DiscoveryConfiguration{
		Issuer:                            p.opts.Issuer,
		AuthorizationEndpoint:             p.url(AuthorizePath),
		TokenEndpoint:                     p.url(TokenPath),
		RevocationEndpoint:                p.url(RevokePath),
		UserinfoEndpoint:                  p.url(UserInfoPath),
		EndSessionEndpoint:                p.url(LogoutPath),
		JwksURI:                           p.url(JWKSPath),
		ScopesSupported:                   authd.Scopes(),
		ResponseTypesSupported:            []string{string(oidc.ResponseTypeCode)},
		ResponseModesSupported:            []string{"query"},
		GrantTypesSupported:               []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken},
		SubjectTypesSupported:             []string{"public"},
		IDTokenSigningAlgValuesSupported:  []string{token.IDTokenAlg},
		TokenEndpointAuthMethodsSupported: []oidc.AuthMethod{oidc.AuthMethodBasic, oidc.AuthMethodPost, oidc.AuthMethodNone},
		RevocationEndpointAuthMethodsSupported: []oidc.AuthMethod{oidc.AuthMethodBasic, oidc.AuthMethodPost,
			oidc.AuthMethodNone},
		CodeChallengeMethodsSupported: []oidc.CodeChallengeMethod{oidc.CodeChallengeMethodS256},
		ClaimsSupported: []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "amr", "sid", "azp",
			"at_hash", "email", "email_verified"},
		RequestURIParameterSupported: false,
	}, AuthorizationResponseIssParameterSupported: true}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	json.NewEncoder(w).Encode(doc)
}

// opClient is a registered client as op sees it: what it may ask for.
type opClient struct{ c *authd.OAuthClient }

func (c opClient) GetID() string                    { return c.c.ID }
func (c opClient) RedirectURIs() []string           { return c.c.RedirectURIs }
func (c opClient) PostLogoutRedirectURIs() []string { return c.c.PostLogoutRedirectURIs }
func (c opClient) ApplicationType() op.ApplicationType {
	if c.c.Type == authd.ClientPublic {
		return op.ApplicationTypeUserAgent
	}
	return op.ApplicationTypeWeb
}
func (c opClient) AuthMethod() oidc.AuthMethod {
	if c.c.Type == authd.ClientPublic {
		return oidc.AuthMethodNone
	}
	return oidc.AuthMethodBasic
}
func (c opClient) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c opClient) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken}
}

// LoginURL is the library's, for its authorize handler, which authd does
// not serve (the pages send the browser under the public URL's path).
func (c opClient) LoginURL(string) string               { return SignInPath }
func (c opClient) AccessTokenType() op.AccessTokenType  { return op.AccessTokenTypeJWT }
func (c opClient) IDTokenLifetime() time.Duration       { return 0 }
func (c opClient) DevMode() bool                        { return false }
func (c opClient) IsScopeAllowed(scope string) bool     { return slices.Contains(authd.Scopes(), scope) }
func (c opClient) IDTokenUserinfoClaimsAssertion() bool { return false }
func (c opClient) ClockSkew() time.Duration             { return 0 }
func (c opClient) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c opClient) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

// VerifyClient authenticates the client at the token endpoint: its secret
// (basic or post) for a confidential client, none for a public one. The
// domain logs a refusal with the method the client used.
func (s *server) VerifyClient(ctx context.Context, r *op.Request[op.ClientCredentials]) (op.Client, error) {
	cc := r.Data
	if cc.ClientAssertion != "" {
		// Logged and bounded as every other refused client authentication.
		const reason = "client assertions are not supported"
		return nil, refusal(ctx, s.p.svc.RefuseClient(ctx, client(ctx), cc.ClientID, "client_assertion", reason), reason)
	}
	c, err := s.p.svc.AuthenticateClient(ctx, client(ctx), cc.ClientID, cc.ClientSecret, string(authMethod(r)))
	if err != nil {
		return nil, tokenError(ctx, err)
	}
	return opClient{c}, nil
}

// authMethod names how the request presented its client's credentials
// (RFC 7591 §2's token_endpoint_auth_method values); the library has
// already let the Authorization header's Basic credentials win.
func authMethod(r *op.Request[op.ClientCredentials]) oidc.AuthMethod {
	if _, _, ok := (&http.Request{Header: r.Header}).BasicAuth(); ok {
		return oidc.AuthMethodBasic
	}
	if r.Data.ClientSecret != "" {
		return oidc.AuthMethodPost
	}
	return oidc.AuthMethodNone
}

// CodeExchange redeems an authorization code (RedeemCode) and answers with
// the session's access token, an ID token, and the refresh token when
// offline_access was granted.
func (s *server) CodeExchange(ctx context.Context, r *op.ClientRequest[oidc.AccessTokenRequest]) (*op.Response, error) {
	oc := r.Client.(opClient).c
	grant, err := s.p.svc.RedeemCode(ctx, client(ctx), oc, r.Data.Code, r.Data.RedirectURI, r.Data.CodeVerifier)
	if err != nil {
		return nil, tokenError(ctx, err)
	}
	// The ID token ends no later than the access token it comes with, which
	// ends with its session (a relying party may take its exp for its own
	// session's end).
	now := s.p.now()
	claims := token.IDClaims{Issuer: s.p.opts.Issuer, Subject: grant.User.ID.String(), Audience: oc.ID,
		IssuedAt: now, ExpiresAt: now.Add(min(s.p.opts.IDTokenTTL, grant.Pair.ExpiresIn)), AuthTime: grant.Code.AuthTime, Nonce: grant.Code.Nonce,
		AMR: grant.Code.AMR, SessionID: grant.Pair.SessionID.String(), AccessToken: grant.Pair.AccessToken}
	if slices.Contains(grant.Code.Scopes, authd.ScopeEmail) {
		claims.Email, claims.EmailVerified = grant.User.Email, grant.User.EmailVerified
	}
	id, err := s.p.opts.IDKeys.SignID(claims, now)
	if err != nil {
		return nil, tokenError(ctx, err)
	}
	resp := &oidc.AccessTokenResponse{AccessToken: grant.Pair.AccessToken, TokenType: oidc.BearerToken,
		ExpiresIn: uint64(grant.Pair.ExpiresIn / time.Second), IDToken: id, Scope: grant.Code.Scopes}
	if slices.Contains(grant.Code.Scopes, authd.ScopeOfflineAccess) {
		resp.RefreshToken = grant.Pair.RefreshToken
	}
	return op.NewResponse(resp), nil
}

// RefreshToken rotates a refresh token of a session the client started,
// with the JSON API's one rotation (RefreshForClient: reuse and grace as
// SPEC 6.4).
//
// A scope sent with it (RFC 6749 §6) must be the one granted
// (RefreshForClient checks it in the rotation, after reuse).
func (s *server) RefreshToken(ctx context.Context, r *op.ClientRequest[oidc.RefreshTokenRequest]) (*op.Response, error) {
	var scopes []string // nil: none named
	if len(r.Data.Scopes) > 0 {
		// Scopes authd does not know are dropped, as at the authorization
		// endpoint: a client resending its configured list (openid
		// profile …) asks for what it was granted; one naming only unknown
		// scopes asks for none of it, and is refused.
		scopes = slices.DeleteFunc(slices.Clone(r.Data.Scopes), func(s string) bool { return !slices.Contains(authd.Scopes(), s) })
	}
	pair, err := s.p.svc.RefreshForClient(ctx, client(ctx), r.Client.GetID(), r.Data.RefreshToken, scopes)
	if err != nil {
		return nil, tokenError(ctx, err)
	}
	return op.NewResponse(&oidc.AccessTokenResponse{AccessToken: pair.AccessToken, TokenType: oidc.BearerToken,
		ExpiresIn: uint64(pair.ExpiresIn / time.Second), RefreshToken: pair.RefreshToken}), nil
}

// Revocation ends the session of a token of the authenticated client
// (RevokeClientToken, RFC 7009): an access or a refresh token, whatever
// token_type_hint says (a wrong hint is ignored, §2.1). Any other token is
// answered alike, 200 with no body (§2.2).
func (s *server) Revocation(ctx context.Context, r *op.ClientRequest[oidc.RevocationRequest]) (*op.Response, error) {
	err := s.p.svc.RevokeClientToken(ctx, client(ctx), r.Client.(opClient).c, r.Data.Token)
	if errors.Is(err, authd.ErrPublicAccessRevocation) {
		return nil, &oidc.Error{ErrorType: "unsupported_token_type", Description: "a public client revokes its " +
			"refresh token; an access token is not revoked on a public client's word"}
	}
	if err != nil {
		return nil, tokenError(ctx, err)
	}
	return op.NewResponse(nil), nil
}

// UserInfo answers for a valid access token of an OpenID client
// (Authenticate: signature, claims, revocation set; Service.UserInfo: a
// client's, with openid): the subject, and its email and whether it is
// verified when the client was granted the email scope.
func (s *server) UserInfo(ctx context.Context, r *op.Request[oidc.UserInfoRequest]) (*op.Response, error) {
	claims, err := s.p.svc.Authenticate(ctx, r.Data.AccessToken)
	if authd.ErrorCode(err) == authd.EUnavailable { // revocations cannot be checked: not the token's fault
		return nil, tokenError(ctx, err)
	}
	if err != nil {
		return nil, invalidToken(ctx)
	}
	u, scopes, err := s.p.svc.UserInfo(ctx, claims)
	if err != nil {
		if authd.ErrorCode(err) == authd.EInvalidToken || authd.ErrorCode(err) == authd.ENotFound {
			return nil, invalidToken(ctx)
		}
		return nil, tokenError(ctx, err)
	}
	info := &oidc.UserInfo{Subject: u.ID.String()}
	if slices.Contains(scopes, authd.ScopeEmail) {
		// email_verified as a claim of its own: the library's field drops
		// false (omitempty), and a relying party must read an unverified
		// address as one, not as a claim left unsaid (OIDC Core §5.1).
		info.Email = u.Email
		info.AppendClaims("email_verified", u.EmailVerified)
	}
	return op.NewResponse(info), nil
}

// tokenError turns a domain error into the token endpoint's answer (RFC
// 6749 §5.2). Internal causes are not shown.
//
// A rate limit is 429 with Retry-After and invalid_request: §5.2 gives the
// token endpoint no code for it (temporarily_unavailable is the
// authorization endpoint's, §4.1.2.1), invalid_request is its catch-all for
// a request it will not take, and the status and Retry-After tell the
// client to wait. Not server_error: the library logs that at ERROR, and a
// client's flood is no fault of ours.
func tokenError(ctx context.Context, err error) error {
	var rl *authd.Error
	switch authd.ErrorCode(err) {
	case authd.EInvalidToken:
		return oidc.ErrInvalidGrant().WithDescription("the code or refresh token is invalid, expired or revoked")
	case authd.EInvalidCredentials:
		return invalidClient(ctx, "the client is unknown or its credentials are wrong")
	case authd.ERateLimited:
		setHeader(ctx, "Retry-After", strconv.Itoa(max(authd.RetryAfterSeconds(err), 1)))
		return op.NewStatusError(oidc.ErrInvalidRequest().WithDescription("too many requests; try again later"),
			http.StatusTooManyRequests)
	case authd.EUnavailable:
		setHeader(ctx, "Retry-After", strconv.Itoa(max(authd.RetryAfterSeconds(err), 1)))
		return op.NewStatusError(oidc.ErrServerError().WithDescription("temporarily unavailable; try again later"),
			http.StatusServiceUnavailable)
	}
	if errors.As(err, &rl) && rl.Code == authd.EInvalid {
		if len(rl.Fields) == 1 && rl.Fields[0].Field == "scope" { // RefreshForClient
			return oidc.ErrInvalidScope().WithDescription("%s", rl.Message)
		}
		return oidc.ErrInvalidRequest().WithDescription("%s", rl.Message)
	}
	return op.NewStatusError(oidc.ErrServerError().WithDescription("internal error").WithParent(err), http.StatusInternalServerError)
}

// The challenges of the 401s (RFC 7235 §3.1: a 401 carries one; the
// library sets none). A client that fails to authenticate is asked for
// Basic, the scheme of client_secret_basic (RFC 6749 §5.2); UserInfo asks
// for a bearer token, with invalid_token when the request had one (RFC 6750
// §3, OIDC Core §5.3.3) and no error code when it had none (§3.1).
const (
	clientChallenge       = `Basic realm="authd"`
	bearerChallenge       = `Bearer realm="authd"`
	invalidTokenChallenge = `Bearer realm="authd", error="invalid_token"`
)

// invalidClient is the token endpoint's 401 invalid_client, with its
// challenge.
func invalidClient(ctx context.Context, description string) error {
	setHeader(ctx, "WWW-Authenticate", clientChallenge)
	return op.NewStatusError(oidc.ErrInvalidClient().WithDescription("%s", description), http.StatusUnauthorized)
}

// invalidToken is UserInfo's 401 invalid_token for an access token it does
// not take, with its challenge. The library has no constructor for the
// code (it is RFC 6750's, not RFC 6749's).
func invalidToken(ctx context.Context) error {
	setHeader(ctx, "WWW-Authenticate", invalidTokenChallenge)
	return op.NewStatusError(&oidc.Error{ErrorType: "invalid_token", Description: "the access token is invalid, expired or revoked"},
		http.StatusUnauthorized)
}

// headerKey carries the response's header to the library's callbacks,
// which get a context but no ResponseWriter, so that they can set
// Retry-After or WWW-Authenticate before the library writes the error.
type headerKey struct{}

// setHeader sets a header of the response the library is about to write.
func setHeader(ctx context.Context, name, value string) {
	if h, ok := ctx.Value(headerKey{}).(http.Header); ok {
		h.Set(name, value)
	}
}

// challenged gives each 401 of UserInfo's handler h that has no
// WWW-Authenticate the bare Bearer challenge, and no body: the library
// answers a request without any access token itself, before a callback
// could set one, with invalid_request in its body, where RFC 6750 §3.1
// says such an answer SHOULD NOT carry an error code or other error
// information (a client that sent nothing has nothing wrong to be told).
func challenged(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(&challengeWriter{ResponseWriter: w}, r)
	})
}

type challengeWriter struct {
	http.ResponseWriter
	bare bool // a 401 without credentials: its body is dropped
}

func (w *challengeWriter) WriteHeader(status int) {
	if status == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") == "" {
		w.bare = true
		w.Header().Set("WWW-Authenticate", bearerChallenge)
		w.Header().Del("Content-Type")
		w.Header().Del("Content-Length")
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *challengeWriter) Write(b []byte) (int, error) {
	if w.bare {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// withHeader puts w's header in the request's context (headerKey).
func withHeader(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), headerKey{}, w.Header())))
	})
}

// tokenEndpoint fronts the library's token and revocation handlers (inside
// withHeader) for what the library would answer before VerifyClient runs:
//
//   - a body over maxForm is 413 (SPEC §5), not its 400 "error parsing form";
//   - a compressed body (Content-Encoding) is 415, as on the JSON API, not
//     a form read from the compressed bytes;
//   - a parameter given more than once (in the body, or in the query and
//     the body) is 400 invalid_request (RFC 6749 §3.2), where the library
//     would take the last one;
//   - an Authorization header of the Basic scheme that does not decode into
//     a client_id and a secret (RFC 6749 §2.3.1: base64 of the
//     form-urlencoded id, ":", the form-urlencoded secret; the id not
//     empty), and a code or refresh grant (or a revocation) with no client authentication at
//     all, are a client that failed to authenticate: 401 invalid_client
//     with the challenge (§5.2) and the oidc_client_auth_failed row of
//     every other refusal, under the same bound, not its unchallenged 400.
//
// Every answer is no-store (§5.1; noStore, outside it).
func (p *Provider) tokenEndpoint(lib http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if coding.Encoded(r.Header) {
			op.WriteError(w, r, op.NewStatusError(oidc.ErrInvalidRequest().WithDescription(
				"Content-Encoding is not supported: send the body uncompressed"), http.StatusUnsupportedMediaType), nil)
			return
		}
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
			// Any other body is not read at all (ParseForm), and would be
			// answered as if its parameters were missing.
			op.WriteError(w, r, oidc.ErrInvalidRequest().WithDescription(
				"send the parameters as an application/x-www-form-urlencoded body"), nil)
			return
		}
		tooLarge := func() {
			op.WriteError(w, r, op.NewStatusError(oidc.ErrInvalidRequest().WithDescription("the body is larger than 64 KiB"),
				http.StatusRequestEntityTooLarge), nil)
		}
		if limitForm(w, r) {
			tooLarge()
			return
		}
		if err := r.ParseForm(); err != nil {
			if formTooLarge(w, err) {
				tooLarge()
				return
			}
			op.WriteError(w, r, oidc.ErrInvalidRequest().WithDescription("error parsing form"), nil)
			return
		}
		if repeated(r.Form) { // the query's and the body's: the library reads the last, these checks the first
			op.WriteError(w, r, oidc.ErrInvalidRequest().WithDescription("a parameter is repeated"), nil)
			return
		}
		revocation, grant := r.URL.Path == RevokePath, oidc.GrantType(r.PostForm.Get("grant_type"))
		// The library answers some grants it knows of but authd does not
		// serve (token exchange, device code, client credentials) with
		// unauthorized_client, as if this client alone lacked them. A
		// revocation names none.
		if revocation && r.PostForm.Has("grant_type") {
			op.WriteError(w, r, oidc.ErrInvalidRequest().WithDescription("a revocation takes token (and token_type_hint), "+
				"not grant_type"), nil)
			return
		} else if grant != "" && grant != oidc.GrantTypeCode && grant != oidc.GrantTypeRefreshToken {
			op.WriteError(w, r, oidc.ErrUnsupportedGrantType().WithDescription(
				"only authorization_code and refresh_token are supported"), nil)
			return
		}
		if scheme, _, _ := strings.Cut(r.Header.Get("Authorization"), " "); strings.EqualFold(scheme, "Basic") {
			id, ok := basicClientID(r)
			if !ok {
				p.refuseClient(w, r, id, oidc.AuthMethodBasic, "malformed basic credentials",
					"the Authorization header's Basic credentials do not decode into a client_id and a secret")
				return
			}
			if body := r.PostForm.Get("client_id"); body != "" && body != id {
				// Not exploitable (the credentials decide), but a request
				// that names two clients is wrong, not to be half read.
				op.WriteError(w, r, oidc.ErrInvalidRequest().WithDescription(
					"client_id in the body names another client than the Basic credentials"), nil)
				return
			}
		} else if (revocation || grant == oidc.GrantTypeCode || grant == oidc.GrantTypeRefreshToken) &&
			r.PostForm.Get("client_id") == "" && r.PostForm.Get("client_assertion") == "" {
			p.refuseClient(w, r, "", oidc.AuthMethodNone, "no client authentication",
				"no client authentication: send client_id, and the secret of a confidential client")
			return
		}
		lib.ServeHTTP(w, r)
	})
}

// basicClientID reads the client_id of r's Basic credentials, ok when they
// decode as RFC 6749 §2.3.1 has them: ok false with the id as far as it
// could be read ("" when the header is no base64 of text with a colon).
func basicClientID(r *http.Request) (id string, ok bool) {
	rawID, rawSecret, ok := r.BasicAuth()
	if !ok {
		return "", false
	}
	id, err := url.QueryUnescape(rawID)
	if err != nil {
		return rawID, false
	}
	if _, err := url.QueryUnescape(rawSecret); err != nil {
		return id, false
	}
	return id, id != ""
}

// refuseClient answers a client authentication refused before the library
// could check it: the domain logs it (RefuseClient), and the answer is
// tokenError's, 401 invalid_client with description, or 429.
func (p *Provider) refuseClient(w http.ResponseWriter, r *http.Request, id string, method oidc.AuthMethod, reason, description string) {
	ctx := r.Context()
	op.WriteError(w, r, refusal(ctx, p.svc.RefuseClient(ctx, client(ctx), id, string(method), reason), description), nil)
}

// refusal is the token endpoint's answer to RefuseClient's err: 401
// invalid_client with description, or tokenError's (429, 503).
func refusal(ctx context.Context, err error, description string) error {
	if authd.ErrorCode(err) == authd.EInvalidCredentials {
		return invalidClient(ctx, description)
	}
	return tokenError(ctx, err)
}
