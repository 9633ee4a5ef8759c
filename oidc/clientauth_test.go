package oidc_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/authd/authd"
	"github.com/authd/authd/httpapi"
	"github.com/authd/authd/oidc"
)

const clientAuthUA = "client-auth-test/1.0"

// tokenRequest posts a code exchange to the token endpoint, with the
// client's credentials in the Authorization header when basic, else in the
// form, and returns the status and the OAuth error code.
func (e *env) tokenRequest(clientID, secret string, basic bool) (int, string) {
	e.t.Helper()
	resp, code := e.tokenResponse(clientID, secret, basic)
	return resp.StatusCode, code
}

// tokenResponse is tokenRequest's answer, its body read: the response (for
// its status and headers) and the OAuth error code.
func (e *env) tokenResponse(clientID, secret string, basic bool) (*http.Response, string) {
	e.t.Helper()
	form := url.Values{"grant_type": {"authorization_code"}, "code": {"no-such-code"}, "redirect_uri": {rpCallback},
		"code_verifier": {strings.Repeat("v", 43)}}
	if !basic {
		form.Set("client_id", clientID)
		if secret != "" {
			form.Set("client_secret", secret)
		}
	}
	req, _ := http.NewRequest("POST", e.srv.URL+oidc.TokenPath, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("User-Agent", clientAuthUA)
	if basic {
		req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
	}
	return e.oauthCall(req)
}

// oauthCall sends req and returns the response (for its status and
// headers) and the OAuth error code of its JSON body.
func (e *env) oauthCall(req *http.Request) (*http.Response, string) {
	e.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Error string `json:"error"`
	}
	json.NewDecoder(resp.Body).Decode(&out)
	return resp, out.Error
}

// clientAuthFailures are the oidc_client_auth_failed rows, newest first.
func (e *env) clientAuthFailures() []*authd.SecurityLog {
	e.t.Helper()
	logs, err := e.store.SecurityLogs(context.Background(),
		authd.SecurityLogFilter{EventType: authd.EventOIDCClientAuthFailed, Limit: 200})
	if err != nil {
		e.t.Fatal(err)
	}
	return logs
}

// clientIDContext is how a row's context names the client: every key but
// auth_method, in order.
func clientIDContext(l *authd.SecurityLog) string {
	ctx := maps.Clone(l.AdditionalContext)
	delete(ctx, "auth_method")
	return fmt.Sprint(ctx)
}

// knownClientIDContext is clientIDContext for a registered client.
func knownClientIDContext(id string) string {
	return fmt.Sprint(map[string]any{"client_id": id})
}

// unknownClientIDContext matches clientIDContext for any other client_id:
// a 12-hex digest and the length, not the text.
func unknownClientIDContext(id string) *regexp.Regexp {
	return regexp.MustCompile(fmt.Sprintf(`^map\[client_id_digest:[0-9a-f]{12} client_id_length:%d\]$`, len(id)))
}

