// Package oidc makes authd an OpenID Connect provider (issue 10): discovery,
// the authorization endpoint with its hosted sign-in, second-factor, consent
// and sign-out pages, the token and UserInfo endpoints, and RP-initiated
// logout. It translates the protocol to the domain's flows (authd.Service)
// and adds no second login, rotation or revocation of its own: sign-in is
// Login and VerifyMFA, the tokens are the JSON API's (RFC 9068 access
// tokens, rotating refresh tokens), logout ends sessions as the JSON API
// does.
//
// The token and UserInfo endpoints run on zitadel/oidc's op.Server
// (request parsing, client authentication by client_secret_basic,
// client_secret_post or none, grant dispatch, RFC 6749 error answers); this
// package implements that interface on the domain, so the library never
// mints a token of its own. The authorization and end-session endpoints are
// this package's, because they render pages: an unknown client or a
// redirect URI that is not registered gets an error page, never a redirect.
package oidc

import (
	"context"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/shedlog"
	"github.com/authd/authd/token"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// The endpoints, under the public URL: their routes are these paths, and
// the browser is sent to them under the public URL's path (Provider.path),
// which a proxy in front strips.
const (
	DiscoveryPath = "/.well-known/openid-configuration"
	JWKSPath      = "/.well-known/jwks.json" // served by httpapi
	AuthorizePath = "/oauth2/authorize"
	ResumePath    = "/oauth2/authorize/resume"
	TokenPath     = "/oauth2/token"
	RevokePath    = "/oauth2/revoke"
	UserInfoPath  = "/oauth2/userinfo"
	LogoutPath    = "/oauth2/logout"
	SignInPath    = "/signin"
	MFAPath       = "/signin/mfa"
	PasskeyPath   = "/signin/passkey"
	ConsentPath   = "/consent"
	SignUpPath    = "/signup"
	ForgotPath    = "/signin/forgot"
	ResendPath    = "/signin/verify-email"
)

// maxForm bounds a form body, as the JSON API bounds its bodies.
const maxForm = 64 << 10

// Options configure the provider.
type Options struct {
	Service *authd.Service
	// Issuer is the iss of ID tokens and of discovery (AUTHD_ISSUER); the
	// endpoints are under PublicURL. Discovery is served at the issuer's
	// path too (IssuerDiscoveryPath), where relying parties look for it.
	Issuer    string
	PublicURL string
	// IDKeys sign ID tokens (token.IDTokenAlg).
	IDKeys *token.Keyring
	// IDTokenTTL is the lifetime of ID tokens (the access-token lifetime,
	// so that JWKS keeps their keys as long).
	IDTokenTTL time.Duration
	// FormKey keys the forms' CSRF tokens; every instance must share it.
	FormKey []byte
	// Client tells who made a request (the JSON API's client-IP rules).
	Client func(*http.Request) authd.Client
	Clock  func() time.Time
	Logger *slog.Logger
	// AppName names the service on the pages; BrandColor (#RRGGBB) colours
	// their buttons; LogoURL (https), when set, is shown above the title.
	AppName    string
	BrandColor string
	LogoURL    string
	// TemplatesDir, when set, holds page templates that replace the
	// embedded ones file by file (AUTHD_TEMPLATES_DIR/oidc).
	TemplatesDir string
}

// Provider is the OpenID provider's handler.
type Provider struct {
	opts   Options
	svc    *authd.Service
	secure bool // the public URL is https: __Host- cookies, Secure
	// basePath is the public URL's path without its final "/" ("" for
	// none): a proxy in front strips it before the routes, so every address
	// handed to a browser starts with it (path).
	basePath string
	// discoveryPaths are where discovery is served: DiscoveryPath, and the
	// issuer's own when its URL has a path.
	discoveryPaths []string
	mux            *http.ServeMux
	pages          map[string]*template.Template
	shed           *shedlog.Log     // requests shed at capacity (ErrBusy), told sampled
	down           *shedlog.Outages // outages (the database unreachable, a disk full), likewise
}

// New returns the provider. An override template that does not parse or
// render is an error naming its file.
func New(opts Options) (*Provider, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.Client == nil {
		opts.Client = func(r *http.Request) authd.Client { return authd.Client{UserAgent: r.UserAgent()} }
	}
	if opts.AppName == "" {
		opts.AppName = "authd"
	}
	if !validColor(opts.BrandColor) {
		opts.BrandColor = "#0b57d0"
	}
	opts.PublicURL = strings.TrimRight(opts.PublicURL, "/")
	pages, err := loadPages(opts.TemplatesDir)
	if err != nil {
		return nil, err
	}
	// url.Parse lower-cases the scheme: HTTPS://… is https too.
	public, err := url.Parse(opts.PublicURL)
	secure := err == nil && public.Scheme == "https"
	basePath := ""
	if err == nil {
		basePath = strings.TrimRight(public.EscapedPath(), "/")
	}
	p := &Provider{opts: opts, svc: opts.Service, secure: secure, basePath: basePath, mux: http.NewServeMux(), pages: pages,
		shed: shedlog.New(opts.Logger, "openid provider: requests shed: at capacity (503)"),
		down: shedlog.NewOutages(opts.Logger, "openid provider: ")}

	opServer := op.RegisterServer(&server{p: p}, op.Endpoints{
		Token:      op.NewEndpoint(TokenPath),
		Revocation: op.NewEndpoint(RevokePath),
		Userinfo:   op.NewEndpoint(UserInfoPath),
	}, op.WithServerCORSOptions(nil))
	lib := withHeader(opServer)
	p.discoveryPaths = []string{DiscoveryPath}
	if path, ok := IssuerDiscoveryPath(opts.Issuer); ok && path != DiscoveryPath {
		p.discoveryPaths = append(p.discoveryPaths, path)
	}
	for _, path := range p.discoveryPaths {
		p.mux.HandleFunc("GET "+path, p.discovery)
	}
	p.mux.Handle("POST "+TokenPath, noStore(strictCredentials(withHeader(p.tokenEndpoint(opServer)))))
	p.mux.Handle("POST "+RevokePath, noStore(strictCredentials(withHeader(p.tokenEndpoint(opServer)))))
	userInfo := challenged(lib)
	p.mux.Handle("GET "+UserInfoPath, strictCredentials(userInfo))
	p.mux.Handle("POST "+UserInfoPath, strictCredentials(bounded(oneToken(userInfo))))
	p.mux.HandleFunc("GET "+AuthorizePath, p.authorize)
	p.mux.HandleFunc("POST "+AuthorizePath, p.authorize)
	p.mux.HandleFunc("GET "+ResumePath, p.resume)
	p.mux.HandleFunc("GET "+SignInPath, p.signInPage)
	p.mux.HandleFunc("POST "+SignInPath, p.signIn)
	p.mux.HandleFunc("POST "+MFAPath, p.signInMFA)
	p.mux.HandleFunc("POST "+PasskeyPath, p.signInPasskey)
	p.mux.HandleFunc("POST "+ConsentPath, p.consent)
	for _, path := range formOnlyPaths {
		p.mux.HandleFunc("GET "+path, p.formOnly)
	}
	p.mux.HandleFunc("GET "+SignUpPath, signUpForm.show(p))
	p.mux.HandleFunc("POST "+SignUpPath, signUpForm.post(p))
	p.mux.HandleFunc("GET "+ForgotPath, forgotForm.show(p))
	p.mux.HandleFunc("POST "+ForgotPath, forgotForm.post(p))
	p.mux.HandleFunc("GET "+ResendPath, resendForm.show(p))
	p.mux.HandleFunc("POST "+ResendPath, resendForm.post(p))
	p.mux.HandleFunc("GET "+LogoutPath, p.logoutPage)
	p.mux.HandleFunc("POST "+LogoutPath, p.logout)
	return p, nil
}

// FlushLog tells at once the shed requests whose count the log holds back
// (at most a second's): for a shutdown, once http.Server.Shutdown returned.
func (p *Provider) FlushLog() {
	p.shed.Flush()
	p.down.Flush()
}

// Patterns are the routes the provider serves, for the public listener's
// mux (method and path, as http.ServeMux takes them).
func (p *Provider) Patterns() []string {
	var patterns []string
	for _, path := range p.discoveryPaths {
		patterns = append(patterns, "GET "+path)
	}
	patterns = append(patterns, "POST "+TokenPath, "POST "+RevokePath, "GET "+UserInfoPath, "POST "+UserInfoPath,
		"GET "+AuthorizePath, "POST "+AuthorizePath, "GET "+ResumePath, "GET "+SignInPath,
		"POST "+SignInPath, "POST "+MFAPath, "POST "+PasskeyPath, "POST "+ConsentPath, "GET "+SignUpPath, "POST "+SignUpPath,
		"GET "+ForgotPath, "POST "+ForgotPath, "GET "+ResendPath, "POST "+ResendPath, "GET "+LogoutPath, "POST "+LogoutPath)
	for _, path := range formOnlyPaths {
		patterns = append(patterns, "GET "+path)
	}
	return patterns
}

// IssuerDiscoveryPath is the path of the discovery document of issuer
// (OpenID Connect Discovery §4: the issuer's path less a final "/", then
// DiscoveryPath), when issuer is an http(s) URL whose path a router takes
// as written: segments of RFC 3986's unreserved characters, none "." or
// "..". False for another issuer: a name, or a path that is not routed.
func IssuerDiscoveryPath(issuer string) (string, bool) {
	u, err := url.Parse(issuer)
	if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", false
	}
	path := strings.TrimSuffix(u.EscapedPath(), "/")
	for _, segment := range strings.Split(path, "/")[1:] {
		if segment == "" || segment == "." || segment == ".." || strings.ContainsFunc(segment, func(r rune) bool {
			return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune("-._~", r))
		}) {
			return "", false
		}
	}
	return path + DiscoveryPath, true
}

