package httpapi_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
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
	"github.com/authd/authd/internal/syncbuf"
	"github.com/authd/authd/token"
	"github.com/google/uuid"
)

// TestEndingNoSessionsPublishesNothing: ending a user's sessions when the
// user has none (an administrator's revocation of an account never signed
// in) ends nothing, and publishes nothing to the revocation feed, which
// every resource server reads and keeps.
func TestEndingNoSessionsPublishesNothing(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.registerVerified("idle.account@example.org", goodPassword)
		if err := e.svc.RevokeUserSessions(t.Context(), authd.Client{}, e.user("idle.account@example.org").ID); err != nil {
			t.Fatal(err)
		}
		r := e.do("GET", "/v1/auth/revocations?since=0", nil, bearer(serviceToken)...)
		want(t, "feed", r, 200, "")
		if evs, _ := r.body["events"].([]any); len(evs) != 0 {
			t.Errorf("feed %s; want no events", r.raw)
		}
	})
}

// TestRevocationFeedJSON: the polling form of the feed — who may read it,
// what it answers for each revocation, paging by since, and bad input.
func TestRevocationFeedJSON(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		svc := bearer(serviceToken)
		want(t, "no token", e.do("GET", "/v1/auth/revocations?since=0", nil), 401, "invalid_token")
		want(t, "a user's token", e.do("GET", "/v1/auth/revocations?since=0", nil, bearer(adminToken)...), 401, "invalid_token")
		for _, q := range []string{"since=-1", "since=x", "since=99999999999999999999", "since=1.", "since=1.XYZ", "since=.ab", "since=1.5", "since=1.a", "since=00.0",
			"since=1.0123456789abcde", "since=1.0123456789abcdef0", "since=1.0123456789ABCDEF", "since=1.0123456789abcdeg", "format=xml"} {
			want(t, q, e.do("GET", "/v1/auth/revocations?"+q, nil, svc...), 400, "validation_failed")
		}
		bad := e.do("GET", "/v1/auth/revocations?format=json", nil, append(svc, "Last-Event-ID", "1e3")...)
		want(t, "bad Last-Event-ID", bad, 400, "validation_failed")
		if strings.Contains(bad.raw, "body") || !strings.Contains(bad.raw, `"field":"Last-Event-ID"`) {
			t.Errorf("a bad Last-Event-ID: %s; want it named, not the body blamed", bad.raw)
		}

		empty := e.do("GET", "/v1/auth/revocations?since=0", nil, svc...)
		want(t, "empty feed", empty, 200, "")
		if empty.raw != `{"events":[],"last_id":0,"cursor":"0","more":false}`+"\n" {
			t.Errorf("empty feed: %s", empty.raw)
		}
		// A position the empty table does not hold starts over: the cursor
		// says so, rather than hand the position back as if it were current.
		if r := e.do("GET", "/v1/auth/revocations?since=999999", nil, svc...); r.raw != empty.raw {
			t.Errorf("empty feed since 999999: %s; want %s", r.raw, empty.raw)
		}

		e.registerVerified("feed@example.org", goodPassword)
		user := e.user("feed@example.org").ID.String()
		a1, _ := e.login("feed@example.org", goodPassword)
		a2, _ := e.login("feed@example.org", goodPassword)
		want(t, "logout", e.do("POST", "/v1/auth/logout", nil, bearer(a1)...), 204, "")
		loggedOut := e.clock.Now()
		e.clock.Advance(time.Minute)
		want(t, "logout-all", e.do("POST", "/v1/auth/logout-all", nil, bearer(a2)...), 204, "")

		r := e.do("GET", "/v1/auth/revocations?format=json", nil, svc...)
		want(t, "feed", r, 200, "")
		evs, _ := r.body["events"].([]any)
		if len(evs) != 3 {
			t.Fatalf("feed: %s; want 3 events", r.raw)
		}
		ev := func(i int) map[string]any { return evs[i].(map[string]any) }
		// exp assumes the longest access-token lifetime (24 h), not the
		// configured one, which may have been longer for tokens still valid.
		exp := loggedOut.Add(token.MaxAccessTokenTTL + 30*time.Second).Unix()
		if ev(0)["sid"] != jwtClaims(t, a1)["sid"] || ev(0)["exp"] != float64(exp) || ev(0)["sub"] != nil {
			t.Errorf("logout event %v, want sid of the session and exp %d", ev(0), exp)
		}
		if ev(1)["sid"] != jwtClaims(t, a2)["sid"] {
			t.Errorf("logout-all session event %v, want the sid of the other session", ev(1))
		}
		if ev(2)["sub"] != user || ev(2)["before"] != float64(loggedOut.Add(time.Minute).Unix()) || ev(2)["sid"] != nil {
			t.Errorf("logout-all user event %v, want sub %s and before the logout-all", ev(2), user)
		}
		if r.body["last_id"] != ev(2)["id"] || r.body["more"] != false {
			t.Errorf("last_id %v more %v, want %v false", r.body["last_id"], r.body["more"], ev(2)["id"])
		}
		since := e.do("GET", "/v1/auth/revocations?since="+jsonNumber(ev(0)["id"]), nil, append(svc, "Accept", "application/json")...)
		if got, _ := since.body["events"].([]any); len(got) != 2 {
			t.Errorf("since the first: %s, want the other two", since.raw)
		}

		// A position beyond every event (a database since recreated) starts over.
		beyond := e.do("GET", "/v1/auth/revocations?since=999999", nil, svc...)
		if got, _ := beyond.body["events"].([]any); len(got) != 3 {
			t.Errorf("since beyond the last event: %s, want all three again", beyond.raw)
		}

		// Past the configured lifetime, events are still served: a token
		// issued under an earlier, longer one may still be valid.
		e.clock.Advance(e.cfg.AccessTokenTTL + time.Minute)
		if r := e.do("GET", "/v1/auth/revocations?since=0", nil, svc...); strings.Contains(r.raw, `"events":[]`) {
			t.Errorf("past the configured access-token lifetime: %s, want the events still served", r.raw)
		}
		// Once every token they can affect has expired, they are not.
		e.clock.Advance(token.MaxAccessTokenTTL)
		if r := e.do("GET", "/v1/auth/revocations?since=0", nil, svc...); !strings.Contains(r.raw, `"events":[]`) {
			t.Errorf("after expiry: %s, want no events", r.raw)
		}
	})
}