// TestFailedClientAuthIsLogged: each way a client can fail to authenticate
// at the token endpoint answers 401 invalid_client and writes exactly one
// row, with the registered client_id (or an unknown one's digest and
// length) and the method, and no part of any secret; a client that authenticates writes none. The admin API's filter
// finds the rows.
func TestFailedClientAuthIsLogged(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		app, secret := e.client("app", authd.ClientConfidential, true)
		spa, _ := e.client("spa", authd.ClientPublic, true)
		wrong := "wrong-" + secret[:20]
		tests := []struct {
			name, clientID, secret string
			basic                  bool
			method, reason         string
		}{
			{"wrong secret", app.ID, wrong, true, "client_secret_basic", "wrong secret"},
			{"wrong secret in the form", app.ID, wrong, false, "client_secret_post", "wrong secret"},
			{"unknown client", "no-such-client", wrong, false, "client_secret_post", "unknown client"},
			{"malformed client_id", "bad id\x01" + strings.Repeat("x", 300), "", false, "none", "unknown client"},
			{"public client with a secret", spa.ID, wrong, true, "client_secret_basic", "secret from a public client"},
			{"confidential client without", app.ID, "", false, "none", "no secret from a confidential client"},
		}
		for _, tt := range tests {
			before := len(e.clientAuthFailures())
			status, code := e.tokenRequest(tt.clientID, tt.secret, tt.basic)
			if status != http.StatusUnauthorized || code != "invalid_client" {
				t.Errorf("%s: %d %q, want 401 invalid_client", tt.name, status, code)
			}
			rows := e.clientAuthFailures()
			if len(rows) != before+1 {
				t.Errorf("%s: %d new rows, want 1", tt.name, len(rows)-before)
				continue
			}
			l := rows[0]
			if l.Result != authd.ResultFailure || l.UserID != [16]byte{} || l.IPAddress != "127.0.0.1" ||
				l.UserAgent != clientAuthUA || l.FailureReason != tt.reason || l.AdditionalContext["auth_method"] != tt.method {
				t.Errorf("%s: row %+v; want a failure without user, from 127.0.0.1 and %q, reason %q, auth_method %q",
					tt.name, l, clientAuthUA, tt.reason, tt.method)
			}
			if got, want := clientIDContext(l), knownClientIDContext(tt.clientID); tt.reason != "unknown client" && got != want {
				t.Errorf("%s: context names the client as %s, want %s", tt.name, got, want)
			}
			if got, want := clientIDContext(l), unknownClientIDContext(tt.clientID); tt.reason == "unknown client" && !want.MatchString(got) {
				t.Errorf("%s: context names the unknown client as %s, want %s", tt.name, got, want)
			}
			raw, _ := json.Marshal(l)
			for _, s := range []string{secret, secret[:8], secret[len(secret)-8:], wrong, wrong[6:14]} {
				if strings.Contains(string(raw), s) {
					t.Errorf("%s: the row holds secret text %q: %s", tt.name, s, raw)
				}
			}
		}

		// A client that authenticates adds no row of its own (the unknown
		// code is logged as such).
		before := len(e.clientAuthFailures())
		if status, code := e.tokenRequest(app.ID, secret, true); status != http.StatusBadRequest || code != "invalid_grant" {
			t.Errorf("the right secret with an unknown code: %d %q, want 400 invalid_grant", status, code)
		}
		if status, code := e.tokenRequest(spa.ID, "", false); status != http.StatusBadRequest || code != "invalid_grant" {
			t.Errorf("a public client without a secret, an unknown code: %d %q, want 400 invalid_grant", status, code)
		}
		if n := len(e.clientAuthFailures()) - before; n != 0 {
			t.Errorf("authenticated clients wrote %d oidc_client_auth_failed rows", n)
		}

		admin := httptest.NewServer(httpapi.NewAdmin(httpapi.Options{Service: e.svc}, "admin-token-for-tests-0123456789"))
		defer admin.Close()
		req, _ := http.NewRequest("GET", admin.URL+"/v1/admin/security-logs?event_type=oidc_client_auth_failed", nil)
		req.Header.Set("Authorization", "Bearer admin-token-for-tests-0123456789")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var page struct {
			Items []struct {
				EventType         string         `json:"event_type"`
				AdditionalContext map[string]any `json:"additional_context"`
			} `json:"items"`
		}
		if err := json.Unmarshal(body, &page); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("admin security-logs: %d %s", resp.StatusCode, body)
		}
		if len(page.Items) != len(tests) {
			t.Errorf("the admin filter found %d oidc_client_auth_failed rows, want %d: %s", len(page.Items), len(tests), body)
		}
		for _, it := range page.Items {
			if it.EventType != "oidc_client_auth_failed" || it.AdditionalContext["auth_method"] == nil {
				t.Errorf("admin filter item %+v", it)
			}
		}
	})
}

