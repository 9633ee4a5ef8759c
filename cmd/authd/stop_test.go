package main

import (
	"context"
	"io"
	"maps"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd/internal/faultnet"
	"github.com/authd/authd/internal/syncbuf"
	"github.com/emersion/go-smtp"
	"github.com/jackc/pgx/v5"
)

// stopping is an App run on port 0 with its stop's times shortened.
type stopping struct {
	app    *App
	url    string
	log    *syncbuf.Buffer
	stop   context.CancelFunc // the signal
	done   chan error         // Run's error
	closed sync.Once
}

func runStopping(t *testing.T, env map[string]string, drain, stop time.Duration) *stopping {
	t.Helper()
	env["AUTHD_HTTP_ADDR"] = "127.0.0.1:0"
	env["AUTHD_REQUIRE_VERIFIED_EMAIL"] = "false"
	cfg := configOf(t, env)
	s := &stopping{log: &syncbuf.Buffer{}, done: make(chan error, 1)}
	s.app = NewApp(cfg, newLogger(cfg, s.log))
	s.app.drainTime, s.app.stopTime = drain, stop
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	if err := s.app.Open(ctx); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.app.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		err := <-s.done
		s.done <- err
		// A handler the stop left behind must end before the database
		// closes and the test's directory goes.
		s.app.requests.wait(time.Now().Add(20 * time.Second))
		s.close()
	})
	s.url = "http://" + s.app.Addr().String()
	return s
}

// close closes the App, once.
func (s *stopping) close() { s.closed.Do(func() { s.app.Close() }) }

func (s *stopping) post(t *testing.T, path, body string) (int, error) {
	t.Helper()
	resp, err := http.Post(s.url+path, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

const (
	stopAccount = `{"email":"stopping@example.org","password":"a sturdy passphrase","consent":true}`
	stopLogin   = `{"email":"stopping@example.org","password":"a sturdy passphrase"}`
)

// loginHeld runs on PostgreSQL: it registers an account, locks its row
// from a connection of its own and starts a login, which waits for the
// lock (a login's transaction takes it) while the mail sender, which never
// takes it, works on. It returns once the login's handler runs; release
// lets it go on.
func (s *stopping) loginHeld(t *testing.T, env map[string]string) (release func()) {
	t.Helper()
	if code, err := s.post(t, "/v1/auth/register", stopAccount); err != nil || code != http.StatusAccepted {
		t.Fatalf("register: %d %v", code, err)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, env["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM users WHERE email = 'stopping@example.org' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			tx.Rollback(ctx) //nolint:errcheck // the connection closes next
			conn.Close(ctx)
		})
	}
	t.Cleanup(release)
	go s.post(t, "/v1/auth/login", stopLogin) //nolint:errcheck // the stop closes its connection
	for deadline := time.Now().Add(10 * time.Second); s.app.requests.running() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the login never ran")
		}
	}
	return release
}

// runMigrated is runStopping on PostgreSQL, migrated first.
func runMigrated(t *testing.T, drain, stop time.Duration) (*stopping, map[string]string) {
	t.Helper()
	env := postgresEnv(t)
	if code, _, stderr := runCLI(t, env, "migrate", "up"); code != exitOK {
		t.Fatalf("migrate up: %s", stderr)
	}
	return runStopping(t, env, drain, stop), env
}