// formOnlyPaths take only a page's form: a GET gets a page saying so.
var formOnlyPaths = []string{MFAPath, PasskeyPath, ConsentPath}

func (p *Provider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := context.WithValue(r.Context(), clientKey{}, p.opts.Client(r))
	p.mux.ServeHTTP(w, r.WithContext(ctx))
}

type clientKey struct{}

// client is who made the request, for the audit log and the rate limits.
func client(ctx context.Context) authd.Client {
	c, _ := ctx.Value(clientKey{}).(authd.Client)
	return c
}

// strictCredentials refuses a request with a query string: codes, secrets
// and tokens travel in the body or the Authorization header, never in a
// URL that logs and proxies keep (SPEC 6.11); the library would read them
// from either. And one with two Authorization headers, of which the
// library would take the first: which counts would be the reader's choice,
// and a proxy may have checked the other (as the JSON API refuses them).
func strictCredentials(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var why string
		switch {
		case r.URL.RawQuery != "":
			why = "parameters go in the body or the Authorization header, not the query string"
		case len(r.Header.Values("Authorization")) > 1:
			why = "give one Authorization header"
		default:
			h.ServeHTTP(w, r)
			return
		}
		invalidRequest(w, http.StatusBadRequest, why)
	})
}

// noStore marks every answer of h, refusals included, as not to be cached
// (RFC 6749 §5.1; Pragma for HTTP/1.0 caches).
func noStore(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Pragma", "no-cache")
		h.ServeHTTP(w, r)
	})
}

