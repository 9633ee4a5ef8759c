// Package httpapi is authd's HTTP interface: routes, handlers, strict JSON
// and problem+json, middleware, and the one table that maps domain error
// codes to statuses.
package httpapi

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/shedlog"
)

// Options configure the public API.
type Options struct {
	Service *authd.Service
	// JWKS returns the current JSON Web Key Set.
	JWKS func() ([]byte, error)
	// JWKSMaxAge is how long resource servers may cache the JWKS; key
	// rotation waits as long before a new key signs (token.JWKSMaxAge).
	JWKSMaxAge time.Duration
	// Ready reports whether the database is reachable and at head.
	Ready          func(context.Context) error
	Logger         *slog.Logger
	ServiceTokens  []string       // bearer secrets allowed to introspect
	TrustedProxies []netip.Prefix // whose X-Forwarded-For is believed
	CORSOrigins    []string
	// PasswordMinLength is shown on the reset page.
	PasswordMinLength int
	// Pages are the page templates (LoadPages); nil means the embedded ones.
	Pages Pages
	// HSTS adds Strict-Transport-Security (when AUTHD_PUBLIC_URL is https).
	HSTS bool
	// PublicURL is AUTHD_PUBLIC_URL: its origin is the pages' own, trusted
	// by their forms' cross-origin check where a proxy rewrote Host; its
	// path, which a proxy in front strips before the routes, begins every
	// address of authd's the pages and redirects hand a browser.
	PublicURL string
	// Metrics serves GET /metrics, on the admin listener only: its counters
	// (register notices, failed registrations, resets) would tell an
	// outsider whether an address has an account.
	Metrics http.Handler
	// Observe, when set, is told of every request (for metrics).
	Observe func(route string, status int, elapsed time.Duration)
	// MaxRevocationStreams bounds the concurrent revocation-feed streams
	// (GET /v1/auth/revocations); 0 means DefaultRevocationStreams. With
	// more than one service token, one token holds at most half of them.
	MaxRevocationStreams int
	// RevocationHeartbeat is how often an idle stream sends a comment; 0
	// means DefaultRevocationHeartbeat.
	RevocationHeartbeat time.Duration
	// RevocationStreamMaxAge ends a stream (the client resumes); 0 means
	// DefaultRevocationStreamMaxAge.
	RevocationStreamMaxAge time.Duration
	// RevocationReadTimeout bounds the feed's first database read, before
	// the answer starts, so that a stuck database is a 503 and not a hang;
	// 0 means DefaultRevocationReadTimeout.
	RevocationReadTimeout time.Duration
	// Mounts are other adapters' handlers on the public listener (the
	// OpenID provider), behind the same middleware: request id, client IP,
	// security headers, log line, metrics.
	Mounts []Mount
}

// Mount is a handler served at its patterns (http.ServeMux syntax).
type Mount struct {
	Patterns []string
	Handler  http.Handler
}

// RequestClient is who made a request, as the middleware worked it out
// (trusted proxies included), for mounted handlers.
func RequestClient(r *http.Request) authd.Client { return client(r) }

// Server is the public listener's handler.
type Server struct {
	opts    Options
	svc     *authd.Service
	logger  *slog.Logger
	mux     *http.ServeMux
	routes  []Route
	handler http.Handler
	streams chan struct{} // one token per open revocation stream
	// streamsOf counts the open revocation streams of each service token
	// (by its index in Options.ServiceTokens).
	streamsOf []atomic.Int64
	ending    chan struct{} // closed by EndStreams
	feed      feedPages     // the streams' reads on a change, shared
	endOnce   sync.Once
	// pageForms refuses page forms another site sent (readForm).
	pageForms *http.CrossOriginProtection
	shed      *shedlog.Log     // requests shed at capacity (ErrBusy), told sampled
	stale     *shedlog.Log     // access tokens refused while revocations are stale (ErrRevocationsStale), likewise
	down      *shedlog.Outages // other 503s (the database unreachable, a disk full): an outage, a flood of them one line a second

	// basePath is the public URL's path without its final "/" ("" for
	// none): the pages' addresses start with it (page.BasePath, seeOther).
	basePath string
}