func loginSuccesses(t *testing.T, env map[string]string) int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, env["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM security_logs WHERE event_type = 'login_success'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// result waits up to limit for Run's error, and keeps it for the cleanup.
func (s *stopping) result(limit time.Duration) (done bool, err error) {
	select {
	case err := <-s.done:
		s.done <- err
		return true, err
	case <-time.After(limit):
		return false, nil
	}
}

// TestStopWaitsForRequestsPastTheDrain: both listeners close at once; a
// request still running when the stop's drain time ends has its
// connection closed, but Run waits for its handler — a login, with its
// session and its security-log row — before it returns and the database
// may close.
func TestStopWaitsForRequestsPastTheDrain(t *testing.T) {
	t.Parallel()
	s, env := runMigrated(t, time.Second, 20*time.Second)
	release := s.loginHeld(t, env)
	s.stop()
	for until := time.Now().Add(500 * time.Millisecond); ; time.Sleep(10 * time.Millisecond) {
		c, err := net.Dial("tcp", s.app.AdminAddr().String())
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(until) {
			t.Errorf("the admin listener still accepts during the public listener's drain")
			break
		}
	}
	if done, err := s.result(1500 * time.Millisecond); done { // past the drain
		t.Fatalf("Run returned (%v) while a request ran", err)
	}
	release()
	done, err := s.result(10 * time.Second)
	if !done {
		t.Fatal("Run did not return once the request ended")
	}
	if err == nil || !strings.Contains(err.Error(), "had their connections closed") {
		t.Errorf("Run: %v; want the requests cut short told", err)
	}
	if n := s.app.requests.running(); n != 0 {
		t.Fatalf("%d handlers still running as Run returned", n)
	}
	if n := loginSuccesses(t, env); n != 1 {
		t.Errorf("%d logins recorded, want the one in flight at the stop", n)
	}
	// Its access-log line says its status was never sent; the register's,
	// answered before the stop, does not.
	lines := map[string]string{}
	for l := range strings.Lines(s.log.String()) {
		for _, route := range []string{"POST /v1/auth/login", "POST /v1/auth/register"} {
			if strings.Contains(l, `route="`+route+`"`) {
				lines[route] = l
			}
		}
	}
	if l := lines["POST /v1/auth/login"]; !strings.Contains(l, " status=200 ") || !strings.Contains(l, " conn_closed=true") {
		t.Errorf("the login's access-log line %q; want status 200 and conn_closed", l)
	}
	if l := lines["POST /v1/auth/register"]; l == "" || strings.Contains(l, "conn_closed") {
		t.Errorf("the register's access-log line %q; want one, without conn_closed", l)
	}
}

// TestStopEndsAtItsDeadline: a request that outlasts the whole stop does not
// hold it: its flow is ended at the deadline (its transaction rolls back),
// Run returns saying so, and the database closes at once, though the lock
// the flow waited for is still held.
func TestStopEndsAtItsDeadline(t *testing.T) {
	t.Parallel()
	s, env := runMigrated(t, 50*time.Millisecond, 300*time.Millisecond)
	s.loginHeld(t, env)
	s.stop()
	done, err := s.result(8 * time.Second) // serve's lock wait is 10 s
	if !done {
		t.Fatal("Run did not return at the stop's deadline")
	}
	if err == nil || !strings.Contains(err.Error(), "were ended: 1") {
		t.Errorf("Run: %v; want the request ended told", err)
	} else if _, hint := explain(err); hint == "" {
		t.Errorf("Run: %v, without a hint", err)
	}
	if !strings.Contains(s.log.String(), "requests still running at the stop's deadline were ended") {
		t.Errorf("the log does not tell of it:\n%s", s.log.String())
	}
	closed := make(chan struct{})
	go func() { s.close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the database did not close: a flow still holds a connection")
	}
	if n := loginSuccesses(t, env); n != 0 {
		t.Errorf("%d logins recorded, want none: the flow ended at the deadline", n)
	}
}

// TestStopCutsTheMailInHand: a relay that never answers does not hold a
// stop past its deadline: the mail in hand is cut and queued again, not
// counted as the relay's failure.
func TestStopCutsTheMailInHand(t *testing.T) {
	t.Parallel()
	relay, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never greets
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := relay.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	env := sqliteEnv(t)
	env["AUTHD_SMTP_URL"] = "smtp://" + relay.Addr().String()
	s := runStopping(t, env, 50*time.Millisecond, 300*time.Millisecond)
	if code, err := s.post(t, "/v1/auth/register", stopAccount); err != nil || code != http.StatusAccepted {
		t.Fatalf("register: %d %v", code, err)
	}
	select {
	case c := <-accepted: // the welcome mail in hand
		defer c.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("the sender never reached the relay")
	}
	s.stop()
	done, err := s.result(10 * time.Second) // the client's own timeout is 15 s
	if !done {
		t.Fatal("Run did not return at the stop's deadline")
	}
	if err != nil {
		t.Errorf("Run: %v", err)
	}
	if log := s.log.String(); !strings.Contains(log, "cut short by the sender's stop") || strings.Contains(log, "will retry") {
		t.Errorf("the log does not tell of a cut send:\n%s", log)
	}
}

// TestStopShutdownDelay: with AUTHD_SHUTDOWN_DELAY, a stop first answers
// /readyz 503 while the listener still takes new connections and serves
// them, so that a load balancer stops sending requests before they would
// be refused; then the stop goes on as without it.
func TestStopShutdownDelay(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	env["AUTHD_SHUTDOWN_DELAY"] = "4s"
	s := runStopping(t, env, 5*time.Second, 20*time.Second)
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}} // a new connection each
	get := func(path string) (int, string) {
		resp, err := fresh.Get(s.url + path)
		if err != nil {
			t.Fatalf("GET %s during the shutdown delay: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, _ := get("/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz before the stop: %d", code)
	}
	s.stop()
	for until := time.Now().Add(time.Second); ; time.Sleep(5 * time.Millisecond) {
		code, body := get("/readyz")
		if code == http.StatusServiceUnavailable {
			if !strings.Contains(body, "shutting down") {
				t.Errorf("/readyz during the delay: %s; want it to say why", body)
			}
			break
		}
		if time.Now().After(until) {
			t.Fatalf("/readyz still %d after the stop began", code)
		}
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz during the shutdown delay: %d, want 200 (still serving)", code)
	}
	// A pooled client is told to close its connection, so that its next
	// request opens one a load balancer sends elsewhere.
	if resp, err := http.Get(s.url + "/healthz"); err != nil || !resp.Close {
		t.Errorf("a keep-alive request during the shutdown delay: %v; want its connection closed by the answer", err)
	} else {
		resp.Body.Close()
	}
	if code, err := s.post(t, "/v1/auth/register", stopAccount); err != nil || code != http.StatusAccepted {
		t.Errorf("a registration during the shutdown delay: %d %v, want 202", code, err)
	}
	done, err := s.result(10 * time.Second)
	if !done || err != nil {
		t.Errorf("Run after the delay: done %v, %v; want nil", done, err)
	}
	// A stop is no outage: its readiness probes are not logged as one.
	if log := s.log.String(); strings.Contains(log, "unavailable") || strings.Contains(log, "not ready") {
		t.Errorf("the stop's 503s were logged as an outage:\n%s", log)
	}
}

// TestShutdownDelayComesOutOfTheDrain: the drain ends drainTime after the
// signal whatever the shutdown delay, so the time flows have after it to
// finish is the same: a login released after the drain, before the
// deadline, still finishes.
func TestShutdownDelayComesOutOfTheDrain(t *testing.T) {
	t.Parallel()
	env := postgresEnv(t)
	if code, _, stderr := runCLI(t, env, "migrate", "up"); code != exitOK {
		t.Fatalf("migrate up: %s", stderr)
	}
	env["AUTHD_SHUTDOWN_DELAY"] = "2s"
	// The drain ends 3 s after the signal, the deadline at 6 s (were the
	// delay added to the drain, it would end at 5 s).
	s := runStopping(t, env, 3*time.Second, 6*time.Second)
	release := s.loginHeld(t, env)
	s.stop()
	time.Sleep(4 * time.Second)
	release()
	done, err := s.result(10 * time.Second)
	if !done || err == nil || !strings.Contains(err.Error(), "had their connections closed") {
		t.Errorf("Run: done %v, %v; want the login's connection closed at the drain's end, its flow finished", done, err)
	}
	if n := loginSuccesses(t, env); n != 1 {
		t.Errorf("%d logins recorded, want the one in flight", n)
	}
}

// TestServeFailureStopsTheOtherListener: a listener that fails ends Run
// with its error, and the other listener is shut down with it.
func TestServeFailureStopsTheOtherListener(t *testing.T) {
	t.Parallel()
	s := runStopping(t, sqliteEnv(t), time.Second, 5*time.Second)
	s.app.listener.Close() // the public listener fails
	done, err := s.result(10 * time.Second)
	if !done || err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("Run after its listener failed: done %v, %v; want its error", done, err)
	}
	if c, err := net.Dial("tcp", s.app.AdminAddr().String()); err == nil {
		c.Close()
		t.Errorf("the admin listener still accepts after the public one failed")
	}
}