// TestSecretAsClientIDIsNotLogged: a client's secret typed into the
// client_id field (in the form or in Basic credentials) is an unknown
// client_id; no security log row holds any part of it, in any column or
// context value, and the two rows share one digest.
func TestSecretAsClientIDIsNotLogged(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		_, secret := e.client("app", authd.ClientConfidential, true)
		for _, basic := range []bool{false, true} {
			if status, code := e.tokenRequest(secret, "", basic); status != http.StatusUnauthorized || code != "invalid_client" {
				t.Errorf("the secret as client_id (basic %v): %d %q, want 401 invalid_client", basic, status, code)
			}
		}
		failures := e.clientAuthFailures()
		if len(failures) != 2 || clientIDContext(failures[0]) != clientIDContext(failures[1]) ||
			!unknownClientIDContext(secret).MatchString(clientIDContext(failures[0])) {
			t.Errorf("%d oidc_client_auth_failed rows; want 2 naming the text by one digest and its length", len(failures))
		}
		logs, err := e.store.SecurityLogs(context.Background(), authd.SecurityLogFilter{Limit: authd.MaxListLimit})
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range logs {
			raw, _ := json.Marshal(l)
			for _, s := range []string{secret, secret[:12], secret[len(secret)-12:]} {
				if strings.Contains(string(raw), s) {
					t.Errorf("a %s row holds secret text %q: %s", l.EventType, s, raw)
				}
			}
		}
	})
}

// TestFailedClientAuthIsBounded: a flood of failures from one IP logs at
// most 10 a minute, whatever client_ids it names, then answers 429
// unlogged; the right secret still authenticates.
func TestFailedClientAuthIsBounded(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		app, secret := e.client("app", authd.ClientConfidential, true)
		const bound, extra = 10, 5
		statuses := map[int]int{}
		for range bound + extra {
			status, _ := e.tokenRequest(app.ID, "wrong", true)
			statuses[status]++
		}
		for i := range extra {
			status, _ := e.tokenRequest(fmt.Sprintf("invented-%d", i), "wrong", false)
			statuses[status]++
		}
		if statuses[http.StatusUnauthorized] != bound || statuses[http.StatusTooManyRequests] != 2*extra {
			t.Errorf("statuses %v; want %d refused and %d limited", statuses, bound, 2*extra)
		}
		if n := len(e.clientAuthFailures()); n != bound {
			t.Errorf("%d oidc_client_auth_failed rows, want %d", n, bound)
		}
		if status, code := e.tokenRequest(app.ID, secret, true); status != http.StatusBadRequest || code != "invalid_grant" {
			t.Errorf("the right secret after the flood: %d %q, want 400 invalid_grant (authenticated)", status, code)
		}
	})
}

// TestFailedClientAuthBoundHidesClientIDs: once invented client_ids have
// spent an IP's bound, a registered client_id with a wrong secret and an
// unknown one answer alike, so the 429 does not tell which ids exist.
func TestFailedClientAuthBoundHidesClientIDs(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		app, _ := e.client("realapp", authd.ClientConfidential, true)
		for i := range 10 {
			e.tokenRequest(fmt.Sprintf("junk-%d", i), "wrong", false)
		}
		known, knownCode := e.tokenRequest(app.ID, "wrong", false)
		unknown, unknownCode := e.tokenRequest("guess-1", "wrong", false)
		if known != unknown || knownCode != unknownCode {
			t.Errorf("after 10 invented ids: a registered client_id answers %d %q, an unknown one %d %q; want the same",
				known, knownCode, unknown, unknownCode)
		}
	})
}

// levels is a slog handler that keeps every record, for their levels.
type levels struct {
	mu      sync.Mutex
	records []slog.Record
}

func (*levels) Enabled(context.Context, slog.Level) bool { return true }
func (h *levels) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r)
	return nil
}
func (h *levels) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *levels) WithGroup(string) slog.Handler      { return h }

