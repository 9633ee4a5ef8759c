// Package httpapi is authd's HTTP interface: routes, JSON and problem+json,
// middleware, and the one table that maps domain error codes to statuses.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/authd/authd"
)

// Server is the public listener's handler.
type Server struct {
	mux    *http.ServeMux
	logger *slog.Logger
	ready  func(context.Context) error
}

// New returns the public API. ready reports whether the database is
// reachable and at head (for /readyz).
func New(logger *slog.Logger, ready func(context.Context) error) *Server {
	s := &Server{mux: http.NewServeMux(), logger: logger, ready: ready}
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	s.mux.ServeHTTP(w, r)
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz answers 200 when the database answers within two seconds and its
// schema is at head, else 503 with the reason.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.ready(ctx); err != nil {
		s.logger.Warn("not ready", "err", err)
		if authd.ErrorCode(err) == authd.EInternal {
			err = &authd.Error{Code: authd.EUnavailable, Message: "the database is unavailable", Err: err}
		}
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// statuses is the one table from domain codes to HTTP statuses.
var statuses = map[authd.Code]int{
	authd.EInvalid:            http.StatusBadRequest,
	authd.EWeakPassword:       http.StatusBadRequest,
	authd.EInvalidCredentials: http.StatusUnauthorized,
	authd.EInvalidToken:       http.StatusUnauthorized,
	authd.EEmailNotVerified:   http.StatusForbidden,
	authd.EForbidden:          http.StatusForbidden,
	authd.ENotFound:           http.StatusNotFound,
	authd.EConflict:           http.StatusConflict,
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
	Errors []authd.FieldError `json:"errors,omitempty"`
}

// writeError answers err as problem+json. Only the client-safe message is
// sent; internal causes are logged, never shown.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := authd.ErrorCode(err)
	status, ok := statuses[code]
	if !ok {
		status = http.StatusInternalServerError
	}
	if status >= 500 {
		s.logger.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	var e *authd.Error
	if errors.As(err, &e) && e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((e.RetryAfter+time.Second-1)/time.Second)))
	} else if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	p := problem{
		Type: "https://authd.dev/problems/" + string(code), Title: http.StatusText(status),
		Status: status, Detail: authd.ErrorMessage(err), Code: code,
	}
	if e != nil {
		p.Errors = e.Fields
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(p)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
