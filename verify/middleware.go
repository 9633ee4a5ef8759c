package verify

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
)

type ctxKey struct{}

// ClaimsFrom returns the claims Middleware verified for the request.
func ClaimsFrom(ctx context.Context) (*Claims, bool) {
	c, ok := ctx.Value(ctxKey{}).(*Claims)
	return c, ok
}

// Middleware lets through requests with a valid bearer access token, with
// its claims in the context (ClaimsFrom). Others get a problem+json answer:
// 401 with WWW-Authenticate (error="insufficient_user_authentication" when
// a second factor is required, RFC 9470), or 503 with Retry-After when the
// revocation state cannot be known (ErrUnavailable).
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		scheme, token, _ := strings.Cut(auth, " ")
		if !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
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
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, c)))
		case errors.Is(err, ErrUnavailable), errors.Is(err, ErrClosed):
			w.Header().Set("Retry-After", "1")
			writeProblem(w, http.StatusServiceUnavailable, "unavailable", "", "Tokens cannot be checked right now.")
		case errors.Is(err, ErrMFARequired):
			writeProblem(w, http.StatusUnauthorized, "mfa_required",
				`Bearer error="insufficient_user_authentication", error_description="a second factor is required", acr_values="mfa"`,
				"This resource needs a login with a second factor.")
		default:
			writeProblem(w, http.StatusUnauthorized, "invalid_token", `Bearer error="invalid_token"`,
				"The access token is invalid, expired or revoked.")
		}
	})
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
