package verify

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestBreakerTrialIsItsOwn: once the breaker is open, only its trial's
// outcome closes or reopens it: a call admitted before it opened that
// succeeds late does not let a second trial run beside the first, and a
// failure from before it closed does not count after.
func TestBreakerTrialIsItsOwn(t *testing.T) {
	var b breaker
	now := time.Now()
	fail := errors.New("503")
	late, _ := b.admit(now, 1)
	for range breakerThreshold {
		t1, err := b.admit(now, 1)
		if err != nil {
			t.Fatalf("closed: %v", err)
		}
		b.record(t1, fail, now)
	}
	if b.refusal(now, 1) == nil {
		t.Fatalf("%d failures in a row: the breaker closed", breakerThreshold)
	}
	now = now.Add(introspectionPause)
	trial, err := b.admit(now, 1)
	if err != nil || !trial.trial {
		t.Fatalf("after the pause: %+v, %v, want a trial", trial, err)
	}
	b.record(late, nil, now) // a call of before, succeeding late
	if b.refusal(now, 1) == nil {
		t.Fatal("a call admitted before the breaker opened succeeded: another call may start beside the trial")
	}
	b.record(trial, fail, now)
	if b.refusal(now, 1) == nil {
		t.Fatal("the trial failed: a call may start at once")
	}
	now = now.Add(introspectionPause)
	trial, _ = b.admit(now, 1)
	b.record(trial, nil, now)
	b.record(late, fail, now) // admitted two states ago
	for range breakerThreshold - 1 {
		t1, _ := b.admit(now, 1)
		b.record(t1, fail, now)
	}
	if err := b.refusal(now, 1); err != nil {
		t.Errorf("the trial succeeded, then %d failure(s) and an old one: %v, want calls allowed", breakerThreshold-1, err)
	}
}

// TestKeptAnswersOfTheCurrentOutage: an answer of an earlier outage (its
// call finished after the feed had caught up since) is not kept and takes
// no room from this outage's; a full map drops some answers for a new
// one, not all.
func TestKeptAnswersOfTheCurrentOutage(t *testing.T) {
	in := newIntrospections(1, time.Minute)
	now := time.Now()
	exp := now.Add(time.Hour)
	for i := range maxIntrospectionAnswers {
		in.keep(fmt.Sprint(i), true, exp, 2, 2, now)
	}
	in.keep("late", false, exp, 1, 2, now)
	if _, ok := in.answers["late"]; ok {
		t.Error("an answer of the last outage kept in this one")
	}
	if n := len(in.answers); n != maxIntrospectionAnswers {
		t.Errorf("%d answers of this outage left after a late one, want %d", n, maxIntrospectionAnswers)
	}
	in.keep("new", true, exp, 2, 2, now)
	if _, ok := in.answers["new"]; !ok {
		t.Error("a new answer not kept in a full map")
	}
	if n := len(in.answers); n > maxIntrospectionAnswers || n < maxIntrospectionAnswers*7/8 {
		t.Errorf("%d answers after a new one in a full map, want most of the %d kept", n, maxIntrospectionAnswers)
	}
}

// TestOwnTransportKeepsAConnectionPerIntrospection: the Verifier's own
// transport keeps idle as many connections as introspections may be in
// flight, rather than net/http's two, which would close most of them
// after each burst of a fallback.
func TestOwnTransportKeepsAConnectionPerIntrospection(t *testing.T) {
	srv, _ := feedServer(t, func(w http.ResponseWriter, r *http.Request, _ int64) { synced(w, r, "") })
	for _, tc := range []struct{ max, want int }{{0, defaultMaxIntrospections}, {40, 40}} {
		o := feedOptions(srv)
		o.MaxIntrospections = tc.max
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		v, err := New(ctx, o)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if got := v.transport.MaxIdleConnsPerHost; got != tc.want {
			t.Errorf("MaxIntrospections %d: %d idle connections kept, want %d", tc.max, got, tc.want)
		}
		v.Close()
	}
}
