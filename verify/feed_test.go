package verify

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// feedServer serves a JWKS and, on any other path, feed with the number of
// the connection (1 for the first).
func feedServer(t *testing.T, feed func(w http.ResponseWriter, r *http.Request, n int64)) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var connections atomic.Int64
	jwks := `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k","alg":"EdDSA","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/jwks" {
			io.WriteString(w, jwks)
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

// TestNewWithoutHeadersReturns: New, even with a context that never ends,
// gives up on a feed that never answers. Not parallel: it shortens
// feedSilence.
func TestNewWithoutHeadersReturns(t *testing.T) {
	defer func(d time.Duration) { feedSilence = d }(feedSilence)
	feedSilence = 50 * time.Millisecond
	srv, _ := feedServer(t, func(_ http.ResponseWriter, r *http.Request, _ int64) { <-r.Context().Done() })
	done := make(chan error, 1)
	go func() {
		v, err := New(context.Background(), feedOptions(srv))
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
	if got := v.revs.silenceLimit(); got != 60*time.Millisecond {
		t.Errorf("silence limit %s after a 20 ms heartbeat was announced, want 60ms", got)
	}
	waitConnections(t, connections, 3, "a feed silent for three announced heartbeats was not dropped")

	r := newRevocations()
	if r.silenceLimit() != feedSilence {
		t.Errorf("silence limit %s with nothing announced, want the default %s", r.silenceLimit(), feedSilence)
	}
	r.announced(time.Hour)
	if r.silenceLimit() != maxSilence {
		t.Errorf("silence limit %s for a one-hour heartbeat, want the cap %s", r.silenceLimit(), maxSilence)
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
	r := newRevocations()
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
