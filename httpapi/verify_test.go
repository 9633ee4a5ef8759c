package httpapi_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/httpapi"
	"github.com/authd/authd/postgres"
	"github.com/authd/authd/sqlite"
	"github.com/authd/authd/token"
	"github.com/authd/authd/verify"
)

// feedTransport is the resource server's HTTP transport: it counts
// introspection requests, records the Last-Event-ID of each feed
// connection, and can hold new feed connections back (a cut).
type feedTransport struct {
	base           http.RoundTripper
	introspections atomic.Int64

	mu       sync.Mutex
	resumes  []string      // Last-Event-ID of every feed connection, "" for none
	held     chan struct{} // while not nil, feed connections wait for it to close
	dialling chan struct{} // told of every feed connection attempt while held
}

func (f *feedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	switch r.URL.Path {
	case "/v1/auth/introspect":
		f.introspections.Add(1)
	case "/v1/auth/revocations":
		f.mu.Lock()
		held, dialling := f.held, f.dialling
		f.mu.Unlock()
		if held != nil {
			select {
			case dialling <- struct{}{}:
			default:
			}
			select {
			case <-held:
			case <-r.Context().Done():
				return nil, r.Context().Err()
			}
		}
		f.mu.Lock()
		f.resumes = append(f.resumes, r.Header.Get("Last-Event-ID"))
		f.mu.Unlock()
	}
	return f.base.RoundTrip(r)
}

// hold makes new feed connections wait until the returned release is
// called; dialling is told when one is waiting.
func (f *feedTransport) hold() (dialling <-chan struct{}, release func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	held, d := make(chan struct{}), make(chan struct{}, 1)
	f.held, f.dialling = held, d
	return d, func() {
		f.mu.Lock()
		f.held = nil
		f.mu.Unlock()
		close(held)
	}
}

// resourceServer is a service that protects /data with the verify package
// against e's authd.
type resourceServer struct {
	v         *verify.Verifier
	transport *feedTransport
	srv       *httptest.Server
}

func newResourceServer(t *testing.T, e *env, opts ...func(*verify.Options)) *resourceServer {
	t.Helper()
	rs := &resourceServer{transport: &feedTransport{base: http.DefaultTransport}}
	o := verify.Options{
		Issuer: "https://auth.example.org", Audience: "authd",
		JWKSURL:        e.srv.URL + "/.well-known/jwks.json",
		RevocationsURL: e.srv.URL + "/v1/auth/revocations",
		ServiceToken:   serviceToken,
		HTTPClient:     &http.Client{Transport: rs.transport, Timeout: 10 * time.Second},
		Now:            e.clock.Now,
	}
	for _, f := range opts {
		f(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := verify.New(ctx, o)
	if err != nil {
		t.Fatalf("verify.New: %v", err)
	}
	t.Cleanup(func() { v.Close() })
	rs.v = v
	// New asked introspection about a junk token (authd answered
	// {"active":false}, or New would have failed): not a token's call.
	rs.transport.introspections.Store(0)
	rs.srv = httptest.NewServer(v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := verify.ClaimsFrom(r.Context())
		fmt.Fprint(w, c.Subject)
	})))
	t.Cleanup(rs.srv.Close)
	return rs
}

