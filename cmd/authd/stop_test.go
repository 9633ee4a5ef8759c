package main

import (
	"context"
	"database/sql"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd/internal/syncbuf"
)

// stopping is an App run on port 0 with its stop's times shortened.
type stopping struct {
	app  *App
	url  string
	log  *syncbuf.Buffer
	stop context.CancelFunc // the signal
	done chan error         // Run's error
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
		<-s.done
		// A handler the stop left behind must end before the database
		// closes and the test's directory goes.
		s.app.requests.wait(time.Now().Add(20 * time.Second))
		s.app.Close()
	})
	s.url = "http://" + s.app.Addr().String()
	return s
}

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

// holdWriteLock takes the SQLite database's write lock from a connection of
// its own, as another process would, until the returned func is called.
func holdWriteLock(t *testing.T, env map[string]string) (release func()) {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(env["AUTHD_DATA_DIR"], "authd.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	released := false
	release = func() {
		if !released {
			released = true
			conn.ExecContext(context.Background(), "ROLLBACK") //nolint:errcheck // the connection closes next
			conn.Close()
			db.Close()
		}
	}
	t.Cleanup(release)
	return release
}

// loginHeld registers an account, takes the write lock and starts a login,
// which waits for it; it returns once the login's handler runs.
func (s *stopping) loginHeld(t *testing.T, env map[string]string) (release func()) {
	t.Helper()
	if code, err := s.post(t, "/v1/auth/register", stopAccount); err != nil || code != http.StatusAccepted {
		t.Fatalf("register: %d %v", code, err)
	}
	release = holdWriteLock(t, env)
	go s.post(t, "/v1/auth/login", stopLogin) //nolint:errcheck // the stop closes its connection
	for deadline := time.Now().Add(10 * time.Second); s.app.requests.running() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the login never ran")
		}
	}
	return release
}

func loginSuccesses(t *testing.T, env map[string]string) int {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(env["AUTHD_DATA_DIR"], "authd.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM security_logs WHERE event_type = 'login_success'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestStopWaitsForRequestsPastTheDrain: a request still running when the
// stop's drain time ends has its connection closed, but Run waits for its
// handler — a login, with its session and its security-log row — before it
// returns and the database may close.
func TestStopWaitsForRequestsPastTheDrain(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	s := runStopping(t, env, 50*time.Millisecond, 20*time.Second)
	release := s.loginHeld(t, env)
	s.stop()
	select {
	case err := <-s.done:
		t.Fatalf("Run returned (%v) while a request ran", err)
	case <-time.After(300 * time.Millisecond): // six drain times
	}
	release()
	err := <-s.done
	s.done <- err // for the cleanup
	if err == nil || !strings.Contains(err.Error(), "had their connections closed") {
		t.Errorf("Run: %v; want the requests cut short told", err)
	}
	if n := s.app.requests.running(); n != 0 {
		t.Fatalf("%d handlers still running as Run returned", n)
	}
	if n := loginSuccesses(t, env); n != 1 {
		t.Errorf("%d logins recorded, want the one in flight at the stop", n)
	}
}

// TestStopEndsAtItsDeadline: a request that outlasts the whole stop does not
// hold it: Run returns at the deadline, saying so.
func TestStopEndsAtItsDeadline(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	s := runStopping(t, env, 50*time.Millisecond, 300*time.Millisecond)
	defer s.loginHeld(t, env)()
	s.stop()
	var err error
	select {
	case err = <-s.done:
		s.done <- err // for the cleanup
	case <-time.After(8 * time.Second): // the lock's busy timeout is 10 s
		t.Fatal("Run did not return at the stop's deadline")
	}
	if err == nil || !strings.Contains(err.Error(), "1 requests still running") {
		t.Errorf("Run: %v; want the request left running told", err)
	}
	if !strings.Contains(s.log.String(), "requests still running at the stop's deadline") {
		t.Errorf("the log does not tell of it:\n%s", s.log.String())
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
	select {
	case err := <-s.done:
		s.done <- err
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second): // the client's own timeout is 15 s
		t.Fatal("Run did not return at the stop's deadline")
	}
	if log := s.log.String(); !strings.Contains(log, "cut short by the sender's stop") || strings.Contains(log, "will retry") {
		t.Errorf("the log does not tell of a cut send:\n%s", log)
	}
}