// invalidRequest answers invalid_request (RFC 6749 §5.2) with status,
// saying why.
func invalidRequest(w http.ResponseWriter, status int, why string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write([]byte(`{"error":"invalid_request","error_description":"` + why + `"}`))
}

// oneToken refuses a UserInfo POST that sends its access token more than
// once, or both in the Authorization header and in the body (RFC 6750 §2:
// one method per request): the library would take one of them, and which
// would be its choice, not the client's.
func oneToken(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			if formTooLarge(w, err) {
				invalidRequest(w, http.StatusRequestEntityTooLarge, "the body is larger than 64 KiB")
				return
			}
			invalidRequest(w, http.StatusBadRequest, "the body is not a form")
			return
		}
		switch {
		case repeated(r.PostForm):
			invalidRequest(w, http.StatusBadRequest, "a parameter is repeated")
		case r.Header.Get("Authorization") != "" && r.PostForm.Has("access_token"):
			invalidRequest(w, http.StatusBadRequest, "send the access token one way: the Authorization header or the body")
		default:
			h.ServeHTTP(w, r)
		}
	})
}

// bounded limits a request body to maxForm: one declared larger is 413 at
// once.
func bounded(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if limitForm(w, r) {
			invalidRequest(w, http.StatusRequestEntityTooLarge, "the body is larger than 64 KiB")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// limitForm bounds r's body at maxForm, and reports a body declared
// larger (Content-Length), refused before a byte is read. Such an answer,
// like one to a body that turns out larger (formTooLarge), closes the
// connection: net/http would otherwise read the rest before answering,
// waiting on a client that sends less than it declared.
func limitForm(w http.ResponseWriter, r *http.Request) (declaredTooLarge bool) {
	if r.ContentLength > maxForm {
		w.Header().Set("Connection", "close")
		return true
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	return false
}

// formTooLarge reports whether err, reading a body limitForm bounded, is
// the bound passed, and then closes the connection after the answer.
func formTooLarge(w http.ResponseWriter, err error) bool {
	if !errors.As(err, new(*http.MaxBytesError)) {
		return false
	}
	w.Header().Set("Connection", "close")
	return true
}

func (p *Provider) now() time.Time { return p.opts.Clock().UTC() }

func (p *Provider) url(path string) string { return p.opts.PublicURL + path }

// path is the address under which a browser reaches the route path: the
// public URL's path, then path (AUTHD_PUBLIC_URL=https://auth.example.org/idp
// sends /signin to /idp/signin, which the proxy in front hands to /signin).
func (p *Provider) path(path string) string { return p.basePath + path }

// seeOther sends the browser on to the route path (with its query) under
// the public URL's path: every redirect to a page of authd's goes through it.
func (p *Provider) seeOther(w http.ResponseWriter, r *http.Request, path string) {
	http.Redirect(w, r, p.path(path), http.StatusSeeOther)
}