// status is the resource server's answer to a request with the token.
func (rs *resourceServer) status(t *testing.T, tok string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", rs.srv.URL+"/data", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// refusedWithin polls, for at most a second, until the resource server
// refuses tok (a bounded wait for the feed, not a measure of its speed).
func (rs *resourceServer) refusedWithin(t *testing.T, what, tok string) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for {
		status := rs.status(t, tok)
		if status == http.StatusUnauthorized {
			return
		}
		if status != http.StatusOK || time.Now().After(deadline) {
			t.Errorf("%s: the resource server answers %d, want 401 within a second", what, status)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// healthy polls until the verifier has caught up with the feed again.
func (rs *resourceServer) healthy(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !rs.v.Stats().FeedConnected; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the verifier did not catch up with the feed: %+v", rs.v.Stats())
		}
	}
}

// TestResourceServerRefusesRevokedTokens: every way authd revokes reaches a
// resource server through the feed, with no introspection call.
func TestResourceServerRefusesRevokedTokens(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		rs := newResourceServer(t, e)
		const email = "rs@example.org"
		e.registerVerified(email, goodPassword)
		pw := goodPassword

		cases := []struct {
			name   string
			revoke func(access string)
			// relogin: the revocation leaves the account usable
			relogin bool
		}{
			{"logout", func(a string) { want(t, "logout", e.do("POST", "/v1/auth/logout", nil, bearer(a)...), 204, "") }, true},
			{"logout-all", func(a string) {
				want(t, "logout-all", e.do("POST", "/v1/auth/logout-all", nil, bearer(a)...), 204, "")
			}, true},
			{"password reset", func(string) {
				want(t, "forgot", e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": email}), 202, "")
				reset := tokenOf(t, e.mail.last(t, authd.MailPasswordReset, email))
				want(t, "reset", e.do("POST", "/v1/auth/password/reset",
					map[string]string{"token": reset, "new_password": "a reset passphrase"}), 204, "")
				pw = "a reset passphrase"
			}, true},
			{"admin lock", func(string) {
				want(t, "lock", e.admin("POST", "/v1/admin/users/"+e.user(email).ID.String()+"/lock", map[string]any{}), 204, "")
			}, false},
		}
		for _, c := range cases {
			a, _ := e.login(email, pw)
			other, _ := e.login(email, pw)
			if got := rs.status(t, a); got != 200 {
				t.Fatalf("%s: a fresh token answers %d, want 200", c.name, got)
			}
			c.revoke(a)
			rs.refusedWithin(t, c.name, a)
			if c.name != "logout" {
				rs.refusedWithin(t, c.name+", the other session", other)
			} else if got := rs.status(t, other); got != 200 {
				t.Errorf("logout: the other session answers %d, want 200", got)
			}
			if c.relogin {
				a, _ := e.login(email, pw)
				if got := rs.status(t, a); got != 200 {
					t.Errorf("after %s, a new login answers %d, want 200", c.name, got)
				}
			}
		}

		// Erasure, of another account.
		e.registerVerified("erase@example.org", goodPassword)
		a, _ := e.login("erase@example.org", goodPassword)
		if got := rs.status(t, a); got != 200 {
			t.Fatalf("erasure: a fresh token answers %d", got)
		}
		want(t, "erase", e.do("DELETE", "/v1/users/me", map[string]string{"password": goodPassword}, bearer(a)...), 204, "")
		rs.refusedWithin(t, "erasure", a)

		if n := rs.transport.introspections.Load(); n != 0 {
			t.Errorf("%d introspection calls, want none: the feed alone must tell", n)
		}
		if st := rs.v.Stats(); !st.FeedConnected || st.LastEventID == 0 || st.Reconnects != 0 {
			t.Errorf("stats %+v: want connected, events seen, no reconnection", st)
		}
	})
}