// EndStreams ends every open revocation stream (their clients resume
// elsewhere or later), for a graceful shutdown: http.Server.Shutdown waits
// for handlers, and a stream's handler would otherwise run for an hour.
// Register it with http.Server.RegisterOnShutdown.
func (s *Server) EndStreams() { s.endOnce.Do(func() { close(s.ending) }) }

// FlushLog tells at once the shed and stale-refused requests whose counts
// the log holds back (at most a second's): for a shutdown, once
// http.Server.Shutdown returned.
func (s *Server) FlushLog() {
	s.shed.Flush()
	s.stale.Flush()
	s.down.Flush()
}

// Route is one registered method and path pattern, and the query
// parameters an API route takes.
type Route struct {
	Method, Path string
	Query        []string
}

// New returns the public API.
func New(opts Options) *Server {
	s := newServer(opts)
	// The public listener alone is behind the proxy that strips the
	// path: the admin listener's probes and clients name its own paths.
	if u, err := url.Parse(opts.PublicURL); err == nil && u.Scheme != "" && u.Host != "" {
		s.basePath = strings.TrimRight(u.EscapedPath(), "/")
	}

	s.handle("GET /healthz", s.healthz)
	s.handle("GET /readyz", s.readyz)
	s.handle("GET /openapi.json", s.openAPI)
	s.handle("GET /.well-known/jwks.json", s.jwks)

	s.handle("POST /v1/auth/register", s.register)
	s.handle("POST /v1/auth/verify-email", s.verifyEmail)
	s.handle("POST /v1/auth/verify-email/resend", s.resendVerification)
	s.handle("POST /v1/auth/verify-email/challenge", s.beginEmailChangeStepUp)
	s.handle("POST /v1/auth/login", s.login)
	s.handle("POST /v1/auth/refresh", s.refresh)
	s.handleAuthed("POST /v1/auth/logout", s.bearerToken(fieldlessAuthed(s.logout))) // a client ends its own session too
	s.account("POST /v1/auth/logout-all", fieldlessAuthed(s.logoutAll))
	s.handle("POST /v1/auth/password/forgot", s.forgotPassword)
	s.handle("POST /v1/auth/password/reset", s.resetPassword)
	s.account("POST /v1/auth/password/change", s.changePassword)
	s.handleAuthed("POST /v1/auth/introspect", s.introspect)
	s.handleAuthed("GET /v1/auth/revocations", s.revocations, "since", "format")
	s.handle("POST /v1/auth/mfa/verify", s.verifyMFA)
	s.handle("POST /v1/auth/passkey/begin", s.beginPasskeyLogin)
	s.handle("POST /v1/auth/passkey/finish", s.finishPasskeyLogin)

	s.account("GET /v1/users/me", s.me)
	s.account("GET /v1/users/me/sessions", s.sessions)
	s.account("DELETE /v1/users/me/sessions/{id}", fieldlessAuthed(s.deleteSession))
	s.account("POST /v1/users/me/email", s.changeEmail)
	s.account("DELETE /v1/users/me/email", fieldlessAuthed(s.cancelEmailChange))
	s.account("PUT /v1/users/me/consent", s.updateConsent)
	s.account("GET /v1/users/me/consents", s.consents)
	s.account("DELETE /v1/users/me/consents/{client_id}", fieldlessAuthed(s.revokeConsent))
	s.account("GET /v1/users/me/security-log", s.mySecurityLog, "limit", "cursor")
	s.account("GET /v1/users/me/export", s.export)
	s.account("DELETE /v1/users/me", s.deleteMe)
	s.account("GET /v1/users/me/mfa", s.mfa)
	s.account("POST /v1/users/me/mfa/totp", s.enrollTOTP)
	s.account("POST /v1/users/me/mfa/totp/confirm", s.confirmTOTP)
	s.account("DELETE /v1/users/me/mfa/totp", s.disableTOTP)
	s.account("POST /v1/users/me/mfa/recovery-codes", s.replaceRecoveryCodes)
	s.account("POST /v1/users/me/mfa/challenge", s.beginStepUp)
	s.account("GET /v1/users/me/passkeys", s.passkeys)
	s.account("POST /v1/users/me/passkeys/begin", s.beginPasskeyRegistration)
	s.account("POST /v1/users/me/passkeys/finish", s.finishPasskeyRegistration)
	s.account("PATCH /v1/users/me/passkeys/{id}", s.renamePasskey)
	s.account("DELETE /v1/users/me/passkeys/{id}", s.deletePasskey)

	s.handle("GET /verify-email", s.verifyPage)
	s.handle("POST /verify-email", s.verifySubmit)
	s.handle("POST /verify-email/new-link", s.newLink("/verify-email/new-link", func(r *http.Request, email string) error {
		return s.svc.ResendVerification(r.Context(), client(r), email)
	}))
	s.handle("GET /passkeys", s.passkeyPage("Passkeys", "passkeys-content"))
	s.handle("GET /sign-in/passkey", s.passkeyPage("Sign in", "passkey-sign-in-content"))
	s.handle("GET /reset-password", s.resetPage)
	s.handle("POST /reset-password", s.resetSubmit)
	s.handle("POST /reset-password/new-link", s.newLink("/reset-password/new-link", func(r *http.Request, email string) error {
		return s.svc.ForgotPassword(r.Context(), client(r), email)
	}))
	// A new-link form's address opened (Enter in the address bar after its
	// answer) goes to the page that asks for a link, not to a 405.
	s.handle("GET /verify-email/new-link", s.seeOther("/verify-email"))
	s.handle("GET /reset-password/new-link", s.seeOther("/reset-password"))

	for _, m := range opts.Mounts {
		for _, pattern := range m.Patterns {
			s.mux.Handle(pattern, m.Handler)
		}
	}

	s.handler = s.middleware(http.HandlerFunc(s.route))
	return s
}

