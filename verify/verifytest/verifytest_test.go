package verifytest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd/verify"
	"github.com/authd/authd/verify/verifytest"
)

// TestServer: a Verifier made from a Server's options takes its tokens
// (through Middleware too), with the claims asked for or authd's defaults,
// and refuses them once their session or user is revoked; another
// client's token is refused unless Options.Clients names the client.
func TestServer(t *testing.T) {
	t.Parallel()
	authd := verifytest.NewServer(t)
	v := authd.Verifier(t)
	hello := v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := verify.ClaimsFrom(r.Context())
		io.WriteString(w, c.Subject+" "+strings.Join(c.AMR, ","))
	}))
	srv := httptest.NewServer(hello)
	defer srv.Close()
	get := func(token string) (int, string) {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}

	token := authd.Token(verify.Claims{Subject: "user-1", AMR: []string{"pwd", "otp", "mfa"}})
	if status, body := get(token); status != 200 || body != "user-1 pwd,otp,mfa" {
		t.Fatalf("a Server's token through Middleware: %d %q", status, body)
	}
	c, err := v.Verify(context.Background(), authd.Token(verify.Claims{}))
	if err != nil || c.Subject == "" || c.SessionID == "" || c.ID == "" || !c.HasAMR("pwd") ||
		c.Issuer != authd.URL || time.Until(c.ExpiresAt) <= 0 || time.Until(c.ExpiresAt) > verifytest.TokenLifetime {
		t.Errorf("a token of authd's defaults: %+v, %v", c, err)
	}
	expired := authd.Token(verify.Claims{ExpiresAt: time.Now().Add(-time.Minute)})
	if _, err := v.Verify(context.Background(), expired); !errors.Is(err, verify.ErrExpired) {
		t.Errorf("an expired token: %v; want ErrExpired", err)
	}

	authd.RevokeSession(verifytest.SessionOf(token))
	authd.Sync(t, v)
	if status, _ := get(token); status != http.StatusUnauthorized {
		t.Errorf("a revoked session's token through Middleware: %d; want 401", status)
	}
	// A user's revocation ends the sessions Token made for them, however
	// recent; a session begun after it is good, as with authd.
	other := authd.Token(verify.Claims{Subject: "user-1"})
	authd.RevokeUser("user-1")
	authd.Sync(t, v)
	if _, err := v.Verify(context.Background(), other); !errors.Is(err, verify.ErrRevoked) {
		t.Errorf("a token of a user revoked since: %v; want ErrRevoked", err)
	}
	if _, err := v.Verify(context.Background(), authd.Token(verify.Claims{Subject: "user-1"})); err != nil {
		t.Errorf("a new session's token after the user's revocation: %v; want it good", err)
	}

	app := authd.Token(verify.Claims{ClientID: "app", Scopes: []string{"openid", "email"}})
	if _, err := v.Verify(context.Background(), app); !errors.Is(err, verify.ErrClient) {
		t.Errorf("a client's token, the client not named: %v; want ErrClient", err)
	}
	apps := authd.VerifierWith(t, func(o *verify.Options) { o.Clients = []string{"app"} })
	if c, err := apps.Verify(context.Background(), app); err != nil || c.ClientID != "app" || !c.HasScope("email") {
		t.Errorf("a client's token, the client named: %+v, %v", c, err)
	}
}