// TestFeedCutLosesNothing: revocations made while the feed is cut (server
// side, then held off) reach the resource server when it resumes with
// Last-Event-ID; during the cut the default policy asks introspection
// (after its grace of about 2 s).
func TestFeedCutLosesNothing(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		rs := newResourceServer(t, e)
		e.registerVerified("cut@example.org", goodPassword)
		before, _ := e.login("cut@example.org", goodPassword)
		want(t, "logout", e.do("POST", "/v1/auth/logout", nil, bearer(before)...), 204, "")
		rs.refusedWithin(t, "before the cut", before)
		seen := rs.v.Stats().LastEventID

		a1, _ := e.login("cut@example.org", goodPassword)
		a2, _ := e.login("cut@example.org", goodPassword)
		a3, _ := e.login("cut@example.org", goodPassword)
		dialling, release := rs.transport.hold()
		e.srv.CloseClientConnections() // the cut
		<-dialling                     // the verifier noticed and tries to reconnect
		want(t, "logout during the cut", e.do("POST", "/v1/auth/logout", nil, bearer(a1)...), 204, "")
		want(t, "revoke during the cut", e.do("DELETE", "/v1/users/me/sessions/"+jwtClaims(t, a2)["sid"].(string), nil,
			bearer(a3)...), 204, "")
		if st := rs.v.Stats(); st.FeedConnected {
			t.Errorf("during the cut: stats %+v, want not connected", st)
		}
		// Meanwhile the default policy, once its grace for a reconnection
		// (about 2 s) has passed, falls back to introspection.
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			got := rs.status(t, a1)
			if got == 401 {
				break
			}
			if got != 200 || time.Now().After(deadline) {
				t.Errorf("during the cut, a token revoked in it answers %d, want 401 (introspection) after the grace", got)
				break
			}
		}
		if got := rs.status(t, a3); got != 200 {
			t.Errorf("during the cut, a valid token answers %d, want 200 (introspection)", got)
		}
		during := rs.transport.introspections.Load()
		if during == 0 {
			t.Error("no introspection during the cut")
		}

		release()
		rs.healthy(t)
		rs.transport.mu.Lock()
		resumes := append([]string(nil), rs.transport.resumes...)
		rs.transport.mu.Unlock()
		if last, err := strconv.ParseInt(eventNumber(resumes[len(resumes)-1]), 10, 64); err != nil || last < seen {
			t.Errorf("resumed with Last-Event-ID %q, want at least %d", resumes[len(resumes)-1], seen)
		}
		for _, tok := range []string{a1, a2} {
			if got := rs.status(t, tok); got != 401 {
				t.Errorf("after resuming, a token revoked during the cut answers %d, want 401", got)
			}
		}
		if got := rs.status(t, a3); got != 200 {
			t.Errorf("after resuming, a valid token answers %d, want 200", got)
		}
		if n := rs.transport.introspections.Load(); n != during {
			t.Errorf("%d introspection calls after resuming, want none", n-during)
		}
		if st := rs.v.Stats(); st.Reconnects == 0 {
			t.Errorf("stats %+v: want a reconnection counted", st)
		}
	})
}

// restoreRevocationEvents makes the feed's table what a backup taken after
// its event last holds: the later events gone, the ids to come from last+1
// — ids that resource servers have already seen name other events.
func restoreRevocationEvents(t *testing.T, st authd.Store, last int64) {
	t.Helper()
	ctx := context.Background()
	var err error
	switch s := st.(type) {
	case *sqlite.Store:
		if _, err = s.DB().ExecContext(ctx, `DELETE FROM revocation_events WHERE id > ?`, last); err == nil {
			_, err = s.DB().ExecContext(ctx, `UPDATE sqlite_sequence SET seq = ? WHERE name = 'revocation_events'`, last)
		}
	case *postgres.Store:
		if _, err = s.Pool().Exec(ctx, `DELETE FROM revocation_events WHERE id > $1`, last); err == nil {
			// 0: a recreated table's sequence, whose next id is 1
			_, err = s.Pool().Exec(ctx, `SELECT setval('revocation_events_id_seq', greatest($1, 1), $1 > 0)`, last)
		}
	default:
		t.Fatalf("no restore for %T", st)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// threeLogouts opens a store, authd on it and a resource server, and logs
// three of email's sessions out (feed events 1..3), each refused by the
// resource server.
func threeLogouts(t *testing.T, open func(*testing.T) authd.Store, email string) (authd.Store, *env, *resourceServer) {
	t.Helper()
	st := open(t)
	e := newEnv(t, st)
	rs := newResourceServer(t, e)
	e.registerVerified(email, goodPassword)
	for range 3 {
		a, _ := e.login(email, goodPassword)
		want(t, "logout", e.do("POST", "/v1/auth/logout", nil, bearer(a)...), 204, "")
		rs.refusedWithin(t, "before the restore", a)
	}
	return st, e, rs
}

// TestLiveStreamAfterRestore: the feed's table is restored from a backup
// under a running authd, so new events get ids that open streams have
// already passed. Each stream starts over and sends them — the verifier's,
// and one opened with a plain numeric Last-Event-ID (an older client) —
// rather than wait for ids above its position while its heartbeats keep
// the resource server "healthy".
func TestLiveStreamAfterRestore(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		const email = "restore@example.org"
		st, e, rs := threeLogouts(t, open, email)
		plain := openStream(t, e.srv.URL, "Last-Event-ID", "3")
		for ev := plain.next(); ev["event"] != "synced"; ev = plain.next() {
		}

		restoreRevocationEvents(t, st, 1)
		a, _ := e.login(email, goodPassword)
		if got := rs.status(t, a); got != 200 {
			t.Fatalf("a fresh token: %d", got)
		}
		want(t, "logout", e.do("POST", "/v1/auth/logout", nil, bearer(a)...), 204, "") // event 2 again
		rs.refusedWithin(t, "a logout after the restore", a)
		sid := jwtClaims(t, a)["sid"].(string)
		for ev := plain.next(); !strings.Contains(ev["data"], sid); ev = plain.next() {
			if n, _ := strconv.Atoi(eventNumber(ev["id"])); n > 3 {
				t.Fatalf("the stream after 3 sent %v before the logout", ev)
			}
		}
	})
}

