package httpapi_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/httpapi"
	"github.com/authd/authd/token"
	"golang.org/x/crypto/bcrypt"
)

func TestSecurityHeadersAndProblems(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	for _, r := range []response{
		e.do("GET", "/healthz", nil),
		e.do("GET", "/nowhere", nil),
		e.do("POST", "/v1/auth/login", `{}`),
	} {
		for h, v := range map[string]string{
			"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
			"X-Frame-Options": "DENY", "Cross-Origin-Resource-Policy": "same-origin",
		} {
			if got := r.header.Get(h); got != v {
				t.Errorf("%s = %q, want %q", h, got, v)
			}
		}
		if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") ||
			!strings.Contains(csp, "frame-ancestors 'none'") || r.header.Get("X-Request-Id") == "" {
			t.Errorf("CSP %q, request id %q", r.header.Get("Content-Security-Policy"), r.header.Get("X-Request-Id"))
		}
	}
	if hsts := e.do("GET", "/healthz", nil).header.Get("Strict-Transport-Security"); hsts != "" {
		t.Errorf("HSTS %q without HTTPS configured", hsts)
	}
	// JSON out is said to be JSON (SPEC §5), not left to sniffing.
	if ct := e.do("GET", "/healthz", nil).header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("healthz: Content-Type %q, want application/json", ct)
	}
	want(t, "unknown path", e.do("GET", "/nowhere", nil), 404, "not_found")
	r := e.do("GET", "/v1/auth/login", nil)
	want(t, "wrong method", r, 405, "method_not_allowed")
	if !strings.Contains(r.header.Get("Allow"), "POST") {
		t.Errorf("405 Allow = %q", r.header.Get("Allow"))
	}
	// A path only DELETE takes is a 405 too, not a 404.
	r = e.do("GET", "/v1/users/me/sessions/0197c0de-0000-7000-8000-000000000000", nil)
	want(t, "a path only DELETE takes", r, 405, "method_not_allowed")
	if r.header.Get("Allow") != "DELETE" {
		t.Errorf("405 of a DELETE-only path: Allow = %q, want DELETE", r.header.Get("Allow"))
	}
	p := e.do("GET", "/nowhere", nil)
	for _, field := range []string{"type", "title", "status", "detail", "code"} {
		if _, ok := p.body[field]; !ok {
			t.Errorf("problem lacks %q: %s", field, p.raw)
		}
	}
	jwks := e.do("GET", "/.well-known/jwks.json", nil)
	if jwks.status != 200 || !strings.Contains(jwks.header.Get("Cache-Control"), "max-age") || len(jwks.body["keys"].([]any)) != 1 {
		t.Errorf("jwks: %d %q %s", jwks.status, jwks.header.Get("Cache-Control"), jwks.raw)
	}
	// Cached as long as key rotation waits before a new key signs (no
	// longer, or a resource server would miss the new kid), and typed as a
	// key set (RFC 7517 §8.5).
	if cc, ct := jwks.header.Get("Cache-Control"), jwks.header.Get("Content-Type"); cc != fmt.Sprintf("public, max-age=%d", int(token.JWKSMaxAge/time.Second)) ||
		ct != "application/jwk-set+json" {
		t.Errorf("jwks: Cache-Control %q, Content-Type %q; want public, max-age=%d and application/jwk-set+json",
			cc, ct, int(token.JWKSMaxAge/time.Second))
	}
}