// introspect asks authd's introspection about token with serviceToken.
func introspect(t *testing.T, authd *verifytest.Server, serviceToken, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", authd.URL+"/v1/auth/introspect", strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+serviceToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

// TestIntrospection: the Server's introspection, which a Verifier asks
// while the feed is lost, calls a good token active and a revoked, forged
// or foreign one not, and wants the service token.
func TestIntrospection(t *testing.T) {
	t.Parallel()
	authd := verifytest.NewServer(t)
	token := authd.Token(verify.Claims{Subject: "user-2"})
	if status, body := introspect(t, authd, authd.ServiceToken, token); status != 200 || !strings.HasPrefix(body, `{"active":true`) {
		t.Errorf("a good token: %d %s", status, body)
	}
	foreign := verifytest.NewServer(t).Token(verify.Claims{})
	otherAudience := authd.Token(verify.Claims{Audience: []string{"billing"}})
	for name, tok := range map[string]string{"junk": "x.y.z", "another server's": foreign, "another audience's": otherAudience} {
		if status, body := introspect(t, authd, authd.ServiceToken, tok); status != 200 || body != `{"active":false}` {
			t.Errorf("%s token: %d %s; want inactive", name, status, body)
		}
	}
	if status, _ := introspect(t, authd, "wrong", token); status != http.StatusUnauthorized {
		t.Errorf("without the service token: %d; want 401", status)
	}
	authd.RevokeSession(verifytest.SessionOf(token))
	if _, body := introspect(t, authd, authd.ServiceToken, token); body != `{"active":false}` {
		t.Errorf("a revoked session's token: %s; want inactive", body)
	}
	if verifytest.SessionOf("not a token") != "" {
		t.Error("SessionOf found a session in junk")
	}
}

// eventually fails the test unless check passes within 10 s (a Verifier's
// grace after losing the feed is about 2 s).
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for err := check(); err != nil; err = check() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %v after 10 s", what, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// is is nil when err is want (nil for nil), an error saying what it was
// otherwise: for eventually.
func is(err, want error) error {
	if want == nil && err == nil || want != nil && errors.Is(err, want) {
		return nil
	}
	return fmt.Errorf("%v, want %v", err, want)
}

// TestCutFeed: while the feed is cut a Verifier follows its Policy —
// introspection, which still answers and knows revocations made during
// the cut, or FailClosed's ErrUnavailable — and after restore it
// reconnects and takes what it missed.
func TestCutFeed(t *testing.T) {
	t.Parallel()
	authd := verifytest.NewServer(t)
	v := authd.Verifier(t)
	closed := authd.VerifierWith(t, func(o *verify.Options) { o.Policy = verify.FailClosed })
	good, revoked := authd.Token(verify.Claims{}), authd.Token(verify.Claims{})

	restore := authd.CutFeed()
	eventually(t, "the feed once cut", func() error {
		if v.Stats().FeedConnected || closed.Stats().FeedConnected {
			return errors.New("connected")
		}
		return nil
	})
	authd.RevokeSession(verifytest.SessionOf(revoked))
	eventually(t, "a token revoked during the cut, by introspection", func() error {
		_, err := v.Verify(context.Background(), revoked)
		return is(err, verify.ErrRevoked)
	})
	asked := v.Stats().Introspections
	if _, err := v.Verify(context.Background(), good); err != nil || v.Stats().Introspections == asked {
		t.Errorf("a good token during the cut: %v, introspections %d then %d; want it good, by introspection",
			err, asked, v.Stats().Introspections)
	}
	eventually(t, "FailClosed during the cut", func() error {
		_, err := closed.Verify(context.Background(), good)
		return is(err, verify.ErrUnavailable)
	})

	restore()
	restore() // a second call does nothing: the next cut still cuts
	again := authd.CutFeed()
	if status := feedStatus(t, authd); status != http.StatusServiceUnavailable {
		t.Errorf("the feed in a cut after a restore called twice: %d; want 503", status)
	}
	again()
	authd.Sync(t, v)
	authd.Sync(t, closed)
	if _, err := closed.Verify(context.Background(), good); err != nil {
		t.Errorf("FailClosed after restore, a good token: %v", err)
	}
	if _, err := closed.Verify(context.Background(), revoked); !errors.Is(err, verify.ErrRevoked) {
		t.Errorf("FailClosed after restore, a token revoked during the cut: %v; want ErrRevoked", err)
	}
}

// TestDown: with authd down, tokens are refused with ErrUnavailable once
// the grace has passed, whatever the Policy, and a new key's at once;
// after restore they verify again.
func TestDown(t *testing.T) {
	t.Parallel()
	authd := verifytest.NewServer(t)
	v := authd.Verifier(t)
	old := authd.Token(verify.Claims{})
	if _, err := v.Verify(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	restore := authd.Down()
	authd.RotateKey()
	rotated := authd.Token(verify.Claims{})
	eventually(t, "a new key's token while the JWKS is down", func() error {
		_, err := v.Verify(context.Background(), rotated) // ErrUnknownKey within a second of New's fetch
		return is(err, verify.ErrUnavailable)
	})
	eventually(t, "an old key's token while authd is down", func() error {
		_, err := v.Verify(context.Background(), old)
		return is(err, verify.ErrUnavailable)
	})
	if status, _ := introspect(t, authd, authd.ServiceToken, old); status != http.StatusServiceUnavailable {
		t.Errorf("introspection while authd is down: %d; want 503", status)
	}
	if resp, err := http.Get(authd.URL + "/.well-known/jwks.json"); err != nil {
		t.Errorf("the JWKS while authd is down: %v", err)
	} else if resp.Body.Close(); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("the JWKS while authd is down: %s; want 503", resp.Status)
	}
	restore()
	authd.Sync(t, v) // reconnected, though no revocation was made
	if !v.Stats().FeedConnected {
		t.Error("after restore and Sync the Verifier does not follow the feed")
	}
	if _, err := v.Verify(context.Background(), old); err != nil {
		t.Errorf("after restore and Sync, the old key's token: %v", err)
	}
	eventually(t, "after restore, the new key's token", func() error {
		_, err := v.Verify(context.Background(), rotated) // the JWKS refetched at verify's pace
		return is(err, nil)
	})
}

// TestRotateKey: after a rotation the new key signs, the JWKS serves both,
// and tokens of either verify and introspect as active.
func TestRotateKey(t *testing.T) {
	t.Parallel()
	authd := verifytest.NewServer(t)
	v := authd.Verifier(t)
	before := authd.Token(verify.Claims{})
	authd.RotateKey()
	after := authd.Token(verify.Claims{})
	old, err := v.Verify(context.Background(), before)
	if err != nil {
		t.Fatalf("the old key's token after the rotation: %v", err)
	}
	var rotated *verify.Claims
	eventually(t, "the new key's token", func() (err error) {
		rotated, err = v.Verify(context.Background(), after) // after a second: verify's JWKS pace
		return err
	})
	if old.KeyID == rotated.KeyID {
		t.Errorf("both tokens signed by %s; want the new key after RotateKey", old.KeyID)
	}
	for _, tok := range []string{before, after} {
		if _, body := introspect(t, authd, authd.ServiceToken, tok); !strings.HasPrefix(body, `{"active":true`) {
			t.Errorf("introspection of a token across the rotation: %s", body)
		}
	}
}

// TestSetClock: a Server on a test's fake clock dates its tokens and
// revocations by it, and so does a Verifier of its Options: a token made
// in 2020 verifies, a user's revocation dated by the fake clock refuses
// it and not a token made a second later, and it expires when the fake
// clock says so.
func TestSetClock(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	clock := time.Date(2020, 6, 1, 12, 0, 0, 0, time.UTC)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); defer mu.Unlock(); clock = clock.Add(d) }
	authd := verifytest.NewServer(t)
	authd.SetClock(now)
	v := authd.Verifier(t)

	token := authd.Token(verify.Claims{Subject: "user-3"})
	c, err := v.Verify(context.Background(), token)
	if err != nil || !c.IssuedAt.Equal(now()) {
		t.Fatalf("a token on the fake clock: %+v, %v; want issued at %v", c, err, now())
	}
	if _, body := introspect(t, authd, authd.ServiceToken, token); !strings.HasPrefix(body, `{"active":true`) {
		t.Errorf("introspection on the fake clock: %s", body)
	}
	advance(2 * time.Second)
	authd.RevokeUser("user-3")
	authd.Sync(t, v)
	if _, err := v.Verify(context.Background(), token); !errors.Is(err, verify.ErrRevoked) {
		t.Errorf("a token issued before the user's revocation: %v; want ErrRevoked", err)
	}
	advance(time.Second)
	later := authd.Token(verify.Claims{Subject: "user-3"})
	if _, err := v.Verify(context.Background(), later); err != nil {
		t.Errorf("a token issued after the user's revocation: %v", err)
	}
	advance(verifytest.TokenLifetime)
	if _, err := v.Verify(context.Background(), later); !errors.Is(err, verify.ErrExpired) {
		t.Errorf("a token past its lifetime on the fake clock: %v; want ErrExpired", err)
	}
}

