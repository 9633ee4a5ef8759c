package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/authd/authd"
)

// TestHostileInputNeverFails sends every route of both listeners a set of
// hostile requests: none may answer 5xx, and every error is problem+json
// (or, for the pages, HTML). The bodies go without a query string (an API
// route refuses a malformed one before it reads the body), the hostile
// query strings with a plain body. Both stores: what reaches them differs
// (PostgreSQL refuses a NUL in text, SQLite keeps it).
func TestHostileInputNeverFails(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		hostileInput(t, newEnv(t, open(t))) // no rate limits: let every request reach the flows
	})
}

func hostileInput(t *testing.T, e *env) {
	const email = "h@example.org"
	e.registerVerified(email, goodPassword)
	access, _ := e.login(email, goodPassword)
	bodies := []string{
		``, `{}`, `[]`, `null`, `"x"`, `{"email":null,"password":null}`, `{"token":{"a":1}}`,
		`{"email":"` + strings.Repeat("a", 5000) + `@x.org","password":"` + strings.Repeat("p", 5000) + `"}`,
		`{"refresh_token":"` + strings.Repeat("A", 43) + `"}`, `{"until":"not a time"}`, `{"until":"0001-01-01T00:00:00Z"}`,
		`{"consent":1}`, `{"a":` + strings.Repeat("[", 500) + strings.Repeat("]", 500) + `}`, "{\"email\":\"\xff\xfe\"}",
		`token=` + strings.Repeat("%", 10), `email=%00`, `{"email":"a@b.c"}garbage`,
	}
	queries := []string{"token=%ZZ&cursor=%%%", "token=a&token=b", "a=1;b=2", "cursor=" + strings.Repeat("%41", 2000)}
	types := []string{"application/json", "application/x-www-form-urlencoded", "text/plain", "application/json; charset=latin1", ""}
	// The user's credential is the second. A request that ended its session
	// (a logout with a body it takes) has it replaced and the request that
	// found it refused sent again, so that every body reaches the handlers
	// of the routes behind it; a route that refuses a fresh one too takes
	// no user's token, and is not tried again.
	const user = 1
	auths := [][]string{nil, bearer(access), {"Authorization", "Bearer " + serviceToken}}
	for _, server := range []struct {
		base  string
		admin bool
	}{{e.srv.URL, false}, {e.adminSrv.URL, true}} {
		api, auths := e.api, auths
		if server.admin {
			// Its own token replaces any other Authorization (send sets it).
			api, auths = e.adminAPI, [][]string{{"Authorization", "Bearer " + adminToken}}
		}
		for _, r := range api.Routes() {
			path := strings.ReplaceAll(r.Path, "{id}", "0197c0de-0000-7000-8000-000000000000")
			send := func(target, body, ctype string, auth []string) response {
				t.Helper()
				resp := e.send(server.base, r.Method, target, body, append([]string{"Content-Type", ctype}, auth...)...)
				if resp.status >= 500 {
					t.Fatalf("%s %s with %q (%s): %d %s", r.Method, target, body, ctype, resp.status, resp.raw)
				}
				ct := resp.header.Get("Content-Type")
				if resp.status >= 400 && ct != "application/problem+json" && !strings.HasPrefix(ct, "text/html") {
					t.Fatalf("%s %s: %d with Content-Type %q", r.Method, target, resp.status, ct)
				}
				return resp
			}
			userRoute := !server.admin
			for _, body := range bodies {
				for _, ctype := range types {
					for i, auth := range auths {
						resp := send(path, body, ctype, auth)
						if i == user && userRoute && resp.status == http.StatusUnauthorized {
							access, _ = e.login(email, goodPassword)
							auths[user] = bearer(access)
							userRoute = send(path, body, ctype, auths[user]).status != http.StatusUnauthorized
						}
					}
				}
				send(path, body, "application/json", bearer("x"))
			}
			for _, query := range queries {
				for _, auth := range append(auths, bearer("x")) {
					send(path+"?"+query, `{}`, "application/json", auth)
				}
			}
		}
	}
}

