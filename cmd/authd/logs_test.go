package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd/internal/shedlog"
	"github.com/authd/authd/internal/syncbuf"
)

// jsonLines parses every line of out as one JSON object, failing the test
// for any line that is not.
func jsonLines(t *testing.T, name, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if line == "" && out == "" {
			break
		}
		var obj map[string]any
		if err := json.Unmarshal([]byte(line), &obj); err != nil {
			t.Errorf("%s line is not one JSON object: %q", name, line)
			continue
		}
		lines = append(lines, obj)
	}
	return lines
}

// TestServeJSONLogs: with AUTHD_LOG_FORMAT=json every line serve writes, the
// banner included, is one JSON object; lifetimes under a minute are
// accepted, each with a warning, and a session max age under the access
// token's lifetime (SPEC §2: any lifetime from 1 s) with one that access
// tokens end with their session.
func TestServeJSONLogs(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	env["AUTHD_HTTP_ADDR"], env["AUTHD_ADMIN_ADDR"] = "127.0.0.1:0", "127.0.0.1:0"
	env["AUTHD_LOG_FORMAT"] = "json"
	env["AUTHD_ACCESS_TOKEN_TTL"], env["AUTHD_REFRESH_TOKEN_TTL"], env["AUTHD_SESSION_MAX_AGE"] = "40s", "50s", "30s"
	s := startServe(t, env)
	url, stderr := s.url, s.stderr
	if url == "" {
		t.FailNow()
	}
	resp, err := http.Post(url+"/v1/auth/register", "application/json",
		strings.NewReader(`{"email":"j@example.org","password":"a sturdy passphrase","consent":true}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(stderr.String(), "verify-email?token="); {
		if time.Now().After(deadline) {
			t.Fatal("no mail link in the log")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code := s.stop(t); code != exitOK {
		t.Errorf("serve exited %d, want 0", code)
	}
	warned, endsWithSession := map[string]bool{}, false
	for _, line := range jsonLines(t, "stderr", stderr.String()) {
		if line["level"] == "WARN" {
			s, _ := line["setting"].(string)
			warned[s] = true
			endsWithSession = endsWithSession || line["at_most"] == "30s"
		}
	}
	if !endsWithSession {
		t.Errorf("no warning that access tokens live at most the session's 30s:\n%s", stderr.String())
	}
	for _, s := range []string{"AUTHD_ACCESS_TOKEN_TTL", "AUTHD_REFRESH_TOKEN_TTL", "AUTHD_SESSION_MAX_AGE"} {
		if !warned[s] {
			t.Errorf("no warning that %s is under a minute:\n%s", s, stderr.String())
		}
	}
	if warned["AUTHD_LOCKOUT_DURATION"] {
		t.Error("a warning about AUTHD_LOCKOUT_DURATION, which is 15m")
	}
}

// TestServeLibraryLogs: zitadel/oidc's lines below error (a "registered
// route" per endpoint, a "request error" per refused request beside the
// request's own line) are told at debug only, a request's with its id.
// Not parallel: the library logs through the process's default logger,
// which every serve in this process sets.
func TestServeLibraryLogs(t *testing.T) {
	for _, level := range []string{"info", "debug"} {
		t.Run(level, func(t *testing.T) {
			env := sqliteEnv(t)
			env["AUTHD_HTTP_ADDR"], env["AUTHD_LOG_LEVEL"] = "127.0.0.1:0", level
			s := startServe(t, env)
			stderr := s.stderr
			resp, err := http.PostForm(s.url+"/oauth2/token", map[string][]string{"grant_type": {"bogus"}, "client_id": {"x"}})
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			id := resp.Header.Get("X-Request-Id")
			// The request's own line comes after the library's, which the
			// handler writes before it answers.
			for deadline := time.Now().Add(10 * time.Second); !strings.Contains(stderr.String(), `msg=request request_id=`+id); {
				if time.Now().After(deadline) {
					t.Fatalf("no request line for %s:\n%s", id, stderr.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
			s.stop(t)
			refusals := strings.Count(stderr.String(), `msg="request error"`)
			debugRefusals := strings.Count(stderr.String(), `level=DEBUG msg="request error"`)
			routes := strings.Count(stderr.String(), `msg="registered route"`)
			debugRoutes := strings.Count(stderr.String(), `level=DEBUG msg="registered route"`)
			want := map[string]int{"info": 0, "debug": 1}[level]
			if refusals != want || debugRefusals != want {
				t.Errorf("AUTHD_LOG_LEVEL=%s: %d lines of the library's refusal, %d at debug; want %d, at debug:\n%s",
					level, refusals, debugRefusals, want, stderr.String())
			}
			if want == 1 && !regexp.MustCompile(`level=DEBUG msg="request error" .*request_id=`+id+`\n`).MatchString(stderr.String()) {
				t.Errorf("the library's refusal does not carry the request's id %s:\n%s", id, stderr.String())
			}
			if want := map[string]int{"info": 0, "debug": 3}[level]; routes != want || debugRoutes != want {
				t.Errorf("AUTHD_LOG_LEVEL=%s: %d route lines, %d at debug; want %d, all at debug:\n%s",
					level, routes, debugRoutes, want, stderr.String())
			}
		})
	}
}

// waitForJSONURL returns the URL of serve's JSON banner on stdout, or ""
// having failed the test when there is none.
func waitForJSONURL(t *testing.T, stdout, stderr *syncbuf.Buffer) string {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, line := range jsonLines(t, "stdout", stdout.String()) {
			if msg, _ := line["msg"].(string); strings.HasPrefix(msg, "authd listening on http://") {
				url, _ := line["url"].(string)
				return url
			}
		}
		if t.Failed() {
			return ""
		}
	}
	t.Errorf("no JSON banner with the URL on stdout %q; stderr %s", stdout.String(), stderr.String())
	return ""
}

// TestServeJSONBannerAtEveryLevel: the banner is one of the JSON lines
// whatever AUTHD_LOG_LEVEL, as the text banner is always printed.
func TestServeJSONBannerAtEveryLevel(t *testing.T) {
	t.Parallel()
	for _, level := range []string{"warn", "error"} {
		env := sqliteEnv(t)
		env["AUTHD_HTTP_ADDR"], env["AUTHD_LOG_FORMAT"], env["AUTHD_LOG_LEVEL"] = "127.0.0.1:0", "json", level
		s := startServe(t, env)
		if code := s.stop(t); code != exitOK || s.url == "" {
			t.Errorf("AUTHD_LOG_LEVEL=%s: exit %d, banner URL %q; want 0 and the URL", level, code, s.url)
		}
	}
}

// TestServeJSONFailures: a start that fails, on bad configuration or an
// unreachable database, is told as one JSON line with its hint.
func TestServeJSONFailures(t *testing.T) {
	t.Parallel()
	for name, set := range map[string]map[string]string{
		"lifetime under 1s":    {"AUTHD_REFRESH_TOKEN_TTL": "500ms"},
		"database unreachable": {"DATABASE_URL": "postgres://postgres@127.0.0.1:1/auth_db"},
	} {
		env := sqliteEnv(t)
		env["AUTHD_LOG_FORMAT"] = "json"
		for k, v := range set {
			env[k] = v
		}
		code, stdout, stderr := runCLI(t, env, "serve")
		lines := jsonLines(t, name+": stderr", stderr)
		if code != exitFailure || stdout != "" || len(lines) != 1 || lines[0]["level"] != "ERROR" || lines[0]["hint"] == nil {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want 1 and one JSON error line with a hint", name, code, stdout, stderr)
		}
	}
}

func TestLifetimesFromOneSecond(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"AUTHD_ACCESS_TOKEN_TTL", "AUTHD_REFRESH_TOKEN_TTL", "AUTHD_SESSION_MAX_AGE", "AUTHD_LOCKOUT_DURATION"} {
		env := sqliteEnv(t)
		env["AUTHD_ACCESS_TOKEN_TTL"] = "1s" // the session may not be shorter
		env[name] = "1s"
		if _, err := loadConfig(nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
			t.Errorf("%s=1s: %v; want accepted", name, err)
		}
		env[name] = "999ms"
		code, _, stderr := runCLI(t, env, "serve")
		if code != exitFailure || !strings.Contains(stderr, name+`="999ms": must be at least 1s`) {
			t.Errorf("%s=999ms: exit %d, stderr %q; want refused, at least 1s", name, code, stderr)
		}
	}
}

// TestServeCoversCostlierHashes: at start, serve times one check of the
// costliest stored hash of each kind authd checks and costs more than
// AUTHD_ARGON2_* — an imported bcrypt hash, an argon2id hash of an older,
// costlier setting — so that failed logins answer no sooner than a check
// of it, and says so; a hash it cannot check is only logged when met.
func TestServeCoversCostlierHashes(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	env["AUTHD_HTTP_ADDR"], env["AUTHD_ADMIN_ADDR"] = "127.0.0.1:0", "127.0.0.1:0"
	if code, _, stderr := runCLI(t, env, seedArgs("sqlite")...); code != exitOK {
		t.Fatalf("seed: %s", stderr)
	}
	db, err := sql.Open("sqlite", filepath.Join(env["AUTHD_DATA_DIR"], "authd.db"))
	if err != nil {
		t.Fatal(err)
	}
	for email, hash := range map[string]string{
		"active@demo.authd.dev":   "$argon2id$v=19$m=8192,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
		"inactive@demo.authd.dev": "$2b$04$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy",
	} {
		if _, err := db.Exec(`UPDATE users SET password_hash = ? WHERE email = ?`, hash, email); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	s := startServe(t, env)
	if s.url == "" {
		t.FailNow()
	}
	s.stop(t)
	for _, want := range []string{"imported bcrypt hashes", "costlier argon2id hashes stored", "memory_kib=8192"} {
		if !strings.Contains(s.stderr.String(), want) {
			t.Errorf("serve's log lacks %q:\n%s", want, s.stderr.String())
		}
	}
}

// TestServeFlushesShedCountAtShutdown: requests shed while the hashing
// queue is full are told sampled; those held back when serve stops are
// told as it stops, not lost with the timer that would have told them. Not
// parallel: it lengthens shedlog.Interval for serve's whole life.
func TestServeFlushesShedCountAtShutdown(t *testing.T) {
	defer func(d time.Duration) { shedlog.Interval = d }(shedlog.Interval)
	shedlog.Interval = time.Hour
	env := sqliteEnv(t)
	env["AUTHD_HTTP_ADDR"] = "127.0.0.1:0"
	cfg := configOf(t, env)
	var log syncbuf.Buffer
	app := NewApp(cfg, newLogger(cfg, &log))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := app.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	app.hasher.MaxQueue = 0 // every check shed: the queue is full
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	for range 3 {
		resp, err := http.Post("http://"+app.Addr().String()+"/v1/auth/login", "application/json",
			strings.NewReader(`{"email":"shed@example.org","password":"a sturdy passphrase"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("login with the queue full: %d, Retry-After %q; want 503 with Retry-After",
				resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	}
	if got := log.String(); strings.Count(got, "requests shed") != 1 || !strings.Contains(got, "requests=1") {
		t.Fatalf("log before shutdown: %s\nwant one line, of the first", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	if got := log.String(); strings.Count(got, "requests shed") != 2 || !strings.Contains(got, "requests=2") {
		t.Errorf("log after shutdown: %s\nwant a second line counting the two held back", got)
	}
}

// TestServeWarnsOfAnIssuerThatIsNoURL: a name as AUTHD_ISSUER serves (access
// tokens may carry any name), with a warning that OpenID Connect relying
// parties refuse it; so does a URL whose path authd does not route (the
// discovery is not found under it). The default, and a URL with a path of
// plain segments, draw none.
func TestServeWarnsOfAnIssuerThatIsNoURL(t *testing.T) {
	t.Parallel()
	const notURL, notRouted = "AUTHD_ISSUER is no http(s) URL", "AUTHD_ISSUER's path is not one authd routes"
	for issuer, warning := range map[string]string{"authd-production": notURL, "https://auth.example.org/a%2Fb": notRouted,
		"https://auth.example.org/tenant1": "", "": ""} {
		env := sqliteEnv(t)
		env["AUTHD_HTTP_ADDR"] = "127.0.0.1:0"
		if issuer != "" {
			env["AUTHD_ISSUER"] = issuer
		}
		s := startServe(t, env)
		if code := s.stop(t); code != exitOK {
			t.Fatalf("AUTHD_ISSUER=%q: exit %d, %s", issuer, code, s.stderr.String())
		}
		for _, w := range []string{notURL, notRouted} {
			if got := strings.Contains(s.stderr.String(), w); got != (w == warning) {
				t.Errorf("AUTHD_ISSUER=%q: warned %q %v, want %v:\n%s", issuer, w, got, w == warning, s.stderr.String())
			}
		}
	}
}

// TestServeWarnsOfRiskySettings: serve starts, but says so, with key files
// others may read (a copy that lost its mode) and with proxies trusted from
// every address (anyone picks the IP the limits see).
func TestServeWarnsOfRiskySettings(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	env["AUTHD_HTTP_ADDR"] = "127.0.0.1:0"
	s := startServe(t, env)
	if code := s.stop(t); code != exitOK || strings.Contains(s.stderr.String(), "level=WARN") {
		t.Fatalf("a first start: exit %d, %s; want no warning", code, s.stderr.String())
	}
	// A mounted secret: the file a link (as Kubernetes makes them), 0644.
	dir := filepath.Join(env["AUTHD_DATA_DIR"], "keys")
	data := filepath.Join(dir, "..data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "mfa.key"), filepath.Join(data, "mfa.key")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(data, "mfa.key"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..data", "mfa.key"), filepath.Join(dir, "mfa.key")); err != nil {
		t.Fatal(err)
	}
	env["AUTHD_TRUSTED_PROXIES"] = "10.0.0.0/8,0.0.0.0/0"
	s = startServe(t, env)
	if code := s.stop(t); code != exitOK {
		t.Fatalf("exit %d, %s", code, s.stderr.String())
	}
	out := s.stderr.String()
	if !strings.Contains(out, "mfa.key (0644)") || !strings.Contains(out, "AUTHD_TRUSTED_PROXIES trusts every address") ||
		strings.Contains(out, "refresh-token.key (") {
		t.Errorf("log:\n%s\nwant a warning naming mfa.key alone, and one of the proxies", out)
	}
}