// feedStatus is the status of a request for the feed.
func feedStatus(t *testing.T, authd *verifytest.Server) int {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // a stream's answer: its status is all we read
	req, _ := http.NewRequestWithContext(ctx, "GET", authd.URL+"/v1/auth/revocations", nil)
	req.Header.Set("Authorization", "Bearer "+authd.ServiceToken)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// fatalTB is a test whose Fatal ends only the goroutine that called it,
// and is recorded.
type fatalTB struct {
	testing.TB
	fatal chan string
}

func (f fatalTB) Fatal(args ...any) { f.fatal <- fmt.Sprint(args...); runtime.Goexit() }
func (f fatalTB) Fatalf(format string, args ...any) {
	f.fatal <- fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// TestSync: Sync fails at once during a cut, and after a restore waits
// for the Verifier to reconnect, though it missed no revocation (its
// Stats still said connected, the loss not yet seen).
func TestSync(t *testing.T) {
	t.Parallel()
	authd := verifytest.NewServer(t)
	v := authd.Verifier(t)
	before := v.Stats().Reconnects
	restore := authd.CutFeed()
	f := fatalTB{t, make(chan string, 1)}
	done := make(chan struct{})
	go func() { defer close(done); authd.Sync(f, v) }()
	select {
	case <-done: // a Fatal's message is sent before its Goexit closes done
		select {
		case msg := <-f.fatal:
			if !strings.Contains(msg, "during a cut") {
				t.Errorf("Sync during a cut failed with %q", msg)
			}
		default:
			t.Error("Sync during a cut passed")
		}
	case <-time.After(time.Second):
		t.Error("Sync during a cut did not fail at once")
	}
	restore()
	authd.Sync(t, v)
	if st := v.Stats(); !st.FeedConnected || st.Reconnects <= before {
		t.Errorf("after a cut, restore and Sync: connected %t, reconnects %d (%d before); want a reconnection",
			st.FeedConnected, st.Reconnects, before)
	}
}

// outputTB is a test whose output goes to a buffer.
type outputTB struct {
	testing.TB
	out *lockedBuffer
}

func (o outputTB) Output() io.Writer { return o.out }

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestVerifierLogsRefusals: a Verifier's log in the test's output says
// why Middleware refused a token, so that a test finds out why (a wrong
// Audience, say).
func TestVerifierLogsRefusals(t *testing.T) {
	t.Parallel()
	authd := verifytest.NewServer(t)
	out := &lockedBuffer{}
	v := authd.VerifierWith(outputTB{t, out}, func(o *verify.Options) { o.Audience = "billing" })
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/orders", nil)
	req.Header.Set("Authorization", "Bearer "+authd.Token(verify.Claims{}))
	v.Middleware(http.NotFoundHandler()).ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("a token of another audience: %d; want 401", rec.Code)
	}
	if log := out.String(); !strings.Contains(log, "token refused") || !strings.Contains(log, "wrong audience") {
		t.Errorf("the Verifier's log does not say why the token was refused:\n%s", log)
	}
}

// TestRevocationsAuthdCannotMake: an empty or overlong session id or
// subject, which authd never revokes and whose event verify would refuse
// (and the feed with it), panics at once rather than break the feed.
func TestRevocationsAuthdCannotMake(t *testing.T) {
	t.Parallel()
	authd := verifytest.NewServer(t)
	v := authd.Verifier(t)
	long := strings.Repeat("s", 129)
	for name, call := range map[string]func(){
		"RevokeSession(\"\")":      func() { authd.RevokeSession("") },
		"RevokeSession(129 bytes)": func() { authd.RevokeSession(long) },
		"RevokeUser(\"\")":         func() { authd.RevokeUser("") },
		"Token(a 129-byte sid)":    func() { authd.Token(verify.Claims{SessionID: long}) },
		"Token(scopes, no client)": func() { authd.Token(verify.Claims{Scopes: []string{"email"}}) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s did not panic", name)
				}
			}()
			call()
		}()
	}
	token := authd.Token(verify.Claims{})
	authd.RevokeSession(verifytest.SessionOf(token))
	authd.Sync(t, v) // the feed still works
	if _, err := v.Verify(context.Background(), token); !errors.Is(err, verify.ErrRevoked) {
		t.Errorf("a revoked token after the refused calls: %v; want ErrRevoked", err)
	}
}
