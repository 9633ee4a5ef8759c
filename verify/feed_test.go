package verify

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// feedServer serves a JWKS, introspection (every token inactive) and, on
// any other path, feed with the number of the connection (1 for the
// first).
func feedServer(t *testing.T, feed func(w http.ResponseWriter, r *http.Request, n int64)) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var connections atomic.Int64
	jwks := `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k","alg":"EdDSA","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/jwks":
			io.WriteString(w, jwks)
			return
		case "/introspect": // New's probe
			io.WriteString(w, `{"active":false}`)
			return
		}
		feed(w, r, connections.Add(1))
	}))
	t.Cleanup(srv.Close)
	return srv, &connections
}

func feedOptions(srv *httptest.Server) Options {
	return Options{Issuer: "i", Audience: "a", JWKSURL: srv.URL + "/jwks", RevocationsURL: srv.URL + "/feed", ServiceToken: "s"}
}

// synced answers a feed connection with a caught-up stream (announcing
// heartbeat, if not empty), then says nothing until the client leaves.
func synced(w http.ResponseWriter, r *http.Request, heartbeat string) {
	w.Header().Set("Content-Type", "text/event-stream")
	data := "{}"
	if heartbeat != "" {
		data = `{"last_id":0,"heartbeat_ms":` + heartbeat + `}`
	}
	io.WriteString(w, "event: synced\ndata: "+data+"\n\n")
	w.(http.Flusher).Flush()
	<-r.Context().Done()
}

// waitConnections polls until the feed has had n connections.
func waitConnections(t *testing.T, connections *atomic.Int64, n int64, what string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); connections.Load() < n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections, want %d: %s", connections.Load(), n, what)
		}
	}
}

// TestReconnectionWithoutHeadersAbandoned: a reconnection whose response
// headers never come is abandoned after the silence limit and retried. Not
// parallel: it shortens feedSilence.
func TestReconnectionWithoutHeadersAbandoned(t *testing.T) {
	defer func(d time.Duration) { feedSilence = d }(feedSilence)
	feedSilence = 50 * time.Millisecond
	srv, connections := feedServer(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		if n == 1 {
			synced(w, r, "")
			return
		}
		<-r.Context().Done() // no headers, ever
	})
	v, err := New(context.Background(), feedOptions(srv))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	waitConnections(t, connections, 4, "a reconnection without headers was never abandoned")
	if v.Stats().FeedConnected {
		t.Error("the feed counts as connected while no reconnection has answered")
	}
}

// TestNewWithoutHeadersReturns: New against a feed that never answers
// retries until its context ends, then says why: the silence. Not
// parallel: it shortens feedSilence.
func TestNewWithoutHeadersReturns(t *testing.T) {
	defer func(d time.Duration) { feedSilence = d }(feedSilence)
	feedSilence = 50 * time.Millisecond
	srv, _ := feedServer(t, func(_ http.ResponseWriter, r *http.Request, _ int64) { <-r.Context().Done() })
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second) // many silences: one is enough
		defer cancel()
		v, err := New(ctx, feedOptions(srv))
		if err == nil {
			v.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "silent") {
			t.Errorf("New against a feed that never answers: %v, want the silence reported", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("New still waits for a feed that never answers")
	}
}

// TestAnnouncedHeartbeat: the silence limit follows the heartbeat interval
// authd announces in "synced" (three of them), not the default.
func TestAnnouncedHeartbeat(t *testing.T) {
	srv, connections := feedServer(t, func(w http.ResponseWriter, r *http.Request, _ int64) { synced(w, r, "20") })
	v, err := New(context.Background(), feedOptions(srv))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	// Each reconnection holds the default between its answer and its
	// "synced": read until a connection's "synced" has set it.
	for deadline := time.Now().Add(5 * time.Second); v.revs.silenceLimit() != 60*time.Millisecond; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("silence limit %s after a 20 ms heartbeat was announced, want 60ms", v.revs.silenceLimit())
		}
	}
	waitConnections(t, connections, 3, "a feed silent for three announced heartbeats was not dropped")

	r := newRevocations(defaultMaxRevocations)
	if r.silenceLimit() != feedSilence {
		t.Errorf("silence limit %s with nothing announced, want the default %s", r.silenceLimit(), feedSilence)
	}
	r.announced(time.Hour)
	if r.silenceLimit() != maxSilence {
		t.Errorf("silence limit %s for a one-hour heartbeat, want the cap %s", r.silenceLimit(), maxSilence)
	}
}

// TestNewSaysTheFeedHasNotAnswered: New whose context ends before the
// first feed connection answers (or is taken for dead) says so, rather
// than end at "context deadline exceeded".
func TestNewSaysTheFeedHasNotAnswered(t *testing.T) {
	t.Parallel()
	srv, _ := feedServer(t, func(_ http.ResponseWriter, r *http.Request, _ int64) { <-r.Context().Done() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second) // the JWKS fetched first, on a loaded machine
	defer cancel()
	v, err := New(ctx, feedOptions(srv))
	if err == nil {
		v.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "has not caught up") || !strings.Contains(err.Error(), srv.URL+"/feed") {
		t.Errorf("New against a feed that never answers: %v, want it to say the feed has not answered", err)
	}
}

// TestSilentFeedIsDead: a feed connection that says nothing for
// feedSilence (no heartbeat) is dropped and resumed. Not parallel: it
// shortens feedSilence, and parallel tests start only after it.
func TestSilentFeedIsDead(t *testing.T) {
	defer func(d time.Duration) { feedSilence = d }(feedSilence)
	feedSilence = 50 * time.Millisecond
	srv, connections := feedServer(t, func(w http.ResponseWriter, r *http.Request, _ int64) { synced(w, r, "") })
	v, err := New(context.Background(), feedOptions(srv))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	waitConnections(t, connections, 3, "a silent feed was not dropped and resumed")
	if st := v.Stats(); st.Reconnects < 2 {
		t.Errorf("stats %+v, want reconnections counted", st)
	}
}

// TestAnnouncedHeartbeatIsTheConnections: the silence limit a connection's
// "synced" announced is that connection's; the next (perhaps to an older
// authd, which announces none and beats more slowly) starts from the
// default, rather than be dropped at the earlier one's pace. Not parallel:
// it shortens feedSilence.
func TestAnnouncedHeartbeatIsTheConnections(t *testing.T) {
	defer func(d time.Duration) { feedSilence = d }(feedSilence)
	feedSilence = 2 * time.Second
	srv, connections := feedServer(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		if n == 1 {
			synced(w, r, "5") // a 15 ms limit, and then silence: dropped
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "event: synced\ndata: {}\n\n")
		w.(http.Flusher).Flush()
		for {
			select {
			case <-r.Context().Done():
				return
			case <-time.After(100 * time.Millisecond):
				io.WriteString(w, ":\n\n")
				w.(http.Flusher).Flush()
			}
		}
	})
	v, err := New(context.Background(), feedOptions(srv))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	waitConnections(t, connections, 2, "the silent first connection was not dropped")
	time.Sleep(time.Second) // ten heartbeats, each far past the first connection's 15 ms
	if n := connections.Load(); n != 2 {
		t.Errorf("%d connections, want the second kept: it beats within the default limit", n)
	}
}

// TestApplyingAgainChangesNothing: authd resends events when it starts a
// stream over (a client's position not in a restored table); applying an
// event again, or an older one after a newer, leaves the state as it was,
// and the client resumes from the last event's SSE id.
func TestApplyingAgainChangesNothing(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	evs := []feedEvent{
		{ID: 1, SID: "s1", Exp: now.Unix() + 600},
		{ID: 2, Sub: "u1", Before: now.Unix() - 10, Exp: now.Unix() + 900},
		{ID: 3, Sub: "u1", Before: now.Unix() - 5, Exp: now.Unix() + 600},
	}
	r := newRevocations(defaultMaxRevocations)
	for _, e := range evs {
		r.apply(e, fmt.Sprintf("%d.ab", e.ID), now)
	}
	want := fmt.Sprint(r.sessions, r.users)
	for _, e := range append(slices.Clone(evs), evs[1], evs[0]) { // the whole feed again, then older ones
		r.apply(e, fmt.Sprintf("%d.cd", e.ID), now)
	}
	if got := fmt.Sprint(r.sessions, r.users); got != want {
		t.Errorf("after applying the events again: %s, want %s", got, want)
	}
	if r.resumeFrom != "1.cd" || r.lastID != 1 {
		t.Errorf("resumes from %q (last id %d), want the last event applied, 1.cd", r.resumeFrom, r.lastID)
	}
	r.apply(feedEvent{ID: 4, SID: "s2", Exp: now.Unix() + 600}, "", now)
	if r.resumeFrom != "4" {
		t.Errorf("after an event without an SSE id (an older authd): resumes from %q, want 4", r.resumeFrom)
	}
}

// TestResumeAgainstAnOlderAuthd: in a rolling upgrade, or after a
// rollback, the reconnection may reach an authd older than the marks,
// which answers 400 to a Last-Event-ID that is not a plain number. The
// verifier asks again at once with the number, rather than send the
// refused id on every reconnection for as long as it runs.
func TestResumeAgainstAnOlderAuthd(t *testing.T) {
	exp := time.Now().Add(time.Hour).Unix()
	var mu sync.Mutex
	var resumes []string
	var refused int
	srv, _ := feedServer(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		last := r.Header.Get("Last-Event-ID")
		mu.Lock()
		resumes = append(resumes, last)
		mu.Unlock()
		if n == 1 { // an upgraded instance: a marked id, then the stream ends
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprintf(w, "id: 1.0123456789abcdef\ndata: {\"id\":1,\"sid\":\"s1\",\"exp\":%d}\n\nevent: synced\ndata: {}\n\n", exp)
			return
		}
		// An older instance: strconv.ParseInt or 400.
		if _, err := strconv.ParseInt(last, 10, 64); last != "" && err != nil {
			mu.Lock()
			refused++
			mu.Unlock()
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"code":"validation_failed"}`)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "id: 2\ndata: {\"id\":2,\"sid\":\"s2\",\"exp\":%d}\n\n", exp)
		synced(w, r, "")
	})
	v, err := New(context.Background(), feedOptions(srv))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	for deadline := time.Now().Add(5 * time.Second); !v.revs.revoked(&Claims{SessionID: "s2"}); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("the older authd's event never arrived; Last-Event-IDs sent: %q", resumes)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"", "1.0123456789abcdef", "1"}; !slices.Equal(resumes[:min(3, len(resumes))], want) || refused != 1 {
		t.Errorf("Last-Event-IDs sent %q (%d refused), want %q: the marked id once, then the number", resumes, refused, want)
	}
	v.revs.mu.RLock()
	from := v.revs.resumeFrom
	v.revs.mu.RUnlock()
	if st := v.Stats(); !st.FeedConnected || st.LastEventID != 2 || from != "2" {
		t.Errorf("stats %+v, resuming from %q: want connected at event 2, resuming from 2", st, from)
	}
}