func newServer(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxRevocationStreams <= 0 {
		opts.MaxRevocationStreams = DefaultRevocationStreams
	}
	if opts.RevocationHeartbeat <= 0 {
		opts.RevocationHeartbeat = DefaultRevocationHeartbeat
	}
	if opts.RevocationStreamMaxAge <= 0 {
		opts.RevocationStreamMaxAge = DefaultRevocationStreamMaxAge
	}
	if opts.RevocationReadTimeout <= 0 {
		opts.RevocationReadTimeout = DefaultRevocationReadTimeout
	}
	s := &Server{opts: opts, svc: opts.Service, logger: opts.Logger, mux: http.NewServeMux(),
		streams: make(chan struct{}, opts.MaxRevocationStreams), streamsOf: make([]atomic.Int64, len(opts.ServiceTokens)),
		ending:    make(chan struct{}),
		pageForms: http.NewCrossOriginProtection(),
		shed: shedlog.New(opts.Logger,
			"requests shed: at capacity (the password hashing queue or the database's lane is full; 503 with Retry-After)"),
		stale: shedlog.New(opts.Logger, "access tokens refused: this instance has not read the revocations "+
			"for longer than it may (the database is unreachable or slow; 503 with Retry-After)"),
		down: shedlog.NewOutages(opts.Logger, "")}
	s.feed.read = s.nextRevocationRead
	if u, err := url.Parse(opts.PublicURL); err == nil && u.Scheme != "" && u.Host != "" {
		// Where a proxy rewrote Host, a browser without Sec-Fetch-Site
		// still names this origin.
		if err := s.pageForms.AddTrustedOrigin(u.Scheme + "://" + u.Host); err != nil {
			opts.Logger.Warn("AUTHD_PUBLIC_URL's origin is not trusted by the pages' forms", "err", err)
		}
	}
	return s
}