// TestUnsupportedBodiesSaySo: a compressed body, or an introspection body
// of neither of its two types, is a 415 whose message names what to send.
func TestUnsupportedBodiesSaySo(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	r := e.do("POST", "/v1/auth/login", "\x1f\x8b\x08\x00junk", "Content-Type", "application/json", "Content-Encoding", "gzip")
	want(t, "a gzipped body", r, 415, "")
	if !strings.Contains(r.raw, "Content-Encoding") {
		t.Errorf("a gzipped body: %s, want the message to name Content-Encoding", r.raw)
	}
	// Every Content-Encoding field counts, not the first alone.
	req, _ := http.NewRequest("POST", e.srv.URL+"/v1/auth/login", strings.NewReader("\x1f\x8b\x08\x00junk"))
	req.Header["Content-Type"] = []string{"application/json"}
	req.Header["Content-Encoding"] = []string{"identity", "gzip"}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("a body gzipped in a second Content-Encoding field: %d, want 415", resp.StatusCode)
	}
	// JSON of another charset is refused, not read as UTF-8 (SPEC §5:
	// UTF-8); utf-8 named in any case is accepted.
	r = e.do("POST", "/v1/auth/login", `{}`, "Content-Type", "application/json; charset=iso-8859-1")
	want(t, "JSON in Latin-1", r, 415, "unsupported_media_type")
	want(t, "JSON in UTF-8, named upper-case", e.do("POST", "/v1/auth/login", `{}`, "Content-Type", "application/json; charset=UTF-8"),
		400, "validation_failed")
	r = e.do("POST", "/v1/auth/introspect", "token=x", "Content-Type", "text/plain", "Authorization", "Bearer "+serviceToken)
	want(t, "introspection as text/plain", r, 415, "")
	if !strings.Contains(r.raw, "x-www-form-urlencoded") || !strings.Contains(r.raw, "application/json") {
		t.Errorf("introspection as text/plain: %s, want both accepted types named", r.raw)
	}
	for _, ct := range []string{"application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=utf-8"} {
		r = e.do("POST", "/v1/auth/introspect", "token=x", "Content-Type", ct, "Authorization", "Bearer "+serviceToken)
		if r.status != 200 || r.body["active"] != false {
			t.Errorf("introspection as %s: %d %s", ct, r.status, r.raw)
		}
	}
}

// TestRepeatedQueryParameters: an API query parameter given twice is a 400
// naming it, whichever route: the API reads one value, and which one must
// not be left to chance.
func TestRepeatedQueryParameters(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	for _, c := range []struct {
		admin bool
		path  string
		field string
	}{
		{true, "/v1/admin/users?limit=1&limit=500", "limit"},
		{true, "/v1/admin/users?status=active&status=locked", "status"},
		{true, "/v1/admin/mail?state=dead&state=pending", "state"},
		{false, "/v1/auth/revocations?since=1&since=2", "since"},
	} {
		var r response
		if c.admin {
			r = e.admin("GET", c.path, nil)
		} else {
			r = e.do("GET", c.path, nil, "Authorization", "Bearer "+serviceToken)
		}
		if r.status != 400 || !strings.Contains(r.raw, `"field":"`+c.field+`"`) {
			t.Errorf("%s: %d %s, want 400 naming %s", c.path, r.status, r.raw, c.field)
		}
	}
	if r := e.admin("GET", "/v1/admin/users?limit=1&status=active", nil); r.status != 200 {
		t.Errorf("distinct parameters: %d %s", r.status, r.raw)
	}
}

// TestShedRequestsLoggedSampled: requests shed because the hashing pool is
// full answer 503 with Retry-After, and are told at warn level at most once
// a second, not as an error line each: a flood from outside must not drown
// the log.
func TestShedRequestsLoggedSampled(t *testing.T) {
	t.Parallel()
	b := &busyPasswords{}
	e := newEnv(t, openSQLite(t), withPasswords(func(p authd.Passwords) authd.Passwords { b.Passwords = p; return b }))
	e.registerVerified("flood@example.org", goodPassword)
	b.armed.Store(true)
	for range 20 {
		r := e.do("POST", "/v1/auth/login", map[string]string{"email": "flood@example.org", "password": goodPassword})
		want(t, "a login with the pool full", r, 503, "unavailable")
		if r.header.Get("Retry-After") == "" {
			t.Fatal("a shed request without Retry-After")
		}
	}
	logs := e.logs.String()
	if n := strings.Count(logs, "requests shed"); n < 1 || n > 2 || strings.Contains(logs, "request failed") {
		t.Errorf("20 shed requests logged %d times (and as failures: %v), want once or twice at warn level:\n%s",
			n, strings.Contains(logs, "request failed"), logs)
	}
}
