package main

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The ledger of the fault run: every request the load sent, every answer
// it got, and what the acknowledged answers promise (an account, a mail,
// a revoked session, a working refresh token), for the checks afterwards.

// attempt is one request and its answer.
type attempt struct {
	Op         string
	Instance   int
	Start, End time.Time
	Status     int    // 0: no answer (connection refused or reset, timeout)
	RetryAfter bool   // the answer had a Retry-After header
	Code       string // the problem's code, for an error
	Err        string // why there was no answer
}

// answered reports whether the attempt got a definitive answer: not a
// transport failure and not a 5xx (after which the request may or may not
// have taken effect).
func (a attempt) answered() bool { return a.Status != 0 && a.Status < 500 }

// session is a login the load holds: its latest tokens.
type session struct {
	email, id, access, refresh string
	refreshes                  int
}

// logout is an acknowledged (or in-doubt then refused) logout: its access
// token must be refused everywhere afterwards.
type logout struct {
	email, sessionID, access string
	inDoubt                  bool // the 204 was lost; a retry answered 401
}

type ledger struct {
	insts  []*instance
	sink   *smtpSink
	runID  string
	start  time.Time
	client *http.Client
	users  atomic.Int64

	mu             sync.Mutex
	attempts       []attempt
	registered     []string // 202
	unanswered     []string // register attempts without an answer
	verified       []string // 200
	verifyInDoubt  []string // the 200 was lost; a retry answered 400 and login then worked
	mailLate       int      // registrations whose mail had not come within the load's wait
	live           []*session
	logouts        []logout
	reuseAfterLoss int      // a refresh whose answer was lost, retried after the grace: reuse, session revoked
	unexpected     []string // definitive answers that contradict the ledger
}

func newLedger(insts []*instance, sink *smtpSink) *ledger {
	b := make([]byte, 4)
	crand.Read(b)
	return &ledger{insts: insts, sink: sink, runID: hex.EncodeToString(b),
		client: &http.Client{Timeout: 30 * time.Second,
			Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 256}}}
}

// prefix is the local part that every address of this run starts with.
func (l *ledger) prefix() string { return "fault-" + l.runID + "-" }

func (l *ledger) unexpectedf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.unexpected) < 1000 {
		l.unexpected = append(l.unexpected, fmt.Sprintf(format, args...))
	}
}

// user is one simulated person: an address and a client IP of its own (as
// X-Forwarded-For; the instances trust the loopback proxy), so the per-IP
// limits see many clients, as behind a real load balancer.
type user struct {
	l             *ledger
	email, ip, pw string
}

// send makes one attempt on instance inst and records it.
func (u *user) send(ctx context.Context, op string, inst int, method, path, body, bearer string) (attempt, []byte) {
	a := attempt{Op: op, Instance: inst, Start: time.Now()}
	var out []byte
	req, err := http.NewRequestWithContext(ctx, method, u.l.insts[inst].base+path, strings.NewReader(body))
	if err == nil {
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		req.Header.Set("X-Forwarded-For", u.ip)
		var resp *http.Response
		if resp, err = u.l.client.Do(req); err == nil {
			out, err = readAll(resp)
			a.Status, a.RetryAfter = resp.StatusCode, resp.Header.Get("Retry-After") != ""
			if resp.StatusCode >= 400 {
				var p struct{ Code string }
				json.Unmarshal(out, &p)
				a.Code = p.Code
			}
		}
	}
	a.End = time.Now()
	if err != nil {
		a.Status, a.Err, out = 0, err.Error(), nil
	}
	u.l.mu.Lock()
	u.l.attempts = append(u.l.attempts, a)
	u.l.mu.Unlock()
	return a, out
}

// opTimeout bounds how long one operation is retried: longer than any
// fault of the schedule, so that every operation ends with an answer.
const opTimeout = 2 * time.Minute

// call sends until a definitive answer (any status below 500), trying the
// instances alternately, as a client behind a load balancer would. lost
// reports whether an earlier attempt may have taken effect unseen.
func (u *user) call(ctx context.Context, op, method, path, body, bearer string) (a attempt, out []byte, lost bool) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	inst := rand.IntN(len(u.l.insts))
	for {
		a, out = u.send(ctx, op, inst, method, path, body, bearer)
		if a.answered() || ctx.Err() != nil {
			return a, out, lost
		}
		lost = true
		inst = (inst + 1) % len(u.l.insts)
		if !pause(ctx, a) {
			return a, out, lost
		}
	}
}

// pause waits before another attempt after a failed one: a second after a
// 503 with Retry-After (the instances answer 1), 200 ms after no answer.
// It reports false when ctx ended first.
func pause(ctx context.Context, a attempt) bool {
	wait := 200 * time.Millisecond
	if a.Status == http.StatusServiceUnavailable && a.RetryAfter {
		wait = time.Second
	}
	return sleep(ctx, wait)
}

// sleep waits for d, or less if ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func readAll(resp *http.Response) ([]byte, error) {
	defer resp.Body.Close()
	return io.ReadAll(io.LimitReader(resp.Body, 1<<20))
}

// runLoad runs clients users' journeys until load ends; an operation under
// way finishes (within opTimeout, on hard) so that its answer is in the
// ledger.
func (l *ledger) runLoad(load, hard context.Context, clients int) {
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for load.Err() == nil && hard.Err() == nil {
				l.journey(load, hard)
			}
		})
	}
	wg.Wait()
}