// handlerFunc is a handler that returns its error for writeError.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// handle routes pattern to h, which authenticates nothing. An API route
// (/v1/) takes the query parameters named and no other (checkQuery).
func (s *Server) handle(pattern string, h handlerFunc, params ...string) {
	s.addRoute(pattern, h, false, params)
}

// handleAuthed is handle for a route whose h authenticates the request
// before anything else (the admin token, authenticated, bearerToken, a service
// token) and then checks the query (checkedQuery): a request without
// credentials is told that (401, and the admin API's warning), whatever its
// query says.
func (s *Server) handleAuthed(pattern string, h handlerFunc, params ...string) {
	s.addRoute(pattern, h, true, params)
}

// account routes pattern to h for a signed-in user of the account API
// (authenticated: no OpenID client's token), taking params.
func (s *Server) account(pattern string, h authedFunc, params ...string) {
	s.handleAuthed(pattern, s.authenticated(h), params...)
}

func (s *Server) addRoute(pattern string, h handlerFunc, authed bool, params []string) {
	method, path, _ := strings.Cut(pattern, " ")
	s.routes = append(s.routes, Route{Method: method, Path: path, Query: params})
	api := strings.HasPrefix(path, "/v1/")
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		var err error
		var pending *queryCheck
		if api {
			err = declaredTooLarge(w, r) // before the credentials: what a refusal then leaves unread is a lot
		}
		if err == nil && api && r.URL.RawQuery != "" { // most API requests have none: no map to build
			if authed {
				pending = &queryCheck{raw: r.URL.RawQuery, params: params}
				r = r.WithContext(context.WithValue(r.Context(), queryCheckKey{}, pending))
			} else {
				err = checkQuery(r.URL.RawQuery, params)
			}
		}
		if err == nil {
			err = h(w, r)
		}
		if err == nil && pending != nil && !pending.ran {
			// A guard that forgot checkedQuery: the query was taken unread.
			s.logger.ErrorContext(r.Context(), "a route's guard did not check its query", "route", pattern)
		}
		if err != nil {
			s.writeError(w, r, err)
		}
	})
}

type queryCheckKey struct{}

// queryCheck is the query check handleAuthed leaves to the route's
// authentication, and whether it ran.
type queryCheck struct {
	raw    string
	params []string
	ran    bool
}

// checkedQuery runs the query check handleAuthed left to the route's
// authentication, once that passed.
func checkedQuery(r *http.Request) error {
	q, ok := r.Context().Value(queryCheckKey{}).(*queryCheck)
	if !ok {
		return nil
	}
	q.ran = true
	return checkQuery(q.raw, q.params)
}

// Routes lists every registered route, for the OpenAPI agreement test.
func (s *Server) Routes() []Route { return s.routes }

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// route dispatches to the mux, answering unknown paths and methods with
// problem+json instead of the mux's plain text.
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	if p := r.URL.EscapedPath(); p != cleanPath(p) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead || strings.HasPrefix(cleanPath(r.URL.Path), "/v1/") {
			// The mux would redirect to the clean path (307, text/html),
			// which API clients do not read and which some follow with a
			// POST's credentials to a path they did not name. A browser's or
			// a discovery client's GET of a page or document is still
			// redirected (an issuer joined with a slash too many).
			s.writeError(w, r, authd.Errorf(authd.ENotFound, "No such resource: the path has empty, . or .. segments."))
			return
		}
		if s.basePath != "" {
			// The mux's redirect, under the public URL's path (the mux's
			// own would leave the proxy's prefix out).
			target := s.basePath + cleanPath(p)
			if r.URL.RawQuery != "" {
				target += "?" + r.URL.RawQuery
			}
			http.Redirect(w, r, target, http.StatusTemporaryRedirect) // as the mux's own
			return
		}
	}
	if _, pattern := s.mux.Handler(r); pattern != "" {
		r.Pattern = pattern // for the log line and metrics
		s.mux.ServeHTTP(w, r)
		return
	}
	// Which methods would this path take? Then it is 405, not 404.
	var allowed []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := s.mux.Handler(probe); pattern != "" {
			allowed = append(allowed, m)
		}
	}
	if len(allowed) > 0 {
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		s.writeError(w, r, &authd.Error{Code: authd.EMethodNotAllowed, Message: "This method is not allowed here."})
		return
	}
	s.writeError(w, r, authd.Errorf(authd.ENotFound, "No such resource."))
}