// TestFullMemoryOfRevocations: at the bound, a revocation of a session or
// user not kept is dropped (and the state is not current until its tokens
// have expired), while events for those kept still apply; an event naming
// only expired tokens drops nothing; a full memory forgets its expired
// revocations as events come, however sparse (the dropped ones must not
// keep it full once the kept ones have expired); the epoch moves when a
// full time starts and ends, so that introspection answers and the
// breaker serve one such time; an exp beyond any token's life, or none,
// counts as the longest.
func TestFullMemoryOfRevocations(t *testing.T) {
	t0 := time.Unix(1_900_000_000, 0)
	exp := t0.Add(15 * time.Minute).Unix()
	r := newRevocations(2)
	r.apply(feedEvent{ID: 1, SID: "s1", Exp: exp}, "", t0)
	r.apply(feedEvent{ID: 2, Sub: "u1", Before: t0.Unix() - 10, Exp: exp}, "", t0)
	_, _, epoch0, _ := r.state(t0)
	if r.apply(feedEvent{ID: 3, SID: "gone", Exp: t0.Unix() - 120}, "", t0) || r.dropped != 0 {
		t.Errorf("an event naming only expired tokens, at the bound: dropped %d, want none", r.dropped)
	}
	if !r.apply(feedEvent{ID: 4, Sub: "u2", Before: t0.Unix(), Exp: exp}, "", t0) || r.dropped != 1 {
		t.Errorf("a new user's revocation at the bound: not reported dropped (%d dropped)", r.dropped)
	}
	r.apply(feedEvent{ID: 5, Sub: "u1", Before: t0.Unix() + 5, Exp: exp + 60}, "", t0) // kept: applies
	if u := r.users["u1"]; !u.before.Equal(t0.Add(5*time.Second)) || !u.forget.Equal(time.Unix(exp+60, 0).Add(forgetAfter)) {
		t.Errorf("a kept user's new revocation while full: %+v", u)
	}
	if r.apply(feedEvent{ID: 6, SID: "s2", Exp: exp}, "", t0) || r.dropped != 2 {
		t.Errorf("a second drop in the same full time: reported as a new one, or not counted (%d)", r.dropped)
	}
	if len(r.sessions)+len(r.users) != 2 || r.lastID != 6 {
		t.Errorf("%d kept, at event %d; want 2 at 6", len(r.sessions)+len(r.users), r.lastID)
	}
	_, _, epoch1, _ := r.state(t0)
	older, newer := &Claims{IssuedAt: t0.Add(forgetAfter)}, &Claims{IssuedAt: t0.Add(forgetAfter + time.Second)}
	if !r.doubts(older, t0) || r.doubts(newer, t0) || epoch1 == epoch0 {
		t.Errorf("while full: doubts a token issued by the drop (+forgetAfter) %v, one after it %v, epoch %d (before %d); "+
			"want the first only, a new epoch", r.doubts(older, t0), r.doubts(newer, t0), epoch1, epoch0)
	}
	r.setHealthy(true)
	if !r.doubts(older, t0.Add(15*time.Minute)) {
		t.Error("a catch-up while full ended the doubt")
	}

	// Sparse events: one while the kept ones live is dropped (full until
	// 26 min), the next ones, once they have expired, are kept.
	for i, at := range []time.Duration{10 * time.Minute, 20 * time.Minute, 30 * time.Minute} {
		now := t0.Add(at)
		if r.apply(feedEvent{ID: int64(7 + i), SID: fmt.Sprint("late", i), Exp: now.Add(15 * time.Minute).Unix()}, "", now); r.dropped != 3 {
			t.Fatalf("an event %s after the burst: %d dropped, want 3 (the one at 10 min)", at, r.dropped)
		}
		r.scanned = time.Time{} // the pace is the wall clock's: this test's minutes pass at once
	}
	healthy, _, epoch2, _ := r.state(t0.Add(40 * time.Minute))
	if !healthy || r.doubts(older, t0.Add(40*time.Minute)) || epoch2 == epoch1 || epoch2 == epoch0 {
		t.Errorf("once the dropped revocations' tokens expired: healthy %v, doubt %v, epoch %d (%d, %d before)", healthy,
			r.doubts(older, t0.Add(40*time.Minute)), epoch2, epoch0, epoch1)
	}

	// A user event dated ahead of this clock (authd's runs ahead) puts its
	// before, not the arrival, at the bound of the doubt.
	r = newRevocations(1)
	r.apply(feedEvent{ID: 1, SID: "s1", Exp: exp}, "", t0)
	r.apply(feedEvent{ID: 2, Sub: "u1", Before: t0.Add(5 * time.Minute).Unix(), Exp: exp}, "", t0)
	if !r.doubts(&Claims{IssuedAt: t0.Add(5*time.Minute + forgetAfter)}, t0) {
		t.Error("a token issued before a dropped user event's before (ahead of this clock): not in doubt")
	}

	// A user event whose before is absurd (time.Unix would wrap) revokes
	// every token of the user: failing closed.
	r = newRevocations(10)
	r.apply(feedEvent{ID: 1, Sub: "wild", Before: math.MaxInt64, Exp: exp}, "", t0)
	if !r.revoked(&Claims{Subject: "wild", IssuedAt: t0}) {
		t.Error("a user event with an absurd before revoked nothing")
	}

	// No exp, or one past any token's life: kept the longest time.
	r = newRevocations(10)
	r.apply(feedEvent{ID: 1, SID: "far", Exp: math.MaxInt64}, "", t0)
	r.apply(feedEvent{ID: 2, SID: "none"}, "", t0)
	for _, sid := range []string{"far", "none"} {
		if got, want := r.sessions[sid], t0.Add(maxTokenLife+forgetAfter); !got.Equal(want) {
			t.Errorf("session %q kept until %v, want %v", sid, got, want)
		}
	}
}