// journey is one user's life: register, follow the verification mail,
// log in, use and refresh the session a few times, and log out or leave
// the session live.
func (l *ledger) journey(load, ctx context.Context) {
	n := l.users.Add(1)
	u := &user{l: l, email: fmt.Sprintf("%s%d@example.org", l.prefix(), n), pw: "fault run passphrase " + l.runID,
		ip: fmt.Sprintf("10.%d.%d.%d", rand.IntN(256), rand.IntN(256), 1+rand.IntN(254))}
	body, _ := json.Marshal(map[string]any{"email": u.email, "password": u.pw, "consent": true})
	// One attempt: retrying an address whose first attempt may have
	// committed would turn its verification into a notice.
	a, _ := u.send(ctx, "register", rand.IntN(len(l.insts)), "POST", "/v1/auth/register", string(body), "")
	switch {
	case a.Status == http.StatusAccepted:
		l.mu.Lock()
		l.registered = append(l.registered, u.email)
		l.mu.Unlock()
	case !a.answered():
		l.mu.Lock()
		l.unanswered = append(l.unanswered, u.email)
		l.mu.Unlock()
		pause(load, a) // as a client would, rather than spin through addresses
		return
	default:
		l.unexpectedf("register %s: %d %s", u.email, a.Status, a.Code)
		return
	}
	if load.Err() != nil {
		return
	}

	// The verification mail, normally there within milliseconds; one
	// claimed by a killed instance waits out its lease, and the checks
	// wait for it, not the load.
	wait, cancel := context.WithTimeout(ctx, 20*time.Second)
	token := l.sink.latestToken(wait, u.email)
	cancel()
	if token == "" {
		l.mu.Lock()
		l.mailLate++
		l.mu.Unlock()
		return
	}
	a, _, lost := u.call(ctx, "verify", "POST", "/v1/auth/verify-email", `{"token":"`+token+`"}`, "")
	switch {
	case a.Status == http.StatusOK:
		l.mu.Lock()
		l.verified = append(l.verified, u.email)
		l.mu.Unlock()
	case a.Status == http.StatusBadRequest && lost:
		// The lost attempt may have used the token; the login says.
		l.mu.Lock()
		l.verifyInDoubt = append(l.verifyInDoubt, u.email)
		l.mu.Unlock()
	default:
		l.unexpectedf("verify-email %s: %d %s (lost attempts before: %v)", u.email, a.Status, a.Code, lost)
		return
	}

	s := l.login(ctx, u)
	if s == nil {
		return
	}
	for range 2 + rand.IntN(3) {
		if !l.me(ctx, u, s) || !l.refresh(ctx, u, s) {
			return
		}
	}
	if rand.IntN(2) == 0 || load.Err() != nil {
		l.mu.Lock()
		l.live = append(l.live, s)
		l.mu.Unlock()
		return
	}
	a, _, lost = u.call(ctx, "logout", "POST", "/v1/auth/logout", "", s.access)
	switch {
	case a.Status == http.StatusNoContent || (a.Status == http.StatusUnauthorized && lost):
		l.mu.Lock()
		l.logouts = append(l.logouts, logout{email: u.email, sessionID: s.id, access: s.access, inDoubt: a.Status != http.StatusNoContent})
		l.mu.Unlock()
	default:
		l.unexpectedf("logout %s: %d %s", u.email, a.Status, a.Code)
	}
}

func (l *ledger) login(ctx context.Context, u *user) *session {
	body, _ := json.Marshal(map[string]string{"email": u.email, "password": u.pw, "device_info": "authd-load fault run"})
	a, out, _ := u.call(ctx, "login", "POST", "/v1/auth/login", string(body), "")
	var p struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		SessionID    string `json:"session_id"`
	}
	if a.Status != http.StatusOK || json.Unmarshal(out, &p) != nil || p.AccessToken == "" {
		l.unexpectedf("login %s: %d %s", u.email, a.Status, a.Code)
		return nil
	}
	return &session{email: u.email, id: p.SessionID, access: p.AccessToken, refresh: p.RefreshToken}
}

func (l *ledger) me(ctx context.Context, u *user, s *session) bool {
	a, _, _ := u.call(ctx, "me", "GET", "/v1/users/me", "", s.access)
	if a.Status != http.StatusOK {
		l.unexpectedf("me %s (session %s): %d %s", u.email, s.id, a.Status, a.Code)
		return false
	}
	return true
}

func (l *ledger) refresh(ctx context.Context, u *user, s *session) bool {
	a, out, lost := u.call(ctx, "refresh", "POST", "/v1/auth/refresh", `{"refresh_token":"`+s.refresh+`"}`, "")
	var p struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	switch {
	case a.Status == http.StatusOK && json.Unmarshal(out, &p) == nil && p.RefreshToken != "":
		s.access, s.refresh = p.AccessToken, p.RefreshToken
		s.refreshes++
		return true
	case a.Status == http.StatusUnauthorized && lost:
		// A lost answer whose rotation committed, retried after the
		// grace window: reuse, the session is revoked (SPEC 6.4).
		l.mu.Lock()
		l.reuseAfterLoss++
		l.mu.Unlock()
	default:
		l.unexpectedf("refresh %s (session %s): %d %s", u.email, s.id, a.Status, a.Code)
	}
	return false
}