func TestCORS(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	r := e.do("OPTIONS", "/v1/auth/login", nil, "Origin", "https://app.example.org", "Access-Control-Request-Method", "POST")
	if r.status != 204 || r.header.Get("Access-Control-Allow-Origin") != "https://app.example.org" ||
		!strings.Contains(r.header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Errorf("preflight from an allowed origin: %d %v", r.status, r.header)
	}
	if r.header.Get("Access-Control-Allow-Methods") != "GET, POST, PUT, PATCH, DELETE" || r.header.Get("Access-Control-Max-Age") == "" {
		t.Errorf("preflight from an allowed origin: Allow-Methods %q, Max-Age %q", r.header.Get("Access-Control-Allow-Methods"),
			r.header.Get("Access-Control-Max-Age"))
	}
	// An allowed origin's script reads the headers a client acts on (when
	// to retry, what to report, why its token was refused); the answer
	// varies with Origin, so that no cache serves it to another.
	r = e.do("POST", "/v1/auth/login", `{}`, "Origin", "https://app.example.org")
	for _, h := range []string{"Retry-After", "X-Request-Id", "WWW-Authenticate"} {
		if !strings.Contains(r.header.Get("Access-Control-Expose-Headers"), h) {
			t.Errorf("CORS answer to an allowed origin: Access-Control-Expose-Headers %q lacks %s",
				r.header.Get("Access-Control-Expose-Headers"), h)
		}
	}
	// An OPTIONS that is no preflight (no Access-Control-Request-Method)
	// is not answered as one.
	if r := e.do("OPTIONS", "/v1/auth/login", nil, "Origin", "https://app.example.org"); r.status == 204 {
		t.Errorf("OPTIONS without Access-Control-Request-Method answered as a preflight: %d %v", r.status, r.header)
	}
	for origin, r := range map[string]response{
		"https://app.example.org": r,
		"https://evil.example":    e.do("GET", "/healthz", nil, "Origin", "https://evil.example"),
	} {
		if r.header.Get("Vary") != "Origin" {
			t.Errorf("answer to Origin %s: Vary %q, want Origin", origin, r.header.Get("Vary"))
		}
	}
	r = e.do("GET", "/healthz", nil, "Origin", "https://evil.example")
	if r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("CORS allowed an unknown origin: %v", r.header)
	}
}

func TestBearerHandling(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	e.registerVerified("b@example.org", goodPassword)
	access, _ := e.login("b@example.org", goodPassword)
	for name, h := range map[string][]string{
		"no header":     nil,
		"basic":         {"Authorization", "Basic " + access},
		"empty bearer":  {"Authorization", "Bearer "},
		"garbage":       {"Authorization", "Bearer abc.def.ghi"},
		"alg none":      {"Authorization", "Bearer eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0." + strings.Split(access, ".")[1] + "."},
		"service token": bearer(serviceToken),
		"two words":     {"Authorization", "Bearer " + access + " " + access},
	} {
		r := e.do("GET", "/v1/users/me", nil, h...)
		want(t, name, r, 401, "invalid_token")
		// Credentials refused are named as such; none sent, the challenge
		// carries no error code (RFC 6750 §3.1).
		challenge := `Bearer realm="authd", error="invalid_token"`
		if h == nil || name == "basic" || name == "empty bearer" || name == "two words" { // none, another scheme, an empty one, no token's shape
			challenge = `Bearer realm="authd"`
		}
		if got := r.header.Get("WWW-Authenticate"); got != challenge {
			t.Errorf("%s: WWW-Authenticate %q, want %q", name, got, challenge)
		}
	}
	// Tokens are never taken from the query string (no API route takes one
	// there; the credentials are checked first).
	want(t, "token in query", e.do("GET", "/v1/users/me?access_token="+access, nil), 401, "invalid_token")
	// Nor from one of two headers: which would count is the reader's choice.
	req, _ := http.NewRequest("GET", e.srv.URL+"/v1/users/me", nil)
	req.Header.Add("Authorization", "Bearer "+access)
	req.Header.Add("Authorization", "Bearer abc.def.ghi")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("two Authorization headers, the first valid: %d, want 401", resp.StatusCode)
	}
	want(t, "lower-case scheme", e.do("GET", "/v1/users/me", nil, "Authorization", "bearer "+access), 200, "")
}