// TestPruneGivesBackABurstsMemory: when pruning leaves under a quarter of
// a large map, what is left moves to a fresh map (a Go map keeps the
// memory of its largest size).
func TestPruneGivesBackABurstsMemory(t *testing.T) {
	t0 := time.Unix(1_900_000_000, 0)
	r := newRevocations(defaultMaxRevocations)
	for i := range 8192 {
		exp := t0.Add(time.Minute).Unix()
		if i%8 == 0 {
			exp = t0.Add(time.Hour).Unix()
		}
		r.apply(feedEvent{ID: int64(i + 1), SID: fmt.Sprint("s", i), Exp: exp}, "", t0)
	}
	before := reflect.ValueOf(r.sessions).UnsafePointer()
	r.prune(t0.Add(5 * time.Minute))
	if len(r.sessions) != 1024 || r.sessions["s0"].IsZero() || !r.sessions["s1"].IsZero() {
		t.Fatalf("after pruning: %d sessions, want the 1,024 unexpired", len(r.sessions))
	}
	if reflect.ValueOf(r.sessions).UnsafePointer() == before {
		t.Error("the pruned map is the burst's: its memory is kept")
	}
	if want := t0.Add(time.Hour + forgetAfter); !r.earliest.Equal(want) {
		t.Errorf("earliest %v, want %v", r.earliest, want)
	}
	before = reflect.ValueOf(r.sessions).UnsafePointer()
	r.apply(feedEvent{ID: 9000, SID: "x", Exp: t0.Add(10 * time.Minute).Unix()}, "", t0.Add(5*time.Minute))
	r.prune(t0.Add(20 * time.Minute))
	if len(r.sessions) != 1024 || reflect.ValueOf(r.sessions).UnsafePointer() != before {
		t.Errorf("pruning one of 1,025: %d left, or a new map", len(r.sessions))
	}
}

