package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
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
// its claims in the context (ClaimsFrom). Others get a problem+json answer
// (WriteError): 401 with WWW-Authenticate (error="insufficient_user_authentication" when
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
	return v.MiddlewareWith(MiddlewareOptions{})(next)
}

// MiddlewareOptions shape MiddlewareWith's handler: what one route asks
// beyond what its Verifier asks of every token.
type MiddlewareOptions struct {
	// Optional lets a request without an Authorization header through
	// without claims (an endpoint that also serves anonymous callers); a
	// token sent must still be valid.
	Optional bool
	// RequireAMR asks of the route's tokens a login with each method
	// (RFC 8176 amr: "mfa" a second factor, "hwk" a hardware-bound
	// passkey…), as Options.RequireAMR asks it of every token; refused
	// with ErrMFARequired (401 insufficient_user_authentication).
	RequireAMR []string
	// Scopes asks of an OpenID Connect client's token each scope; refused
	// with ErrInsufficientScope (403 insufficient_scope). authd's own
	// logins carry no scope and no client_id, and pass: they act for their
	// user; a token with scopes is held to them, client_id or not.
	Scopes []string
	// ErrorHandler answers a refused request (default WriteError); err is
	// ErrNoToken, one of Verify's errors, or the route's own refusal
	// (ErrInsufficientScope, or ErrMFARequired for RequireAMR). The
	// refusal has been logged at debug level by then.
	ErrorHandler func(w http.ResponseWriter, r *http.Request, err error)
}

// MiddlewareWith is Middleware shaped by o. An empty entry in
// o.RequireAMR or o.Scopes (strings.Split of an unset variable) panics: it
// would refuse every token, or none, with no word of why.
func (v *Verifier) MiddlewareWith(o MiddlewareOptions) func(http.Handler) http.Handler {
	if slices.Contains(o.RequireAMR, "") || slices.Contains(o.Scopes, "") {
		panic(fmt.Sprintf("verify: MiddlewareOptions: an empty entry in RequireAMR %q or Scopes %q", o.RequireAMR, o.Scopes))
	}
	refuse := o.ErrorHandler
	if refuse == nil {
		refuse = WriteError
	}
	o.RequireAMR, o.Scopes = slices.Clone(o.RequireAMR), slices.Clone(o.Scopes) // the caller's to change after
	return func(next http.Handler) http.Handler {
		var notNew sync.Once
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !v.made() {
				notNew.Do(func() {
					slog.Default().ErrorContext(r.Context(), "verify: Middleware's Verifier was not made by verify.New (nil or zero): every token is answered 503")
				})
			}
			token, err := BearerToken(r)
			if err != nil {
				if o.Optional && len(r.Header.Values("Authorization")) == 0 {
					next.ServeHTTP(w, r)
					return
				}
				refuse(w, r, err)
				return
			}
			c, err := v.Verify(r.Context(), token)
			if err == nil {
				err = o.check(c)
			}
			if err != nil {
				if v.made() {
					// Why, for whoever must find out why a token is
					// refused (an Issuer or Audience that does not match
					// authd's is also a warning: Verifier.mismatch): the
					// client is told only invalid_token. No token in the
					// line.
					v.logger.DebugContext(r.Context(), "verify: token refused", "err", err, "path", r.URL.Path)
				}
				refuse(w, r, err)
				return
			}
			next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), c)))
		})
	}
}

// check refuses claims o's route does not take.
func (o *MiddlewareOptions) check(c *Claims) error {
	if err := requireAMR(c, o.RequireAMR); err != nil {
		return err
	}
	if c.ClientID == "" && len(c.Scopes) == 0 { // authd's own login: it acts for its user
		return nil
	}
	for _, s := range o.Scopes {
		if !c.HasScope(s) {
			return missingScope{o.Scopes}
		}
	}
	return nil
}

// missingScope is a client's token without a scope the route asks for;
// it is ErrInsufficientScope, and names the scopes.
type missingScope struct{ scopes []string }

func (e missingScope) Error() string {
	return fmt.Sprintf("verify: the token lacks a scope of %q", e.scopes)
}

func (e missingScope) Is(target error) bool { return target == ErrInsufficientScope }

// ErrNoToken is BearerToken's error for a request without one bearer
// token: no Authorization header, two, another scheme, or an empty token.
// It is of no class: a request that sent nothing gets a challenge without
// an error code (RFC 6750 3.1).
var ErrNoToken = errors.New("verify: a bearer access token is required")

// BearerToken returns the token of r's one Authorization header, of the
// scheme Bearer (in any case); ErrNoToken otherwise. Of two headers, which
// counts would be the reader's choice (a proxy may have checked the
// other): neither does. A token in the query or a form body (RFC 6750 2.2,
// 2.3) is not read: URLs end up in logs.
func BearerToken(r *http.Request) (string, error) {
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	if len(r.Header.Values("Authorization")) != 1 || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", ErrNoToken
	}
	return token, nil
}

// WriteError answers a request refused with err, as Middleware does:
// problem+json, 401 with a Bearer challenge (RFC 6750, and RFC 9470's
// insufficient_user_authentication for ErrMFARequired), 403
// insufficient_scope for ErrInsufficientScope, or 503 with Retry-After for
// ErrUnavailable (and ErrClosed).
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	a := answer(err)
	if a.status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeProblem(w, a.status, a.code, a.challenge, a.detail)
}

// Challenge is WriteError's status for err, a refusal (any error but
// ErrNoToken and those of ErrUnavailable, ErrMFARequired and
// ErrInsufficientScope is a 401 invalid_token), and its WWW-Authenticate
// challenge: "" for a 503, which should carry "Retry-After: 1" instead.
// It is for an ErrorHandler that writes a body of its own: a client still
// learns from the challenge whether to refresh its token, step up its
// login (RFC 9470) or ask for scopes.
func Challenge(err error) (status int, challenge string) {
	a := answer(err)
	return a.status, a.challenge
}

// reply is how a refusal is answered.
type reply struct {
	status                  int
	code, challenge, detail string
}

func answer(err error) reply {
	switch {
	case errors.Is(err, ErrNoToken):
		return reply{http.StatusUnauthorized, "invalid_token", `Bearer`, "A bearer access token is required."}
	case errors.Is(err, ErrUnavailable): // ErrClosed too
		return reply{http.StatusServiceUnavailable, "unavailable", "", "Tokens cannot be checked right now."}
	case errors.Is(err, ErrMFARequired):
		description, detail := insufficient(err)
		return reply{http.StatusUnauthorized, "mfa_required",
			`Bearer error="insufficient_user_authentication", error_description="` + description + `"`, detail}
	case errors.Is(err, ErrInsufficientScope):
		challenge := `Bearer error="insufficient_scope"`
		if m, ok := errors.AsType[missingScope](err); ok && quotable(strings.Join(m.scopes, " ")) {
			challenge += `, scope="` + strings.Join(m.scopes, " ") + `"` // RFC 6750 3
		}
		return reply{http.StatusForbidden, "insufficient_scope", challenge, "The access token lacks a scope this resource needs."}
	}
	return reply{http.StatusUnauthorized, "invalid_token", `Bearer error="invalid_token"`,
		"The access token is invalid, expired or revoked."}
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
	if m.method == "" || !quotable(m.method) {
		return "the login lacks a required authentication method", detail
	}
	return "a login with " + m.method + " is required", detail
}

// quotable reports whether s may stand in a quoted WWW-Authenticate
// parameter (RFC 6750 3: printable ASCII but for '"' and '\').
func quotable(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r > 0x7e || r == '"' || r == '\\' }) < 0
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