// TestQueryParametersAreTheRoutes: an API route refuses a query parameter
// it does not take, naming it, rather than ignore it: a misspelt filter
// would widen a listing to every user's rows, and a parameter another
// service takes (Supabase's logout scope) would do less than its sender
// meant without a word.
func TestQueryParametersAreTheRoutes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	e.registerVerified("q@example.org", goodPassword)
	access, _ := e.login("q@example.org", goodPassword)
	for _, c := range []struct {
		name, path, param string
		admin             bool
	}{
		{"a misspelt filter", "/v1/admin/security-logs?userid=0197c0de-0000-7000-8000-000000000000", "userid", true},
		{"a filter of another listing", "/v1/admin/users?state=dead", "state", true},
		{"a listing without pages", "/v1/admin/clients?limit=1", "limit", true},
		{"a filter the user's log lacks", "/v1/users/me/security-log?event_type=login", "event_type", false},
	} {
		var r response
		if c.admin {
			r = e.admin("GET", c.path, nil)
		} else {
			r = e.do("GET", c.path, nil, bearer(access)...)
		}
		want(t, c.name, r, 400, "validation_failed")
		if r.field() != c.param {
			t.Errorf("%s: %s, want the error to name %s", c.name, r.raw, c.param)
		}
	}
	r := e.do("POST", "/v1/auth/logout?scope=global", nil, bearer(access)...)
	want(t, "logout with a scope", r, 400, "validation_failed")
	if !strings.Contains(r.raw, "takes none") {
		t.Errorf("logout with a scope: %s, want it told the route takes no parameters", r.raw)
	}
	want(t, "the session a refused logout kept", e.do("GET", "/v1/users/me", nil, bearer(access)...), 200, "")
	want(t, "the route's own parameters", e.admin("GET", "/v1/admin/users?email=q%40&status=active&limit=5", nil), 200, "")
	want(t, "the route's own parameters", e.do("GET", "/v1/users/me/security-log?limit=1", nil, bearer(access)...), 200, "")
	// A query that does not parse is refused whole, not read for what
	// parses: url.ParseQuery drops a pair with a semicolon or a bad escape.
	for _, c := range []struct {
		name, method, path string
		body               any
		auth               []string
	}{
		{"a semicolon", "GET", "/v1/users/me/security-log?limit=1;cursor=x", nil, bearer(access)},
		{"a bad escape", "POST", "/v1/auth/password/forgot?x=%ZZ", map[string]string{"email": "q@example.org"}, nil},
	} {
		r := e.do(c.method, c.path, c.body, c.auth...)
		want(t, c.name, r, 400, "validation_failed")
		if r.field() != "query" {
			t.Errorf("%s: %s, want the error to name the query", c.name, r.raw)
		}
	}

	// Every API route, on both listeners: a parameter of no route is
	// refused before anything is done, and after the credentials are
	// checked, so that a request without them is told that (401) whatever
	// its query.
	for _, server := range []struct {
		base   string
		routes []httpapi.Route
		creds  func(path string) []string
	}{
		{e.srv.URL, e.api.Routes(), func(path string) []string {
			if path == "/v1/auth/introspect" || path == "/v1/auth/revocations" {
				return bearer(serviceToken)
			}
			return bearer(access)
		}},
		{e.adminSrv.URL, e.adminAPI.Routes(), func(string) []string { return bearer(adminToken) }},
	} {
		for _, route := range server.routes {
			if !strings.HasPrefix(route.Path, "/v1/") {
				continue
			}
			path := strings.NewReplacer("{id}", "0197c0de-0000-7000-8000-000000000000", "{client_id}", "x").Replace(route.Path)
			authed := e.send(server.base, route.Method, path, nil).status == 401
			r := e.send(server.base, route.Method, path+"?bogus=1", nil)
			if authed && r.status != 401 {
				t.Errorf("%s %s?bogus=1 without credentials: %d, want 401 first", route.Method, path, r.status)
			}
			r = e.send(server.base, route.Method, path+"?bogus=1", nil, server.creds(route.Path)...)
			if r.status != 400 || r.field() != "bogus" {
				t.Errorf("%s %s?bogus=1: %d %s, want 400 naming bogus", route.Method, path, r.status, r.raw)
			}
		}
	}
}