// TestQuietFeedPrunes: a feed that says nothing but heartbeats still
// forgets the revocations whose tokens have expired (at most once a
// minute), so that its memory and Stats.Revoked follow the live ones.
func TestQuietFeedPrunes(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1_900_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	beat := make(chan struct{})
	srv, _ := feedServer(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "id: 1\ndata: {\"id\":1,\"sid\":\"s1\",\"exp\":%d}\n\nevent: synced\ndata: {}\n\n", clock().Unix()+60)
		w.(http.Flusher).Flush()
		for {
			select {
			case <-beat:
				io.WriteString(w, ": heartbeat\n\n")
				w.(http.Flusher).Flush()
			case <-r.Context().Done():
				return
			}
		}
	})
	o := feedOptions(srv)
	o.Now, o.Policy = clock, FailClosed
	v, err := New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if st := v.Stats(); st.Revoked != 1 {
		t.Fatalf("after the backlog: %d remembered, want 1", st.Revoked)
	}
	mu.Lock()
	now = now.Add(3 * time.Minute) // s1's tokens have expired, and its minute past them
	mu.Unlock()
	v.revs.mu.Lock()
	v.revs.pruned = time.Time{} // the catch-up pruned just now: as if a minute had passed
	v.revs.mu.Unlock()
	beat <- struct{}{}
	for deadline := time.Now().Add(5 * time.Second); v.Stats().Revoked != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("a heartbeat a minute after the last prune: %d remembered, want 0", v.Stats().Revoked)
		}
	}
}

// doubts is inDoubt at now.
func (r *revocations) doubts(c *Claims, now time.Time) bool {
	_, _, _, doubtBefore := r.state(now)
	return inDoubt(c, doubtBefore)
}