// cleanPath is the path http.ServeMux would redirect p to: "." and ".."
// resolved, slashes not doubled, a trailing slash kept.
func cleanPath(p string) string {
	if p == "" || p[0] != '/' {
		p = "/" + p
	}
	clean := path.Clean(p)
	if strings.HasSuffix(p, "/") && clean != "/" {
		clean += "/"
	}
	return clean
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// ErrStopping is what Options.Ready answers once the instance has begun to
// stop: /readyz is 503 then, and says so, without logging an outage.
var ErrStopping = errors.New("shutting down")

// readyz answers 200 when the database answers within two seconds and its
// schema is at head, else 503 with the reason.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.opts.Ready(ctx); err != nil {
		if !errors.Is(err, ErrStopping) {
			s.logger.WarnContext(r.Context(), "not ready", "err", err)
		}
		if authd.ErrorCode(err) != authd.EUnavailable {
			err = &authd.Error{Code: authd.EUnavailable, Message: "the database is unavailable", Err: err}
		}
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	return nil
}

//go:embed openapi.json
var openAPIDocument []byte

// OpenAPI returns the OpenAPI 3.1 document of the API.
func OpenAPI() []byte { return openAPIDocument }

func (s *Server) openAPI(w http.ResponseWriter, _ *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	w.Write(openAPIDocument)
	return nil
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request) error {
	if s.opts.Metrics == nil {
		return authd.Errorf(authd.ENotFound, "Metrics are not enabled.")
	}
	s.opts.Metrics.ServeHTTP(w, r)
	return nil
}

func (s *Server) jwks(w http.ResponseWriter, _ *http.Request) error {
	body, err := s.opts.JWKS()
	if err != nil {
		return err
	}
	// Resource servers cache the keys; a new key is published this long
	// before it signs, so a cached JWKS never misses a signing kid.
	w.Header().Set("Cache-Control", fmt.Sprintf("public, max-age=%d", int(s.opts.JWKSMaxAge/time.Second)))
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Write(body)
	return nil
}

// statuses is the one table from domain codes to HTTP statuses.
var statuses = map[authd.Code]int{
	authd.EInvalid:            http.StatusBadRequest,
	authd.EWeakPassword:       http.StatusBadRequest,
	authd.EInvalidCredentials: http.StatusUnauthorized,
	authd.EInvalidToken:       http.StatusUnauthorized,
	authd.EEmailNotVerified:   http.StatusForbidden,
	authd.EForbidden:          http.StatusForbidden,
	authd.EMFARequired:        http.StatusForbidden,
	authd.ENotFound:           http.StatusNotFound,
	authd.EMethodNotAllowed:   http.StatusMethodNotAllowed,
	authd.EConflict:           http.StatusConflict,
	authd.ETooLarge:           http.StatusRequestEntityTooLarge,
	authd.EUnsupportedMedia:   http.StatusUnsupportedMediaType,
	authd.EAccountLocked:      http.StatusLocked,
	authd.ERateLimited:        http.StatusTooManyRequests,
	authd.EUnavailable:        http.StatusServiceUnavailable,
	authd.EInternal:           http.StatusInternalServerError,
}