// TestResumeAfterRestoreLosesNothing: while a resource server is cut off,
// the feed's table is restored from a backup and new revocations pass the
// server's old position. Resuming with its Last-Event-ID (the event's id
// and mark) starts over, since that event is not in the table, so none of
// them is lost; a poller's since=cursor does the same.
func TestResumeAfterRestoreLosesNothing(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		const email = "resume@example.org"
		st, e, rs := threeLogouts(t, open, email)
		polled := e.do("GET", "/v1/auth/revocations?since=0", nil, bearer(serviceToken)...)
		cursor, _ := polled.body["cursor"].(string)
		if eventNumber(cursor) != "3" {
			t.Errorf("poll: %s, want a cursor at event 3", polled.raw)
		}

		var toks []string
		for range 3 {
			a, _ := e.login(email, goodPassword)
			toks = append(toks, a)
		}
		dialling, release := rs.transport.hold()
		e.srv.CloseClientConnections() // the cut
		<-dialling
		restoreRevocationEvents(t, st, 1)
		for _, a := range toks { // events 2..4: past the old position 3
			want(t, "logout during the cut", e.do("POST", "/v1/auth/logout", nil, bearer(a)...), 204, "")
		}
		release()
		rs.healthy(t)
		during := rs.transport.introspections.Load()
		for i, a := range toks {
			if got := rs.status(t, a); got != 401 {
				t.Errorf("after resuming, token %d, revoked after the restore, answers %d, want 401", i+1, got)
			}
		}
		if n := rs.transport.introspections.Load(); n != during {
			t.Errorf("%d introspection calls after resuming, want none", n-during)
		}

		r := e.do("GET", "/v1/auth/revocations?since="+cursor, nil, bearer(serviceToken)...)
		want(t, "poll since the old cursor", r, 200, "")
		for i, a := range toks {
			if sid := jwtClaims(t, a)["sid"].(string); !strings.Contains(r.raw, sid) {
				t.Errorf("poll since the old cursor %s: %s, want token %d's session (starting over)", cursor, r.raw, i+1)
			}
		}
	})
}

// eventNumber is the number in a feed event's SSE id ("<id>.<mark>").
func eventNumber(id string) string {
	n, _, _ := strings.Cut(id, ".")
	return n
}