func jsonNumber(v any) string { f, _ := v.(float64); return strconv.FormatFloat(f, 'f', -1, 64) }

// sse is a client's view of one event stream.
type sse struct {
	t      *testing.T
	resp   *http.Response
	lines  *bufio.Scanner
	cancel context.CancelFunc
}

// openStream opens the feed as an EventSource would.
func openStream(t *testing.T, base string, headers ...string) *sse {
	t.Helper()
	// Bounded so that a broken stream fails the test instead of hanging it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/auth/revocations", nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+serviceToken)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	s := &sse{t: t, resp: resp, lines: bufio.NewScanner(resp.Body), cancel: cancel}
	t.Cleanup(s.close)
	return s
}

func (s *sse) close() { s.cancel(); s.resp.Body.Close() }

// next returns the next event's fields (comments skipped).
func (s *sse) next() map[string]string {
	s.t.Helper()
	ev, ok := s.tryNext()
	if !ok {
		s.t.Fatalf("the stream ended: %v", s.lines.Err())
	}
	return ev
}

// tryNext is next, false when the stream ends first.
func (s *sse) tryNext() (map[string]string, bool) {
	ev := map[string]string{}
	for s.lines.Scan() {
		line := s.lines.Text()
		if line == "" {
			if len(ev) > 0 {
				return ev, true
			}
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		k, v, _ := strings.Cut(line, ": ")
		ev[k] = v
	}
	return nil, false
}

// TestRevocationFeedStream: the stream sends the backlog, "synced", then
// each revocation as it commits; a reconnection with Last-Event-ID gets
// only what followed; streams beyond the bound get 503.
func TestRevocationFeedStream(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.registerVerified("stream@example.org", goodPassword)
		a1, _ := e.login("stream@example.org", goodPassword)
		a2, _ := e.login("stream@example.org", goodPassword)
		want(t, "logout", e.do("POST", "/v1/auth/logout", nil, bearer(a1)...), 204, "")

		s := openStream(t, e.srv.URL)
		if ct := s.resp.Header.Get("Content-Type"); s.resp.StatusCode != 200 || ct != "text/event-stream" {
			t.Fatalf("stream: %d %s", s.resp.StatusCode, ct)
		}
		// A proxy (nginx) that buffered the stream would hold revocations
		// back from the resource servers until its buffer filled.
		if got := s.resp.Header.Get("X-Accel-Buffering"); got != "no" {
			t.Errorf("stream: X-Accel-Buffering %q, want no", got)
		}
		if ev := s.next(); ev["retry"] == "" {
			t.Errorf("first event %v, want a retry delay", ev)
		}
		backlog := s.next()
		if !strings.Contains(backlog["data"], jwtClaims(t, a1)["sid"].(string)) || backlog["id"] == "" {
			t.Errorf("backlog event %v, want the logout", backlog)
		}
		// The announced heartbeat is 5 s: a verifier takes three silent ones
		// for a dead connection, accepting revoked tokens meanwhile (README).
		if ev := s.next(); ev["event"] != "synced" || ev["data"] != `{"last_id":`+eventNumber(backlog["id"])+`,"heartbeat_ms":5000}` {
			t.Errorf("after the backlog %v, want synced at %s with a 5 s heartbeat", ev, backlog["id"])
		}
		want(t, "logout", e.do("POST", "/v1/auth/logout", nil, bearer(a2)...), 204, "")
		live := s.next()
		if !strings.Contains(live["data"], jwtClaims(t, a2)["sid"].(string)) || eventNumber(live["id"]) <= eventNumber(backlog["id"]) {
			t.Errorf("live event %v, want the second logout after %s", live, backlog["id"])
		}

		resumed := openStream(t, e.srv.URL, "Last-Event-ID", backlog["id"])
		resumed.next() // retry
		if ev := resumed.next(); ev["id"] != live["id"] {
			t.Errorf("resumed after %s: %v, want only event %s", backlog["id"], ev, live["id"])
		}

		// One stream allowed: a second one is 503 with Retry-After. An idle
		// stream sends heartbeats.
		one := httptest.NewServer(httpapi.New(httpapi.Options{Service: e.svc, ServiceTokens: []string{serviceToken},
			MaxRevocationStreams: 1, RevocationHeartbeat: time.Millisecond}))
		t.Cleanup(one.Close) // after the streams' cleanups, which run first
		first := openStream(t, one.URL)
		for first.lines.Scan() && first.lines.Text() != ": heartbeat" {
		}
		if first.lines.Text() != ": heartbeat" {
			t.Errorf("an idle stream ended without a heartbeat: %v", first.lines.Err())
		}
		extra := openStream(t, one.URL)
		if extra.resp.StatusCode != 503 || extra.resp.Header.Get("Retry-After") == "" {
			t.Errorf("a stream beyond the bound: %d, Retry-After %q; want 503 with Retry-After",
				extra.resp.StatusCode, extra.resp.Header.Get("Retry-After"))
		}
	})
}