// TestBodilessRoutesRefuseFields: a route that takes no fields refuses a
// body that has some, naming the field, rather than act and ignore it (an
// unlock's "reason" would be lost, a logout's "scope" would do less than
// meant); nothing and {} are accepted, with or without a Content-Type.
func TestBodilessRoutesRefuseFields(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	e.registerVerified("nb@example.org", goodPassword)
	u, err := e.store.UserByEmail(t.Context(), "nb@example.org")
	if err != nil {
		t.Fatal(err)
	}
	path := "/v1/admin/users/" + u.ID.String()
	want(t, "lock", e.admin("POST", path+"/lock", nil), 204, "")
	r := e.admin("POST", path+"/unlock", map[string]string{"reason": "ticket 4711"})
	want(t, "unlock with a reason", r, 400, "validation_failed")
	if r.field() != "reason" {
		t.Errorf("unlock with a reason: %s, want the error to name reason", r.raw)
	}
	if r := e.admin("GET", path, nil); r.str("account_status") != "locked" {
		t.Errorf("a refused unlock unlocked: %s", r.raw)
	}
	want(t, "unlock with {}", e.admin("POST", path+"/unlock", "{}", "Content-Type", "application/json"), 204, "")
	want(t, "revoke-sessions without a body", e.admin("POST", path+"/revoke-sessions", nil), 204, "")

	access, _ := e.login("nb@example.org", goodPassword)
	r = e.do("POST", "/v1/auth/logout", map[string]string{"scope": "global"}, bearer(access)...)
	want(t, "logout with a scope", r, 400, "validation_failed")
	if r.field() != "scope" {
		t.Errorf("logout with a scope: %s, want the error to name scope", r.raw)
	}
	want(t, "the session a refused logout kept", e.do("GET", "/v1/users/me", nil, bearer(access)...), 200, "")
	want(t, "logout, no body but a Content-Type", e.do("POST", "/v1/auth/logout", nil,
		append(bearer(access), "Content-Type", "application/json")...), 204, "")
	want(t, "a body from no one", e.do("POST", "/v1/auth/logout-all", map[string]string{"x": "y"}), 401, "invalid_token")
	// A step-up ceremony takes nothing: a field is refused, not ignored.
	withKey, _, _ := e.passkeyUser("nbk@example.org")
	r = e.do("POST", "/v1/users/me/mfa/challenge", map[string]string{"code": "123456"}, bearer(withKey)...)
	want(t, "a step-up challenge with a code", r, 400, "validation_failed")
	if r.field() != "code" {
		t.Errorf("a step-up challenge with a code: %s, want the error to name code", r.raw)
	}
	want(t, "a step-up challenge with {}", e.do("POST", "/v1/users/me/mfa/challenge", "{}", append(bearer(withKey), "Content-Type", "application/json")...), 200, "")

	// An empty body of no stated length (chunked) is nothing too.
	access, _ = e.login("nb@example.org", goodPassword)
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/auth/logout HTTP/1.1\r\nHost: authd\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n", access)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Errorf("logout with an empty chunked body: %d, want 204", resp.StatusCode)
	}

	// A field in a body of no stated length is refused all the same.
	access, _ = e.login("nb@example.org", goodPassword)
	req, _ := http.NewRequest("POST", e.srv.URL+"/v1/auth/logout", io.MultiReader(strings.NewReader(`{"scope":"global"}`)))
	req.Header.Set("Authorization", "Bearer "+access)
	req.Header.Set("Content-Type", "application/json")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if req.ContentLength != 0 || resp.StatusCode != 400 || !strings.Contains(string(body), `"field":"scope"`) {
		t.Errorf("logout with a scope in a chunked body (length %d): %d %s, want 400 naming scope", req.ContentLength, resp.StatusCode, body)
	}
	want(t, "the session a refused chunked logout kept", e.do("GET", "/v1/users/me", nil, bearer(access)...), 200, "")
}