// problem is an RFC 9457 problem document with the stable code.
type problem struct {
	Type   string             `json:"type"`
	Title  string             `json:"title"`
	Status int                `json:"status"`
	Detail string             `json:"detail"`
	Code   authd.Code         `json:"code"`
	Errors []authd.FieldError `json:"errors,omitzero"` // always with validation_failed (SPEC §5), [] when no field is at fault
	// With mfa_required: what finishes the login.
	MFAToken string   `json:"mfa_token,omitempty"`
	Methods  []string `json:"methods,omitempty"`
}

// writeError answers err as problem+json. Only the client-safe message is
// sent; internal causes are logged, never shown.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := authd.ErrorCode(err)
	gone := errors.Is(err, context.Canceled) && r.Context().Err() != nil
	if gone {
		code = authd.EUnavailable // the client went away; nobody reads this answer
	}
	status, ok := statuses[code]
	if !ok {
		status = http.StatusInternalServerError
	}
	var e *authd.Error
	errors.As(err, &e)
	var bad badRequest
	if status == http.StatusUnauthorized && (errors.As(err, &bad) || code == authd.EInvalidToken && e != nil && len(e.Fields) > 0) {
		// A token of the body (a link's, a ceremony's, which names its
		// field) is a wrong request, not a missing authentication: a
		// bearer client must not drop its good access token for it.
		status = http.StatusBadRequest
	}
	switch {
	case errors.Is(err, authd.ErrBusy):
		s.shed.Note(r.Context()) // counted, the count logged now and then: not a line per request
	case errors.Is(err, authd.ErrRevocationsStale):
		s.stale.Note(r.Context()) // likewise: an outage, not a lack of capacity
	case errors.Is(err, ErrStopping):
		// A readiness probe of an instance that is stopping: expected,
		// and no outage.
	case status == http.StatusServiceUnavailable && !gone:
		// During an outage every request fails alike: one line a second
		// with the count, the latest error and its hint for the operator,
		// not an error line each (under load they would fill the log, and
		// a disk full already).
		s.down.Note(r.Context(), err, authd.ErrorHint(err),
			"method", r.Method, "path", r.URL.Path, "request_id", RequestID(r.Context()))
	case status >= 500 && !gone:
		s.logger.ErrorContext(r.Context(), "request failed",
			"method", r.Method, "path", r.URL.Path, "request_id", RequestID(r.Context()), "err", err)
	}
	switch {
	case e != nil && e.RetryAfter > 0:
		w.Header().Set("Retry-After", strconv.Itoa(authd.RetryAfterSeconds(err)))
	case status == http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "1")
	}
	if status == http.StatusUnauthorized && code == authd.EInvalidToken {
		if errors.Is(err, errMissingToken) {
			// No bearer token (none, or another scheme): the challenge
			// alone (RFC 6750 §3.1).
			w.Header().Set("WWW-Authenticate", `Bearer realm="authd"`)
		} else {
			w.Header().Set("WWW-Authenticate", `Bearer realm="authd", error="invalid_token"`)
		}
	}
	p := problem{
		Type: "https://authd.dev/problems/" + string(code), Title: http.StatusText(status),
		Status: status, Detail: authd.ErrorMessage(err), Code: code,
	}
	if e != nil {
		p.Errors = e.Fields
	}
	if code == authd.EInvalid && p.Errors == nil {
		p.Errors = []authd.FieldError{}
	}
	if m, ok := errors.AsType[*authd.MFARequired](err); ok {
		p.MFAToken, p.Methods = m.Token, m.Methods
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(p)
}

// badRequest marks an error about a token in the body (verification and
// reset tokens): invalid_token then answers 400, not 401, because the
// request is not unauthenticated but wrong (SPEC §6.2).
type badRequest struct{ error }

func (b badRequest) Unwrap() error { return b.error }