// TestFeedCutFailClosed: with FailClosed, once the feed has been cut for
// longer than the verifier's short grace, every token is refused with 503
// — one issued during the cut too, since its session may be ended at once
// — and none is introspected; the feed back, they pass again.
func TestFeedCutFailClosed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	rs := newResourceServer(t, e, func(o *verify.Options) { o.Policy = verify.FailClosed })
	e.registerVerified("closed@example.org", goodPassword)
	old, _ := e.login("closed@example.org", goodPassword)
	if got := rs.status(t, old); got != 200 {
		t.Fatalf("before the cut: %d", got)
	}
	dialling, release := rs.transport.hold()
	e.srv.CloseClientConnections()
	<-dialling
	e.clock.Advance(verify.Leeway + 2*time.Second) // past any skew between authd and the verifier
	fresh, _ := e.login("closed@example.org", goodPassword)
	// Bounded poll: the verifier's grace for a reconnection is two seconds.
	for deadline := time.Now().Add(10 * time.Second); rs.status(t, fresh) != http.StatusServiceUnavailable; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("during the cut, a token issued after it is still accepted, want 503 once the grace has passed")
		}
	}
	if got := rs.status(t, old); got != http.StatusServiceUnavailable {
		t.Errorf("during the cut, a token issued before it answers %d, want 503", got)
	}
	if _, err := rs.v.Verify(context.Background(), old); !errors.Is(err, verify.ErrUnavailable) {
		t.Errorf("Verify during the cut: %v, want ErrUnavailable", err)
	}
	release()
	rs.healthy(t)
	for _, tok := range []string{old, fresh} {
		if got := rs.status(t, tok); got != 200 {
			t.Errorf("after the cut, a token answers %d, want 200", got)
		}
	}
	if n := rs.transport.introspections.Load(); n != 0 {
		t.Errorf("FailClosed made %d introspection calls, want none", n)
	}
}

// TestResourceServerKeyRotation: after `keys rotate`, tokens signed by the
// new key never meet an unknown kid, and tokens of the old key still pass.
func TestResourceServerKeyRotation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	rs := newResourceServer(t, e)
	e.registerVerified("rot@example.org", goodPassword)
	old, _ := e.login("rot@example.org", goodPassword)
	if _, err := rs.v.Verify(context.Background(), old); err != nil {
		t.Fatalf("old key: %v", err)
	}
	k, _, err := token.Rotate(e.keysDir, "EdDSA", e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.keys.Reload(); err != nil {
		t.Fatal(err)
	}
	for range 3 { // through the signing delay, past it
		e.clock.Advance(token.SigningDelay / 2)
		fresh, _ := e.login("rot@example.org", goodPassword)
		if _, err := rs.v.Verify(context.Background(), fresh); err != nil {
			t.Errorf("token of kid %v: %v", jwtHeader(t, fresh)["kid"], err)
		}
		if _, err := rs.v.Verify(context.Background(), old); err != nil && !errors.Is(err, verify.ErrExpired) {
			t.Errorf("old token: %v", err)
		}
	}
	fresh, _ := e.login("rot@example.org", goodPassword)
	if kid := jwtHeader(t, fresh)["kid"]; kid != k.ID {
		t.Fatalf("after the signing delay tokens are signed by %v, want the new key %s", kid, k.ID)
	}
}

// TestResourceServerRefusesBadTokens: a real authd's tokens for another
// audience, expired ones, and tampered ones are refused with the right
// error.
func TestResourceServerRefusesBadTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	rs := newResourceServer(t, e)
	e.registerVerified("bad@example.org", goodPassword)
	a, _ := e.login("bad@example.org", goodPassword)
	claims := authd.AccessClaims{JTI: "j", UserID: e.user("bad@example.org").ID, SessionID: authd.NewID(),
		IssuedAt: e.clock.Now(), ExpiresAt: e.clock.Now().Add(time.Minute)}
	otherAud, err := token.NewIssuer(e.keys, "https://auth.example.org", "billing").Issue(claims)
	if err != nil {
		t.Fatal(err)
	}
	otherIss, err := token.NewIssuer(e.keys, "https://evil.example.org", "authd").Issue(claims)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(a, ".")
	tampered := parts[0] + "." + parts[1] + "." + strings.Map(func(r rune) rune {
		if r == 'A' {
			return 'B'
		}
		return 'A'
	}, parts[2][:1]) + parts[2][1:]
	for _, c := range []struct {
		name, tok string
		want      error
	}{
		{"another audience", otherAud, verify.ErrAudience},
		{"another issuer", otherIss, verify.ErrIssuer},
		{"tampered signature", tampered, verify.ErrSignature},
		{"alg none", noneToken(t, a), verify.ErrAlgorithm},
		{"garbage", "not.a.token", verify.ErrMalformed},
	} {
		if _, err := rs.v.Verify(context.Background(), c.tok); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
		if got := rs.status(t, c.tok); got != 401 {
			t.Errorf("%s: resource server answers %d, want 401", c.name, got)
		}
	}
	if _, err := rs.v.Verify(context.Background(), a); err != nil {
		t.Fatalf("the good token: %v", err)
	}
	e.clock.Advance(e.cfg.AccessTokenTTL) // exactly at exp: expired (from the cache too)
	if _, err := rs.v.Verify(context.Background(), a); !errors.Is(err, verify.ErrExpired) {
		t.Errorf("at exp: %v, want ErrExpired", err)
	}
	if n := rs.transport.introspections.Load(); n != 0 {
		t.Errorf("%d introspection calls, want none", n)
	}
}