// TestUncleanPathsAreProblems: an API path, or any path but a GET's, with
// an empty, . or .. segment is a problem+json 404, on both listeners, never
// the mux's text/html redirect to the clean path (which a client may follow
// with a POST's body); a GET of a page or document is still redirected.
func TestUncleanPathsAreProblems(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	for _, c := range []struct{ base, method, path string }{
		{e.srv.URL, "GET", "//v1/users/me"},
		{e.srv.URL, "GET", "//%761/users/me"}, // the API's path, escaped
		{e.srv.URL, "POST", "/v1/auth/./login"},
		{e.srv.URL, "POST", "/v1/users/../auth/login"},
		{e.srv.URL, "POST", "//verify-email"},
		{e.adminSrv.URL, "GET", "/v1//admin/users"},
	} {
		req, _ := http.NewRequest(c.method, c.base+c.path, strings.NewReader(`{"email":"a@example.org","password":"x"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := noRedirects.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 || resp.Header.Get("Content-Type") != "application/problem+json" || resp.Header.Get("Location") != "" {
			t.Errorf("%s %s: %d %q Location %q, want a problem+json 404", c.method, c.path, resp.StatusCode,
				resp.Header.Get("Content-Type"), resp.Header.Get("Location"))
		}
	}
	want(t, "a clean path with a trailing slash", e.do("GET", "/v1/users/me/", nil), 404, "not_found")
	for _, method := range []string{"GET", "HEAD"} {
		req, _ := http.NewRequest(method, e.srv.URL+"//.well-known/jwks.json", nil)
		resp, err := noRedirects.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 3 || resp.Header.Get("Location") != "/.well-known/jwks.json" {
			t.Errorf("%s //.well-known/jwks.json: %d Location %q, want the redirect to the clean path", method, resp.StatusCode,
				resp.Header.Get("Location"))
		}
	}
}

func TestIntrospection(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	e.registerVerified("i@example.org", goodPassword)
	access, refresh := e.login("i@example.org", goodPassword)
	want(t, "no service token", e.do("POST", "/v1/auth/introspect", map[string]string{"token": access}), 401, "invalid_token")
	want(t, "wrong service token", e.do("POST", "/v1/auth/introspect", map[string]string{"token": access}, bearer(serviceToken+"x")...), 401, "invalid_token")
	want(t, "access token as service token", e.do("POST", "/v1/auth/introspect", map[string]string{"token": access}, bearer(access)...), 401, "invalid_token")

	r := e.do("POST", "/v1/auth/introspect", map[string]string{"token": access}, bearer(serviceToken)...)
	u := e.user("i@example.org")
	if r.status != 200 || r.body["active"] != true || r.str("sub") != u.ID.String() || r.str("sid") == "" ||
		r.str("jti") == "" || r.body["exp"] == nil || r.body["iat"] == nil {
		t.Errorf("introspect a valid token: %d %s", r.status, r.raw)
	}
	for name, tok := range map[string]string{"refresh token": refresh, "garbage": "x.y.z"} {
		r := e.do("POST", "/v1/auth/introspect", map[string]string{"token": tok}, bearer(serviceToken)...)
		if r.status != 200 || r.raw != "{\"active\":false}\n" {
			t.Errorf("introspect %s: %d %s, want only {\"active\":false}", name, r.status, r.raw)
		}
	}
	r = e.do("POST", "/v1/auth/introspect", "token="+access+"&token=x",
		"Authorization", "Bearer "+serviceToken, "Content-Type", "application/x-www-form-urlencoded")
	want(t, "two tokens in a form", r, 400, "validation_failed")
	r = e.do("POST", "/v1/auth/introspect?token="+access, "",
		"Authorization", "Bearer "+serviceToken, "Content-Type", "application/x-www-form-urlencoded")
	want(t, "token only in the query", r, 400, "validation_failed")
	// RFC 7662's token is required: an empty one is a wrong request, not
	// an inactive token that a resource server would take for an answer.
	want(t, "empty token", e.do("POST", "/v1/auth/introspect", map[string]string{"token": ""}, bearer(serviceToken)...), 400, "validation_failed")
	r = e.do("POST", "/v1/auth/introspect", "token="+access,
		"Authorization", "Bearer "+serviceToken, "Content-Type", "application/x-www-form-urlencoded")
	_, client := r.body["client_id"] // only a client's token is some client's (RFC 7662)
	if r.status != 200 || r.body["active"] != true || r.str("sub") != u.ID.String() || client {
		t.Errorf("introspect a valid token in an RFC 7662 form: %d %s", r.status, r.raw)
	}
}

// TestNoSecretsInLogs runs every flow and then searches the captured log
// for each password and token that passed through.
func TestNoSecretsInLogs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	secrets := []string{goodPassword, "a changed passphrase", "wrong password here"}
	e.registerVerified("s@example.org", goodPassword)
	secrets = append(secrets, tokenOf(t, e.mail.last(t, authd.MailVerifyEmail, "s@example.org")))
	access, refresh := e.login("s@example.org", goodPassword)
	secrets = append(secrets, access, refresh)
	e.do("POST", "/v1/auth/login", map[string]string{"email": "s@example.org", "password": "wrong password here"})
	r := e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": refresh})
	secrets = append(secrets, r.str("access_token"), r.str("refresh_token"))
	e.do("POST", "/v1/auth/introspect", map[string]string{"token": access}, bearer(serviceToken)...)
	e.do("POST", "/v1/auth/password/change", map[string]string{"current_password": goodPassword, "new_password": "a changed passphrase"},
		bearer(r.str("access_token"))...)
	e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": "s@example.org"})
	secrets = append(secrets, tokenOf(t, e.mail.last(t, authd.MailPasswordReset, "s@example.org")), serviceToken)
	e.do("GET", "/v1/users/me?token="+access, nil, bearer(access)...)

	logs := e.logs.String()
	if !strings.Contains(logs, "msg=request") {
		t.Fatal("nothing was logged; the test would prove nothing")
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(logs, s) {
			t.Errorf("the log contains a secret (%.12s…)", s)
		}
	}
	u := e.user("s@example.org")
	if strings.Contains(logs, u.PasswordHash) {
		t.Error("the log contains a password hash")
	}
	// Nor does the security log.
	all, _ := e.store.SecurityLogs(context.Background(), authd.SecurityLogFilter{Limit: authd.MaxListLimit})
	for _, l := range all {
		text := fmt.Sprint(l.FailureReason, l.UserAgent, l.AdditionalContext)
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("security log %s holds a secret", l.EventType)
			}
		}
	}
}

func TestLogLinesCannotBeForged(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	// Go's HTTP stack refuses CR and LF in headers; a path can still carry them.
	e.do("GET", "/x%0d%0alevel=ERROR%20msg=forged", nil)
	for _, line := range strings.Split(e.logs.String(), "\n") {
		if strings.HasPrefix(line, "level=ERROR msg=forged") {
			t.Errorf("a request forged a log line: %q", line)
		}
	}
}

func TestBcryptUpgradeOnLogin(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.registerVerified("legacy@example.org", goodPassword)
		u := e.user("legacy@example.org")
		b, _ := bcrypt.GenerateFromPassword([]byte("imported passphrase"), bcrypt.MinCost)
		u.PasswordHash = string(b)
		if err := e.store.UpdateUser(context.Background(), u); err != nil {
			t.Fatal(err)
		}
		e.login("legacy@example.org", "imported passphrase")
		if h := e.user("legacy@example.org").PasswordHash; !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$") {
			t.Errorf("hash after a bcrypt login %q, want argon2id at the configured cost", h)
		}
		e.login("legacy@example.org", "imported passphrase")
	})
}

// A right password upgrades a legacy hash at the password step, before
// the second factor: the account gains the stronger hash even when its
// owner never finishes the sign-in, and the second step keeps it.
func TestBcryptUpgradeBeforeTheSecondFactor(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		_, secret, _ := e.mfaUser("legacy2fa@example.org")
		u := e.user("legacy2fa@example.org")
		b, _ := bcrypt.GenerateFromPassword([]byte(goodPassword), bcrypt.MinCost)
		u.PasswordHash = string(b)
		if err := e.store.UpdateUser(context.Background(), u); err != nil {
			t.Fatal(err)
		}
		mfa := e.mfaLogin("legacy2fa@example.org")
		upgraded := e.user("legacy2fa@example.org").PasswordHash
		if !strings.HasPrefix(upgraded, "$argon2id$v=19$m=64,t=1,p=1$") {
			t.Errorf("hash after the password step %q, want argon2id at the configured cost", upgraded)
		}
		want(t, "second step", e.verify(mfa, "totp", totpAt(t, secret, e.clock.Now())), 200, "")
		if h := e.user("legacy2fa@example.org").PasswordHash; h != upgraded {
			t.Errorf("hash after the second step %q, want the password step's %q", h, upgraded)
		}
	})
}

func TestReadyz(t *testing.T) {
	t.Parallel()
	store := openSQLite(t)
	e := newEnv(t, store)
	want(t, "ready", e.do("GET", "/readyz", nil), http.StatusOK, "")
	store.Close()
	r := e.do("GET", "/readyz", nil)
	want(t, "database closed", r, http.StatusServiceUnavailable, "unavailable")
	if r.header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
}

// TestDeclaredLengthOverLimit: a body declared larger than 64 KiB is
// refused with 413 before it is read, not waited for until the read
// timeout (a client that sends less than it declared): also by a route
// that would refuse the request before reading its body (its media type,
// its missing credentials, its query), after which net/http would read up
// to 256 KiB of it before answering.
func TestDeclaredLengthOverLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	for _, head := range []string{
		"POST /v1/auth/login HTTP/1.1\r\nContent-Type: application/json",
		"POST /v1/auth/login HTTP/1.1\r\nContent-Type: text/plain",
		"POST /v1/auth/logout HTTP/1.1\r\nContent-Type: application/json",
		"POST /v1/auth/register?admin=1 HTTP/1.1\r\nContent-Type: application/json",
	} {
		conn, err := net.Dial("tcp", strings.TrimPrefix(e.srv.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second)) // a hang fails the test rather than stall it
		fmt.Fprintf(conn, "%s\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{\"email\":", head)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Errorf("%s: no answer to a body declared over the limit: %v", head, err)
			conn.Close()
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), "payload_too_large") {
			t.Errorf("%s: a body declared over the limit: %d %s; want 413 payload_too_large", head, resp.StatusCode, body)
		}
		conn.Close()
	}
	// Chunked, its length undeclared: past the limit it is answered at
	// once and the connection closed, not read on (up to 256 KiB more)
	// from a client that has stopped sending.
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	chunk := strings.Repeat("x", 70<<10)
	fmt.Fprintf(conn, "POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
		"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n", len(chunk), chunk)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a chunked body past the limit: %v", err)
	}
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !resp.Close {
		t.Errorf("a chunked body past the limit: %d, close %v; want 413 and the connection closed", resp.StatusCode, resp.Close)
	}
}