// TestRevocationStreamsPerToken: with several service tokens, one holds at
// most half of the instance's streams (a resource server leaking verifiers
// must not leave the others none); the others still open theirs.
func TestRevocationStreamsPerToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	const other = "another-service-token-0123456789abcdef"
	logs := &syncbuf.Buffer{}
	four := httptest.NewServer(httpapi.New(httpapi.Options{Service: e.svc, ServiceTokens: []string{serviceToken, other},
		MaxRevocationStreams: 4, Logger: slog.New(slog.NewTextHandler(logs, nil))}))
	t.Cleanup(four.Close)
	for i := range 2 {
		if s := openStream(t, four.URL); s.resp.StatusCode != 200 {
			t.Fatalf("stream %d of the first token: %d", i+1, s.resp.StatusCode)
		}
	}
	if s := openStream(t, four.URL); s.resp.StatusCode != 503 || s.resp.Header.Get("Retry-After") == "" {
		t.Errorf("a third stream of one token (of 4 for two tokens): %d; want 503 with Retry-After", s.resp.StatusCode)
	}
	if !strings.Contains(logs.String(), "one service token holds its share") {
		t.Errorf("the refusal is not logged: %s", logs.String())
	}
	for i := range 2 {
		if s := openStream(t, four.URL, "Authorization", "Bearer "+other); s.resp.StatusCode != 200 {
			t.Errorf("stream %d of the other token: %d; want 200", i+1, s.resp.StatusCode)
		}
	}
}

// TestRevocationStreamsBoundAcrossTokens: the instance's bound holds for
// every token's streams together, not only for each token's share: with
// one stream allowed, another token's stream is 503 with Retry-After while
// the first is open.
func TestRevocationStreamsBoundAcrossTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	const other = "another-service-token-0123456789abcdef"
	one := httptest.NewServer(httpapi.New(httpapi.Options{Service: e.svc, ServiceTokens: []string{serviceToken, other},
		MaxRevocationStreams: 1}))
	t.Cleanup(one.Close) // after the streams' cleanups, which run first
	if s := openStream(t, one.URL); s.resp.StatusCode != 200 {
		t.Fatalf("the only stream: %d, want 200", s.resp.StatusCode)
	}
	// Retry-After 5, as the refusal says: not the one second of any 503,
	// which would have every refused resource server back at once.
	if s := openStream(t, one.URL, "Authorization", "Bearer "+other); s.resp.StatusCode != 503 || s.resp.Header.Get("Retry-After") != "5" {
		t.Errorf("another token's stream beyond the instance's bound: %d, Retry-After %q; want 503 with Retry-After 5",
			s.resp.StatusCode, s.resp.Header.Get("Retry-After"))
	}
}

// TestRevocationFeedHead: HEAD answers the headers without streaming, so
// it holds no stream slot (one allowed here: a stream still opens after).
func TestRevocationFeedHead(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	one := httptest.NewServer(httpapi.New(httpapi.Options{Service: e.svc, ServiceTokens: []string{serviceToken},
		MaxRevocationStreams: 1}))
	// A streaming HEAD would hold its connection and never end by itself:
	// bound the client, and cut the connections before closing.
	t.Cleanup(func() { one.CloseClientConnections(); one.Close() })
	client := &http.Client{Timeout: 10 * time.Second}
	for accept, want := range map[string]string{
		"text/event-stream":                "text/event-stream",
		"application/json":                 "application/json",
		"":                                 "application/json",
		"Text/Event-Stream; charset=utf-8": "text/event-stream",
		"application/json, text/event-stream;q=0.5":   "text/event-stream",
		"text/event-stream;q=0":                       "application/json", // "not acceptable" (RFC 9110 §12.5.1)
		"text/event-stream; q=0.0, application/json":  "application/json",
		"application/x-not-text/event-stream":         "application/json",
		"text/event-streamer, application/json;q=0.9": "application/json",
	} {
		req, _ := http.NewRequest("HEAD", one.URL+"/v1/auth/revocations", nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		req.Header.Set("Authorization", "Bearer "+serviceToken)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), want) {
			t.Errorf("HEAD with Accept %q: %d %s, want %s", accept, resp.StatusCode, resp.Header.Get("Content-Type"), want)
		}
	}
	if s := openStream(t, one.URL); s.resp.StatusCode != 200 {
		t.Errorf("a stream after HEAD requests: %d, want 200 (HEAD must not hold the only slot)", s.resp.StatusCode)
	}
}