// noneToken is tok's claims under an unsigned "alg: none" header.
func noneToken(t testing.TB, tok string) string {
	h := jwtHeader(t, tok)
	h["alg"] = "none"
	b, _ := json.Marshal(h)
	return base64.RawURLEncoding.EncodeToString(b) + "." + strings.Split(tok, ".")[1] + "."
}

// TestFeedServedByAnyInstance: a resource server following instance B's
// feed learns of a logout at instance A (PostgreSQL LISTEN/NOTIFY wakes B's
// stream), with no introspection call.
func TestFeedServedByAnyInstance(t *testing.T) {
	t.Parallel()
	pg := instances(t, 2)
	keys := t.TempDir()
	a := newEnv(t, pg[0], withKeysDir(keys))
	b := newEnv(t, pg[1], withKeysDir(keys))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	listening := make(chan struct{}, 10)
	go pg[1].Listen(ctx, b.svc.Revocations().Apply, func(ctx context.Context) {
		b.svc.CatchUpRevocations(ctx)
		listening <- struct{}{}
	})
	<-listening
	rs := newResourceServer(t, b)
	a.registerVerified("any@example.org", goodPassword)
	access, _ := a.login("any@example.org", goodPassword)
	if got := rs.status(t, access); got != 200 {
		t.Fatalf("a fresh token of A answers %d at the resource server", got)
	}
	want(t, "logout at A", a.do("POST", "/v1/auth/logout", nil, bearer(access)...), 204, "")
	rs.refusedWithin(t, "logout at A, feed from B", access)
	if n := rs.transport.introspections.Load(); n != 0 {
		t.Errorf("%d introspection calls, want none", n)
	}
}

// TestStreamLifetimeIsNoGap: authd ends each stream after its lifetime; the
// verifier resumes at once, and even FailClosed never refuses a token for
// it, while revocations still arrive.
func TestStreamLifetimeIsNoGap(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	short := httptest.NewServer(httpapi.New(httpapi.Options{Service: e.svc, ServiceTokens: []string{serviceToken},
		JWKS:                   func() ([]byte, error) { return e.keys.JWKS(e.clock.Now(), e.cfg.AccessTokenTTL) },
		RevocationStreamMaxAge: 1100 * time.Millisecond})) // the verifier resumes at once after a second
	t.Cleanup(short.Close)
	rs := newResourceServer(t, e, func(o *verify.Options) {
		o.Policy = verify.FailClosed
		o.JWKSURL, o.RevocationsURL = short.URL+"/.well-known/jwks.json", short.URL+"/v1/auth/revocations"
	})
	e.registerVerified("life@example.org", goodPassword)
	old, _ := e.login("life@example.org", goodPassword)
	e.clock.Advance(time.Minute) // past the loss leeway, were a stream's end taken for a loss
	for rs.v.Stats().Reconnects < 2 {
		if got := rs.status(t, old); got != 200 {
			t.Fatalf("after %d stream ends, a valid token answers %d, want 200", rs.v.Stats().Reconnects, got)
		}
		time.Sleep(2 * time.Millisecond) // polling, not waiting for a state
	}
	want(t, "logout", e.do("POST", "/v1/auth/logout", nil, bearer(old)...), 204, "")
	rs.refusedWithin(t, "logout across stream ends", old)
}