// TestStopWithADatabaseNotAnswering: a database that stops answering as the
// stop ends (its connections stalled, new ones never answered) holds the
// stop only a few seconds past its deadline: the flow is ended, and closing
// the pool — which waits for each cut connection to hear the server's
// answer to its cancellation, 15 s — is bounded.
func TestStopWithADatabaseNotAnswering(t *testing.T) {
	t.Parallel()
	env := postgresEnv(t)
	if code, _, stderr := runCLI(t, env, "migrate", "up"); code != exitOK {
		t.Fatalf("migrate up: %s", stderr)
	}
	direct := maps.Clone(env) // the test's own connections skip the proxy
	p, proxied, err := faultnet.ListenURL(env["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	env["DATABASE_URL"] = proxied
	s := runStopping(t, env, 50*time.Millisecond, 500*time.Millisecond)
	s.loginHeld(t, direct)
	p.Stall()
	p.SetSilent(true)
	s.stop()
	if done, _ := s.result(10 * time.Second); !done {
		t.Fatal("Run did not return past the stop's deadline")
	}
	closed := make(chan struct{})
	go func() { s.close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(8 * time.Second): // the pool's own wait is 15 s
		t.Fatal("closing the database waited for the connections the stop cut")
	}
}

// TestStopRecordingASentMailOnADatabaseNotAnswering: a mail the relay
// accepted as the database stopped answering cannot be recorded as sent;
// the record is tried whatever the stop does, but not for the store's
// 10 s past the stop's deadline: for mailCutRecordTimeout (2 s) at most.
// The mail, left claimed, goes again once its lease lapses.
func TestStopRecordingASentMailOnADatabaseNotAnswering(t *testing.T) {
	t.Parallel()
	env := postgresEnv(t)
	if code, _, stderr := runCLI(t, env, "migrate", "up"); code != exitOK {
		t.Fatalf("migrate up: %s", stderr)
	}
	p, proxied, err := faultnet.ListenURL(env["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	env["DATABASE_URL"] = proxied
	sending, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	box := &inbox{hold: func() { once.Do(func() { close(sending) }); <-release }}
	relay := smtp.NewServer(box)
	relay.Domain, relay.AllowInsecureAuth = "localhost", true
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go relay.Serve(ln) //nolint:errcheck // ends with Close
	t.Cleanup(func() { relay.Close() })
	env["AUTHD_SMTP_URL"] = "smtp://" + ln.Addr().String()

	s := runStopping(t, env, 50*time.Millisecond, 500*time.Millisecond)
	if code, err := s.post(t, "/v1/auth/register", stopAccount); err != nil || code != http.StatusAccepted {
		t.Fatalf("register: %d %v", code, err)
	}
	select {
	case <-sending: // the claim and the link are in the database
	case <-time.After(10 * time.Second):
		t.Fatal("the verification mail was never sent")
	}
	p.Stall()
	p.SetSilent(true)
	close(release)
	for deadline := time.Now().Add(10 * time.Second); box.count() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the relay never took the mail")
		}
	}
	time.Sleep(100 * time.Millisecond) // the relay's answer reaches the sender, which records it
	s.stop()
	// The deadline at 0.5 s, the record given up at 2.5 s; without the
	// bound, at 10 s.
	if done, _ := s.result(7 * time.Second); !done {
		t.Fatal("Run waited past the stop's deadline for the record of a mail sent")
	}
	if log := s.log.String(); !strings.Contains(log, "may be sent again") {
		t.Errorf("no word of the mail sent but not recorded in the log:\n%s", log)
	}
}