// stuckStore is a store whose revocation-feed reads never answer once
// stuck (the service's start-up load reads them too).
type stuckStore struct {
	authd.Store
	stuck atomic.Bool
}

func (s *stuckStore) RevocationEvents(ctx context.Context, after int64, now time.Time, limit int) ([]authd.RevocationEvent, error) {
	if !s.stuck.Load() {
		return s.Store.RevocationEvents(ctx, after, now, limit)
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

func (s *stuckStore) RevocationEventsFrom(ctx context.Context, seen int64, now time.Time, limit int) ([]authd.RevocationEvent, error) {
	if !s.stuck.Load() {
		return s.Store.RevocationEventsFrom(ctx, seen, now, limit)
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

func (s *stuckStore) LastRevocationEventID(ctx context.Context) (int64, error) {
	if !s.stuck.Load() {
		return s.Store.LastRevocationEventID(ctx)
	}
	<-ctx.Done()
	return 0, ctx.Err()
}

// TestRevocationFeedStuckDatabase: when the database does not answer the
// feed's first read, the stream and the poll both answer 503 with
// Retry-After (the stream holds its slot no longer), instead of hanging.
func TestRevocationFeedStuckDatabase(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		store := &stuckStore{Store: open(t)}
		e := newEnv(t, store)
		store.stuck.Store(true)
		srv := httptest.NewServer(httpapi.New(httpapi.Options{Service: e.svc, ServiceTokens: []string{serviceToken},
			MaxRevocationStreams: 1, RevocationReadTimeout: 20 * time.Millisecond}))
		t.Cleanup(srv.Close)
		for _, h := range [][]string{nil, {"Last-Event-ID", "7"}, {"Last-Event-ID", "7.0123456789abcdef"}} {
			s := openStream(t, srv.URL, h...)
			// Retry-After 5, as the refusal says: not the one second of any
			// 503, which would have every resource server back at once.
			if s.resp.StatusCode != 503 || s.resp.Header.Get("Retry-After") != "5" ||
				s.resp.Header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("stream %v on a stuck database: %d %q Retry-After %q, want a 503 problem with Retry-After 5",
					h, s.resp.StatusCode, s.resp.Header.Get("Content-Type"), s.resp.Header.Get("Retry-After"))
			}
			s.close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/v1/auth/revocations?since=3", nil)
		req.Header.Set("Authorization", "Bearer "+serviceToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "5" {
			t.Errorf("poll on a stuck database: %d, Retry-After %q; want 503, 5", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	})
}

// stuckLaterStore answers the feed's reads until stuck is set, and then
// never again. (Set by the test once its stream began: the service's own
// catch-up reads, which a loaded machine may make at any time, must not
// take a stream's first read.)
type stuckLaterStore struct {
	authd.Store
	stuck atomic.Bool
}

func (s *stuckLaterStore) RevocationEvents(ctx context.Context, after int64, now time.Time, limit int) ([]authd.RevocationEvent, error) {
	if !s.stuck.Load() {
		return s.Store.RevocationEvents(ctx, after, now, limit)
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

func (s *stuckLaterStore) RevocationEventsFrom(ctx context.Context, seen int64, now time.Time, limit int) ([]authd.RevocationEvent, error) {
	if !s.stuck.Load() {
		return s.Store.RevocationEventsFrom(ctx, seen, now, limit)
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestRevocationStreamStuckLater: a stream whose database stops answering
// after it began ends (the client resumes) instead of hanging on to its
// slot.
func TestRevocationStreamStuckLater(t *testing.T) {
	t.Parallel()
	store := &stuckLaterStore{Store: openSQLite(t)}
	e := newEnv(t, store)
	srv := httptest.NewServer(httpapi.New(httpapi.Options{Service: e.svc, ServiceTokens: []string{serviceToken},
		MaxRevocationStreams: 1, RevocationReadTimeout: 20 * time.Millisecond}))
	t.Cleanup(srv.Close)
	s := openStream(t, srv.URL)
	s.next() // retry
	if ev := s.next(); ev["event"] != "synced" {
		t.Fatalf("%v, want synced", ev)
	}
	e.registerVerified("stuck@example.org", goodPassword)
	access, _ := e.login("stuck@example.org", goodPassword)
	store.stuck.Store(true) // the database stops answering the feed
	want(t, "logout", e.do("POST", "/v1/auth/logout", nil, bearer(access)...), 204, "")
	for s.lines.Scan() {
	}
	if err := s.lines.Err(); err != nil {
		t.Errorf("the stream on a database that stopped answering: %v, want it ended by the server", err)
	}
	// The slot was freed: a new stream gets as far as its own (stuck)
	// first read, not the 503 of a full house.
	next := openStream(t, srv.URL)
	body, _ := io.ReadAll(next.resp.Body)
	if next.resp.StatusCode != 503 || !strings.Contains(string(body), "could not read the database in time") {
		t.Errorf("a new stream: %d %s, want the stuck first read's 503 (the slot freed)", next.resp.StatusCode, body)
	}
}

// TestResumeAfterRetention: a client's last event has expired and
// retention has deleted it (common on a quiet deployment, once its tokens
// have expired). The oldest event left comes after it, so the position is
// this table's, purged: it is served from there, not started over with a
// warning about a restore. Once every event has expired, retention keeps
// the newest, so that a client there is still served from its position. A
// position whose event is gone while older events remain (a restore), or
// past an empty table (recreated), still starts over.
func TestResumeAfterRetention(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		ctx := context.Background()
		st := open(t)
		e := newEnv(t, st)
		const email = "retention@example.org"
		e.registerVerified(email, goodPassword)
		// logout revokes a new session: one event, whose id and mark it returns.
		logout := func() (int64, string) {
			t.Helper()
			a, _ := e.login(email, goodPassword)
			want(t, "logout", e.do("POST", "/v1/auth/logout", nil, bearer(a)...), 204, "")
			evs, err := e.svc.RevocationEvents(ctx, 0, 0)
			if err != nil || len(evs) == 0 {
				t.Fatalf("events after a logout: %v, %v", evs, err)
			}
			last := evs[len(evs)-1]
			return last.ID, last.Mark()
		}
		purge := func(want int) {
			t.Helper()
			if res, err := e.svc.Purge(ctx, 90*24*time.Hour, false); err != nil || res.RevocationEvents != want {
				t.Fatalf("purge: %+v, %v; want %d events deleted", res, err, want)
			}
		}
		resume := func(what string, after int64, mark string, wantAfter int64, wantIDs ...int64) {
			t.Helper()
			got, evs, err := e.svc.ResumeRevocationEvents(ctx, after, mark)
			var ids []int64
			for _, ev := range evs {
				ids = append(ids, ev.ID)
			}
			if err != nil || got != wantAfter || fmt.Sprint(ids) != fmt.Sprint(wantIDs) {
				t.Errorf("%s: resuming after %d serves from %d events %v (%v), want from %d events %v",
					what, after, got, ids, err, wantAfter, wantIDs)
			}
		}

		gone, goneMark := logout()
		e.clock.Advance(token.MaxAccessTokenTTL + time.Hour)
		live, liveMark := logout()
		purge(1)
		resume("a purged position", gone, goneMark, gone, live)
		s := openStream(t, e.srv.URL, "Last-Event-ID", strconv.FormatInt(gone, 10)+"."+goneMark)
		s.next() // retry:
		if ev := s.next(); eventNumber(ev["id"]) != strconv.FormatInt(live, 10) {
			t.Errorf("stream after a purged position: %v, want event %d", ev, live)
		}
		if ev := s.next(); ev["event"] != "synced" || !strings.Contains(ev["data"], fmt.Sprintf(`"last_id":%d,`, live)) {
			t.Errorf("stream after a purged position: %v, want synced at %d", ev, live)
		}
		s.close()
		if logs := e.logs.String(); strings.Contains(logs, "starts over") {
			t.Errorf("a purged position was taken for a restore:\n%s", logs)
		}

		// A restore to a backup that ends before the client's event: older
		// events remain, so the position is not this table's.
		seen, seenMark := logout()
		restoreRevocationEvents(t, st, live)
		resume("a restored table", seen, seenMark, 0, live)
		// A quiet deployment: every event has expired; the newest stays.
		e.clock.Advance(token.MaxAccessTokenTTL + time.Hour)
		purge(0)
		resume("every event expired", live, liveMark, live)
		if head, err := e.store.LastRevocationEventID(ctx); err != nil || head != live {
			t.Errorf("the head once every event expired: %d, %v; want %d", head, err, live)
		}
		// An empty table was recreated.
		restoreRevocationEvents(t, st, 0)
		resume("an empty table", live, liveMark, 0)
	})
}

// TestRetentionKeepsNoHeadPastTheLogs: the feed's newest event, which
// retention keeps past its expiry, goes once it is older than the logs'
// retention: an erasure's event names the erased account, and on a quiet
// deployment it would otherwise outlive the account's tombstone for good.
func TestRetentionKeepsNoHeadPastTheLogs(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		ctx := context.Background()
		e := newEnv(t, open(t))
		const email = "quiet.erasure@example.org"
		e.registerVerified(email, goodPassword)
		id := e.user(email).ID
		access, _ := e.login(email, goodPassword)
		want(t, "erase", e.do("DELETE", "/v1/users/me", map[string]string{"password": goodPassword}, bearer(access)...), 204, "")
		named := func() int {
			t.Helper()
			evs, err := e.store.RevocationEventsFrom(ctx, 0, time.Unix(0, 0), 100)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, ev := range evs {
				if ev.Subject == id {
					n++
				}
			}
			return n
		}

		e.clock.Advance(89 * 24 * time.Hour) // every event expired, the newest kept
		if _, err := e.svc.Purge(ctx, 90*24*time.Hour, false); err != nil {
			t.Fatal(err)
		}
		if n := named(); n != 1 {
			t.Fatalf("%d events name the erased account after 89 quiet days, want its erasure's, the head", n)
		}
		e.clock.Advance(2 * 24 * time.Hour)
		res, err := e.svc.Purge(ctx, 90*24*time.Hour, false)
		if err != nil || res.ErasedAccounts != 1 || res.RevocationEvents != 1 {
			t.Fatalf("purge after 91 quiet days: %+v, %v; want the tombstone and the head deleted", res, err)
		}
		if n := named(); n != 0 {
			t.Errorf("%d events name the erased account after 91 quiet days, past the logs' retention", n)
		}
	})
}

// setReloads is a store that counts the full reads of the revocation set.
type setReloads struct {
	authd.Store
	n atomic.Int64
}

func (s *setReloads) RevokedSessions(ctx context.Context, since time.Time) ([]authd.Revocation, error) {
	s.n.Add(1)
	return s.Store.RevokedSessions(ctx, since)
}

// TestCatchUpAfterRetentionReloadsNothing: once retention has deleted
// every expired event of a quiet deployment, an instance's catch-up finds
// the table's head where it left it, and reads on from there rather than
// reloading its whole revocation set as after a restore.
func TestCatchUpAfterRetentionReloadsNothing(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		ctx := context.Background()
		st := &setReloads{Store: open(t)}
		e := newEnv(t, st)
		e.registerVerified("quiet@example.org", goodPassword)
		for range 2 {
			a, _ := e.login("quiet@example.org", goodPassword)
			want(t, "logout", e.do("POST", "/v1/auth/logout", nil, bearer(a)...), 204, "")
		}
		if err := e.svc.CatchUpRevocations(ctx); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(token.MaxAccessTokenTTL + time.Hour)
		if res, err := e.svc.Purge(ctx, 90*24*time.Hour, false); err != nil || res.RevocationEvents != 1 {
			t.Fatalf("purge: %+v, %v; want the older event deleted", res, err)
		}
		before := st.n.Load()
		if err := e.svc.CatchUpRevocations(ctx); err != nil {
			t.Fatal(err)
		}
		if n := st.n.Load() - before; n != 0 {
			t.Errorf("the catch-up after retention reloaded the revocation set %d times, want none", n)
		}
	})
}

// feedReads is a store that counts its reads of revocation events made
// with a context carrying countedRead, or all of them.
type feedReads struct {
	authd.Store
	all bool
	n   atomic.Int64
}

type countedRead struct{}

func (f *feedReads) count(ctx context.Context) {
	if f.all || ctx.Value(countedRead{}) != nil {
		f.n.Add(1)
	}
}

func (f *feedReads) RevocationEvents(ctx context.Context, after int64, now time.Time, limit int) ([]authd.RevocationEvent, error) {
	f.count(ctx)
	return f.Store.RevocationEvents(ctx, after, now, limit)
}

func (f *feedReads) RevocationEventsFrom(ctx context.Context, seen int64, now time.Time, limit int) ([]authd.RevocationEvent, error) {
	f.count(ctx)
	return f.Store.RevocationEventsFrom(ctx, seen, now, limit)
}

func (f *feedReads) LastRevocationEventID(ctx context.Context) (int64, error) {
	f.count(ctx)
	return f.Store.LastRevocationEventID(ctx)
}

// TestResumeAfterRetentionServesOnePage: a client resuming after its
// purged event is served one page of what followed, RevocationEventsPage
// events, as any other read, not one more.
func TestResumeAfterRetentionServesOnePage(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		ctx := context.Background()
		e := newEnv(t, open(t))
		publish := func(n int, until time.Time) {
			t.Helper()
			if err := e.store.InTx(ctx, func(q authd.Queries) error {
				for range n {
					if err := q.PublishRevocation(ctx, authd.Revocation{At: e.clock.Now(), Until: until,
						SessionIDs: []uuid.UUID{uuid.New()}, Reason: "logout"}); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		publish(1, e.clock.Now().Add(time.Hour))
		evs, err := e.svc.RevocationEvents(ctx, 0, 0)
		if err != nil || len(evs) != 1 {
			t.Fatalf("the first event: %v, %v", evs, err)
		}
		gone := evs[0]
		e.clock.Advance(2 * time.Hour)
		publish(authd.RevocationEventsPage+1, e.clock.Now().Add(time.Hour))
		if res, err := e.svc.Purge(ctx, 90*24*time.Hour, false); err != nil || res.RevocationEvents != 1 {
			t.Fatalf("purge: %+v, %v; want the first event deleted", res, err)
		}
		after, page, err := e.svc.ResumeRevocationEvents(ctx, gone.ID, gone.Mark())
		if err != nil || after != gone.ID || len(page) != authd.RevocationEventsPage || page[0].ID <= gone.ID {
			t.Errorf("resuming after a purged event: from %d, %d events (%v); want from %d, a page of %d after it",
				after, len(page), err, gone.ID, authd.RevocationEventsPage)
		}
	})
}

// TestRevocationFeedJSONPages: a poll answers one page of
// RevocationEventsPage events with more true, so that the poller asks again
// at once from its cursor; the last page says more false.
func TestRevocationFeedJSONPages(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		ctx := context.Background()
		e := newEnv(t, open(t))
		if err := e.store.InTx(ctx, func(q authd.Queries) error {
			for range authd.RevocationEventsPage + 1 {
				if err := q.PublishRevocation(ctx, authd.Revocation{At: e.clock.Now(), Until: e.clock.Now().Add(time.Hour),
					SessionIDs: []uuid.UUID{uuid.New()}, Reason: "logout"}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		first := e.do("GET", "/v1/auth/revocations?since=0", nil, bearer(serviceToken)...)
		want(t, "first page", first, 200, "")
		if evs, _ := first.body["events"].([]any); len(evs) != authd.RevocationEventsPage || first.body["more"] != true {
			t.Fatalf("first page: %d events, more %v; want %d, more true", len(evs), first.body["more"], authd.RevocationEventsPage)
		}
		last := e.do("GET", "/v1/auth/revocations?since="+first.str("cursor"), nil, bearer(serviceToken)...)
		want(t, "last page", last, 200, "")
		if evs, _ := last.body["events"].([]any); len(evs) != 1 || last.body["more"] != false {
			t.Errorf("last page: %s; want the one event left, more false", last.raw)
		}
	})
}

// TestResumeAtTheHeadWithoutAMark: a client that kept only the id of the
// last event it saw, and has seen the newest, resumes from there with
// nothing new, not from the start: its id is a position of this table (the
// head), and starting over would resend every live event at each poll.
func TestResumeAtTheHeadWithoutAMark(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	e.registerVerified("head@example.org", goodPassword)
	access, _ := e.login("head@example.org", goodPassword)
	want(t, "logout", e.do("POST", "/v1/auth/logout", nil, bearer(access)...), 204, "")
	ctx := context.Background()
	evs, err := e.svc.RevocationEvents(ctx, 0, 0)
	if err != nil || len(evs) == 0 {
		t.Fatalf("the feed after a logout: %v, %v; want its events", evs, err)
	}
	head := evs[len(evs)-1].ID
	from, page, err := e.svc.ResumeRevocationEvents(ctx, head, "")
	if err != nil || from != head || len(page) != 0 {
		t.Errorf("resuming at the head %d without a mark: from %d, %d events, %v; want from %d, none", head, from, len(page), err, head)
	}
}

// TestCurrentStreamReadsOnce: what every read of a stream that is current
// costs — each heartbeat's, each wake-up's — is one query, whether the
// last event it sent is still live or has expired (a quiet day), while
// still telling whether that event is in the table.
func TestCurrentStreamReadsOnce(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		st := &feedReads{Store: open(t)}
		e := newEnv(t, st)
		const email = "quiet@example.org"
		e.registerVerified(email, goodPassword)
		a, _ := e.login(email, goodPassword)
		want(t, "logout", e.do("POST", "/v1/auth/logout", nil, bearer(a)...), 204, "")
		evs, err := e.svc.RevocationEvents(context.Background(), 0, 0)
		if err != nil || len(evs) == 0 {
			t.Fatalf("events after a logout: %v, %v", evs, err)
		}
		last := evs[len(evs)-1]
		ctx := context.WithValue(context.Background(), countedRead{}, true)
		for _, c := range []struct {
			state   string
			advance time.Duration
		}{{"live", 0}, {"expired", token.MaxAccessTokenTTL + time.Hour}} {
			e.clock.Advance(c.advance)
			st.n.Store(0)
			after, got, err := e.svc.ResumeRevocationEvents(ctx, last.ID, last.Mark())
			if err != nil || after != last.ID || len(got) != 0 {
				t.Errorf("%s: resuming at the last event serves from %d events %v (%v), want from %d none",
					c.state, after, got, err, last.ID)
			}
			if n := st.n.Load(); n != 1 {
				t.Errorf("%s: a read at the last event took %d queries, want 1", c.state, n)
			}
			// Another event under the same id (a restored table) is still told apart.
			st.n.Store(0)
			if after, _, err := e.svc.ResumeRevocationEvents(ctx, last.ID, strings.Repeat("0", authd.MarkDigits)); err != nil || after != 0 {
				t.Errorf("%s: resuming at another event's mark serves from %d (%v), want 0", c.state, after, err)
			}
		}
	})
}

// currentStreams serves svc's feed and opens n streams on it, each past its
// synced event. No heartbeat comes within a test: each would read on its
// own.
func currentStreams(t *testing.T, svc *authd.Service, n int) []*sse {
	t.Helper()
	srv := httptest.NewServer(httpapi.New(httpapi.Options{Service: svc, ServiceTokens: []string{serviceToken},
		RevocationHeartbeat: time.Hour, Logger: slog.New(slog.DiscardHandler)}))
	t.Cleanup(srv.Close) // after the streams' cleanups, which run first
	streams := make([]*sse, n)
	for i := range streams {
		streams[i] = openStream(t, srv.URL)
		streams[i].next() // retry
		if ev := streams[i].next(); ev["event"] != "synced" {
			t.Fatalf("stream %d began with %v, want synced", i, ev)
		}
	}
	return streams
}

// TestStreamsShareAChangesRead: the streams one revocation wakes share the
// read it calls for — one query whatever their number, not one each — and
// each still sends the event.
func TestStreamsShareAChangesRead(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		st := &feedReads{Store: open(t), all: true}
		e := newEnv(t, st)
		e.registerVerified("shared@example.org", goodPassword)
		a1, _ := e.login("shared@example.org", goodPassword)
		a2, _ := e.login("shared@example.org", goodPassword)
		streams := currentStreams(t, e.svc, 8)
		for round, a := range []string{a1, a2} {
			st.n.Store(0)
			want(t, "logout", e.do("POST", "/v1/auth/logout", nil, bearer(a)...), 204, "")
			sid := jwtClaims(t, a)["sid"].(string)
			for i, s := range streams {
				if ev := s.next(); !strings.Contains(ev["data"], sid) {
					t.Fatalf("round %d: stream %d sent %v, want the logout of %s", round, i, ev, sid)
				}
			}
			if n := st.n.Load(); n != 1 {
				t.Errorf("round %d: %d streams woken by one logout read %d times, want once", round, len(streams), n)
			}
		}
	})
}

// TestSharedReadsLoseNothing: revocations committed while the streams'
// shared reads run — a change racing the read it called for — all reach
// every stream, without a heartbeat's read to make up for one missed.
func TestSharedReadsLoseNothing(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		st := &feedReads{Store: open(t), all: true}
		e := newEnv(t, st)
		e.registerVerified("racing@example.org", goodPassword)
		var tokens []string
		for range 13 {
			a, _ := e.login("racing@example.org", goodPassword)
			tokens = append(tokens, a)
		}
		streams := currentStreams(t, e.svc, 6)
		last := tokens[12]
		tokens = tokens[:12]
		var wg sync.WaitGroup
		for _, a := range tokens {
			wg.Go(func() {
				if r := e.do("POST", "/v1/auth/logout", nil, bearer(a)...); r.status != 204 {
					t.Errorf("logout: %d %s", r.status, r.raw)
				}
			})
		}
		wg.Wait()
		for _, s := range streams {
			seen := map[string]bool{}
			for len(seen) < len(tokens) {
				ev := s.next() // fails the test if the stream ends (its 10 s bound) first
				for _, a := range tokens {
					if sid := jwtClaims(t, a)["sid"].(string); strings.Contains(ev["data"], sid) {
						seen[sid] = true
					}
				}
			}
		}
		// A wake whose read finds nothing new (a revocation applied ahead
		// of its event's row: another instance's notification) must not
		// stand in for the read of the next change at that position.
		before := st.n.Load()
		e.svc.Revocations().Apply(authd.Revocation{SessionIDs: []uuid.UUID{uuid.New()}, At: e.clock.Now()})
		for until := time.Now().Add(time.Second); st.n.Load() == before && time.Now().Before(until); {
			time.Sleep(time.Millisecond) // until the streams have read their empty page
		}
		want(t, "logout", e.do("POST", "/v1/auth/logout", nil, bearer(last)...), 204, "")
		sid := jwtClaims(t, last)["sid"].(string)
		for i, s := range streams {
			if ev := s.next(); !strings.Contains(ev["data"], sid) {
				t.Errorf("stream %d sent %v, want the last logout", i, ev)
			}
		}
	})
}

// failOnce is a store whose next read of revocation events, once armed,
// fails after a while, as a stuck connection's does at its timeout.
type failOnce struct {
	authd.Store
	armed atomic.Bool
}

func (f *failOnce) fail() error {
	if f.armed.CompareAndSwap(true, false) {
		time.Sleep(100 * time.Millisecond)
		return errors.New("stuck connection")
	}
	return nil
}

func (f *failOnce) RevocationEvents(ctx context.Context, after int64, now time.Time, limit int) ([]authd.RevocationEvent, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	return f.Store.RevocationEvents(ctx, after, now, limit)
}

func (f *failOnce) RevocationEventsFrom(ctx context.Context, seen int64, now time.Time, limit int) ([]authd.RevocationEvent, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	return f.Store.RevocationEventsFrom(ctx, seen, now, limit)
}

// TestSharedReadFailureEndsOneStream: a shared read that fails ends the
// stream whose wake started it, as its own read failing did before; the
// streams that waited for it read on their own and send the event.
func TestSharedReadFailureEndsOneStream(t *testing.T) {
	t.Parallel()
	st := &failOnce{Store: openSQLite(t)}
	e := newEnv(t, st)
	e.registerVerified("stuck@example.org", goodPassword)
	a, _ := e.login("stuck@example.org", goodPassword)
	streams := currentStreams(t, e.svc, 6)
	st.armed.Store(true)
	want(t, "logout", e.do("POST", "/v1/auth/logout", nil, bearer(a)...), 204, "")
	sid := jwtClaims(t, a)["sid"].(string)
	sent := 0
	for _, s := range streams {
		if ev, ok := s.tryNext(); ok && strings.Contains(ev["data"], sid) {
			sent++
		}
	}
	if sent != len(streams)-1 {
		t.Errorf("%d of %d streams sent the logout after one shared read failed; want all but the one whose read it was",
			sent, len(streams))
	}
}
