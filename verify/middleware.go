package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
)

type ctxKey struct{}

// ClaimsFrom returns the claims Middleware verified for the request.
func ClaimsFrom(ctx context.Context) (*Claims, bool) {
	c, ok := ctx.Value(ctxKey{}).(*Claims)
	return c, ok
}

// NewContext returns a copy of ctx carrying c, as Middleware passes a
// request's verified claims on (ClaimsFrom): for a handler's tests, or a
// service that verifies tokens itself.
func NewContext(ctx context.Context, c *Claims) context.Context {
	return context.WithValue(ctx, ctxKey{}, c)
}

// Middleware lets through requests with a valid bearer access token, with
// its claims in the context (ClaimsFrom). Others get a problem+json answer:
// 401 with WWW-Authenticate (error="insufficient_user_authentication" when
// the login lacks a method Options.RequireMFA or RequireAMR asks for, RFC
// 9470, with an error_description naming it), or 503 with Retry-After when
// the revocation state cannot be known (ErrUnavailable). The challenge
// carries no acr_values: authd issues no acr claim and ignores acr_values,
// so the client learns what to do from the description alone.
//
// On a Verifier New did not make (nil, or the zero value) every token
// gets a 503, as from a closed one, and the handler says so once, in
// slog.Default's log (such a Verifier has no Options.Logger): a wiring
// mistake must not pass for an outage.
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	var notNew sync.Once
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !v.made() {
			notNew.Do(func() {
				slog.Default().ErrorContext(r.Context(), "verify: Middleware's Verifier was not made by verify.New (nil or zero): every token is answered 503")
			})
		}
		// The request's only Authorization header: of two, which counts
		// would be the reader's choice (a proxy may have checked the other).
		auth := r.Header.Get("Authorization")
		scheme, token, _ := strings.Cut(auth, " ")
		if len(r.Header.Values("Authorization")) != 1 || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
			writeProblem(w, http.StatusUnauthorized, "invalid_token", `Bearer`, "A bearer access token is required.")
			return
		}
		c, err := v.Verify(r.Context(), strings.TrimSpace(token))
		if err != nil && v.made() {
			// Why, for whoever must find out why every token is refused
			// (an Issuer or Audience that does not match authd's): the
			// client is told only invalid_token. No token in the line.
			v.logger.DebugContext(r.Context(), "verify: token refused", "err", err, "path", r.URL.Path)
		}
		switch {
		case err == nil:
			next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), c)))
		case errors.Is(err, ErrUnavailable): // ErrClosed too
			w.Header().Set("Retry-After", "1")
			writeProblem(w, http.StatusServiceUnavailable, "unavailable", "", "Tokens cannot be checked right now.")
		case errors.Is(err, ErrMFARequired):
			description, detail := insufficient(err)
			writeProblem(w, http.StatusUnauthorized, "mfa_required",
				`Bearer error="insufficient_user_authentication", error_description="`+description+`"`, detail)
		default:
			writeProblem(w, http.StatusUnauthorized, "invalid_token", `Bearer error="invalid_token"`,
				"The access token is invalid, expired or revoked.")
		}
	})
}

// insufficient words the refusal of a login without a method checkAMR
// requires: a second factor (mfa), or the RequireAMR method it names. A
// method that cannot stand in a quoted error_description (RFC 6750 3:
// printable ASCII but for '"' and '\') is named in the detail only.
func insufficient(err error) (description, detail string) {
	var m missingAMR
	if !errors.As(err, &m) {
		return "a second factor is required", "This resource needs a login with a second factor."
	}
	detail = fmt.Sprintf("This resource needs a login with the authentication method %q (RFC 8176 amr).", m.method)
	if m.method == "" || strings.IndexFunc(m.method, func(r rune) bool { return r < 0x20 || r > 0x7e || r == '"' || r == '\\' }) >= 0 {
		return "the login lacks a required authentication method", detail
	}
	return "a login with " + m.method + " is required", detail
}

func writeProblem(w http.ResponseWriter, status int, code, authenticate, detail string) {
	if authenticate != "" {
		w.Header().Set("WWW-Authenticate", authenticate)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{
		"type": "https://authd.dev/problems/" + code, "title": http.StatusText(status),
		"status": status, "detail": detail, "code": code,
	})
}
