package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd/internal/faultnet"
	"github.com/jackc/pgx/v5"
)

// TestRevocationsArriveWithoutNotifications: a revocation whose
// notification never comes (lost with a stalled connection, or behind a
// pooler that does not carry notifications) still reaches a PostgreSQL
// instance within about a second, from the revocation feed's table: the
// event row is written here without pg_notify, and the instance's answer
// to the session's access token, checked against its in-memory set only,
// turns 401.
func TestRevocationsArriveWithoutNotifications(t *testing.T) {
	t.Parallel()
	env := postgresEnv(t)
	env["AUTHD_HTTP_ADDR"] = "127.0.0.1:0"
	env["AUTHD_REQUIRE_VERIFIED_EMAIL"] = "false"
	if code, _, stderr := runCLI(t, env, "migrate", "up"); code != exitOK {
		t.Fatalf("migrate up: %d %s", code, stderr)
	}
	s := startServe(t, env)
	post := func(path string, body map[string]any) *http.Response {
		t.Helper()
		b, _ := json.Marshal(body)
		resp, err := http.Post(s.url+path, "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	const email, pass = "lost.notice@example.org", "correct horse battery staple"
	if r := post("/v1/auth/register", map[string]any{"email": email, "password": pass, "consent": true}); r.StatusCode != 202 {
		t.Fatalf("register: %d", r.StatusCode)
	}
	r := post("/v1/auth/login", map[string]any{"email": email, "password": pass})
	var pair struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(r.Body).Decode(&pair); err != nil || r.StatusCode != 200 {
		t.Fatalf("login: %d %v", r.StatusCode, err)
	}
	me := func() int {
		t.Helper()
		req, _ := http.NewRequest("GET", s.url+"/v1/users/me", nil)
		req.Header.Set("Authorization", "Bearer "+pair.AccessToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := me(); code != 200 {
		t.Fatalf("me before the revocation: %d", code)
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(pair.AccessToken, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		SID string `json:"sid"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.SID == "" {
		t.Fatalf("no sid in the access token %s: %v", payload, err)
	}

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, env["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `INSERT INTO revocation_events (kind, subject_id, reason, expires_at, created_at)
		VALUES ('session', $1, 'test: notification lost', now() + interval '1 day', now())`, claims.SID); err != nil {
		t.Fatal(err)
	}
	// Three seconds, not one: a loaded machine may delay a read (the bound
	// is the catch-up's interval, half a second, plus its read's time); a
	// catch-up a few seconds apart would still fail.
	for deadline := time.Now().Add(3 * time.Second); me() != http.StatusUnauthorized; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a revocation without its notification did not reach the instance within 3 s")
		}
	}
}

// TestRevocationStreamsSetting: AUTHD_REVOCATION_STREAMS bounds the feed's
// streams an instance serves: with 1, a second stream is 503 while the
// first is open.
func TestRevocationStreamsSetting(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	env["AUTHD_HTTP_ADDR"] = "127.0.0.1:0"
	env["AUTHD_SERVICE_TOKENS"] = strings.Repeat("s", 32)
	env["AUTHD_REVOCATION_STREAMS"] = "1"
	s := startServe(t, env)
	open := func() *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", s.url+"/v1/auth/revocations", nil)
		req.Header.Set("Authorization", "Bearer "+strings.Repeat("s", 32))
		req.Header.Set("Accept", "text/event-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	first := open()
	defer first.Body.Close()
	if first.StatusCode != 200 {
		t.Fatalf("the first stream: %d", first.StatusCode)
	}
	second := open()
	second.Body.Close()
	if second.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a second stream with AUTHD_REVOCATION_STREAMS=1: %d, want 503", second.StatusCode)
	}
}

// TestTokensRefusedWhileRevocationsStale: an instance cut off from its
// PostgreSQL cannot learn of revocations other instances commit, so past
// revocationMaxLag it answers 503 with Retry-After to access tokens — on
// introspection too, which reads nothing else — rather than call a token
// revoked elsewhere active; once the database answers, it takes them again.
func TestTokensRefusedWhileRevocationsStale(t *testing.T) {
	t.Parallel()
	env := postgresEnv(t)
	if code, _, stderr := runCLI(t, env, "migrate", "up"); code != exitOK {
		t.Fatalf("migrate up: %d %s", code, stderr)
	}
	p, proxied, err := faultnet.ListenURL(env["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	env["DATABASE_URL"], env["AUTHD_HTTP_ADDR"] = proxied, "127.0.0.1:0"
	env["AUTHD_REQUIRE_VERIFIED_EMAIL"] = "false"
	env["AUTHD_SERVICE_TOKENS"] = "service-token-0123456789abcdef0123456789"
	s := startServe(t, env)
	const email, pass = "cut.off@example.org", "correct horse battery staple"
	resp, err := http.Post(s.url+"/v1/auth/register", "application/json",
		strings.NewReader(`{"email":"`+email+`","password":"`+pass+`","consent":true}`))
	if err != nil || resp.StatusCode != 202 {
		t.Fatalf("register: %v %v", resp, err)
	}
	resp.Body.Close()
	resp, err = http.Post(s.url+"/v1/auth/login", "application/json", strings.NewReader(`{"email":"`+email+`","password":"`+pass+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	var pair struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&pair); err != nil || resp.StatusCode != 200 {
		t.Fatalf("login: %d %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	introspect := func() (int, string, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", s.url+"/v1/auth/introspect", strings.NewReader("token="+pair.AccessToken))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer "+env["AUTHD_SERVICE_TOKENS"])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Retry-After"), string(body)
	}
	// until polls introspection (at most 30 s) for the status want.
	until := func(want int) (string, string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			code, retry, body := introspect()
			if code == want || time.Now().After(deadline) {
				if code != want {
					t.Fatalf("introspection: %d %s, want %d", code, body, want)
				}
				return retry, body
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if _, body := until(http.StatusOK); !strings.Contains(body, `"active":true`) {
		t.Fatalf("introspection before the cut: %s", body)
	}
	p.SetDown(true)
	if retry, body := until(http.StatusServiceUnavailable); retry == "" || strings.Contains(body, "active") {
		t.Errorf("introspection while cut off: Retry-After %q, %s; want 503 with Retry-After, no answer on the token", retry, body)
	}
	p.SetDown(false)
	if _, body := until(http.StatusOK); !strings.Contains(body, `"active":true`) {
		t.Errorf("introspection once the database answers again: %s", body)
	}
	// The refusals are logged for what they are, an outage (counted, not
	// a line each), not as requests shed for want of capacity.
	s.stop(t)
	if logs := s.stderr.String(); !strings.Contains(logs, "access tokens refused: this instance has not read the revocations") ||
		strings.Contains(logs, "requests shed") {
		t.Errorf("the log of the refusals:\n%s\nwant them told as refused for stale revocations", logs)
	}
}