// TestRateLimitedClientAuthIsNoError: 20 wrong secrets from one IP are
// refused (401), then limited (429) with Retry-After and invalid_request,
// not server_error, and nothing is logged at ERROR: a client's flood
// is not the server's fault. The OpenID library logs through slog's
// default logger, so the test swaps it and runs alone (not in parallel).
func TestRateLimitedClientAuthIsNoError(t *testing.T) {
	captured := &levels{}
	saved := slog.Default()
	slog.SetDefault(slog.New(captured))
	t.Cleanup(func() { slog.SetDefault(saved) })
	for name, open := range map[string]func(*testing.T) authd.Store{"sqlite": openSQLite, "postgres": openPostgres} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, open(t))
			app, _ := e.client("app", authd.ClientConfidential, true)
			captured.mu.Lock()
			captured.records = nil
			captured.mu.Unlock()
			var last *http.Response
			var code string
			for range 20 {
				last, code = e.tokenResponse(app.ID, "wrong", true)
			}
			if seconds, err := strconv.Atoi(last.Header.Get("Retry-After")); last.StatusCode != http.StatusTooManyRequests ||
				code != "invalid_request" || err != nil || seconds < 1 {
				t.Errorf("20th wrong secret: %d %q, Retry-After %q; want 429 invalid_request (not server_error) with Retry-After in seconds",
					last.StatusCode, code, last.Header.Get("Retry-After"))
			}
			captured.mu.Lock()
			defer captured.mu.Unlock()
			if len(captured.records) == 0 {
				t.Fatal("nothing logged through slog's default logger: the capture sees nothing of the library")
			}
			for _, r := range captured.records {
				if r.Level >= slog.LevelError {
					t.Errorf("logged at %s: %q", r.Level, r.Message)
				}
			}
		})
	}
}

// TestUnauthorizedAnswersCarryAChallenge: every 401 of the token and
// UserInfo endpoints says how to authenticate (RFC 7235 §3.1). A client
// that fails to authenticate is asked for Basic (RFC 6749 §5.2: MUST when
// it used the Authorization header); UserInfo refuses a token it does not
// take with invalid_token in the body and the Bearer challenge (RFC 6750
// §3.1, OIDC Core §5.3.3), and a request without any token with the bare
// Bearer challenge, no error code.
func TestUnauthorizedAnswersCarryAChallenge(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		e.user("ch@example.org")
		e.client("app", authd.ClientConfidential, true)
		for _, basic := range []bool{true, false} {
			resp, code := e.tokenResponse("app", "wrong", basic)
			if got := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != http.StatusUnauthorized || code != "invalid_client" ||
				got != `Basic realm="authd"` {
				t.Errorf("wrong secret (basic %v): %d %s, WWW-Authenticate %q; want 401 invalid_client, Basic realm=\"authd\"",
					basic, resp.StatusCode, code, got)
			}
		}
		pair, _ := e.login("ch@example.org")
		for name, authorization := range map[string]string{"junk": "Bearer junk", "a /v1/auth/login token": "Bearer " + pair.AccessToken} {
			resp, code := e.userInfoResponse(authorization)
			if got := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != http.StatusUnauthorized || code != "invalid_token" ||
				got != `Bearer realm="authd", error="invalid_token"` {
				t.Errorf("UserInfo with %s: %d %s, WWW-Authenticate %q; want 401 invalid_token with its Bearer challenge",
					name, resp.StatusCode, code, got)
			}
		}
		resp, code := e.userInfoResponse("")
		if got := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != http.StatusUnauthorized || got != `Bearer realm="authd"` ||
			code != "" {
			t.Errorf("UserInfo without a token: %d %q, WWW-Authenticate %q; want 401, Bearer realm=\"authd\", no error code "+
				"(RFC 6750 §3.1)", resp.StatusCode, code, got)
		}
	})
}
