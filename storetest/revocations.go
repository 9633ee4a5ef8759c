package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/google/uuid"
)

// testRevocationEvents: a published revocation becomes feed events — one
// per session and one for the user when set — in order, after a given id,
// never past their expiry, never from a rolled-back transaction; retention
// deletes the expired ones.
func testRevocationEvents(t *testing.T, s authd.Store) {
	ctx := context.Background()
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	until := at.Add(15 * time.Minute)
	user, s1, s2 := uuid.New(), uuid.New(), uuid.New()
	publish := func(rev authd.Revocation) error {
		return s.InTx(ctx, func(tx authd.Queries) error { return tx.PublishRevocation(ctx, rev) })
	}
	if err := publish(authd.Revocation{At: at, Until: until, SessionIDs: []uuid.UUID{s1, s2}, UserID: user,
		Reason: "logout_all"}); err != nil {
		t.Fatalf("PublishRevocation: %v", err)
	}
	rolledBack := errors.New("roll back")
	if err := s.InTx(ctx, func(tx authd.Queries) error {
		if err := tx.PublishRevocation(ctx, authd.Revocation{At: at, Until: until, SessionIDs: []uuid.UUID{uuid.New()}}); err != nil {
			return err
		}
		return rolledBack
	}); !errors.Is(err, rolledBack) {
		t.Fatalf("rolled-back PublishRevocation: %v", err)
	}
	late := authd.Revocation{At: at.Add(time.Minute), Until: until.Add(time.Minute), SessionIDs: []uuid.UUID{uuid.New()},
		Reason: "logout"}
	if err := publish(late); err != nil {
		t.Fatalf("PublishRevocation: %v", err)
	}

	got, err := s.RevocationEvents(ctx, 0, at, 100)
	if err != nil {
		t.Fatalf("RevocationEvents: %v", err)
	}
	want := []authd.RevocationEvent{
		{Kind: authd.RevokedSession, Subject: s1, Reason: "logout_all", ExpiresAt: until, CreatedAt: at},
		{Kind: authd.RevokedSession, Subject: s2, Reason: "logout_all", ExpiresAt: until, CreatedAt: at},
		{Kind: authd.RevokedUser, Subject: user, Reason: "logout_all", ExpiresAt: until, CreatedAt: at},
		{Kind: authd.RevokedSession, Subject: late.SessionIDs[0], Reason: "logout", ExpiresAt: late.Until, CreatedAt: late.At},
	}
	if len(got) != len(want) {
		t.Fatalf("RevocationEvents = %+v, want %d events", got, len(want))
	}
	for i := range want {
		g := got[i]
		if i > 0 && g.ID <= got[i-1].ID {
			t.Errorf("event %d has id %d after %d, want increasing ids", i, g.ID, got[i-1].ID)
		}
		want[i].ID = g.ID
		if g.Kind != want[i].Kind || g.Subject != want[i].Subject || g.Reason != want[i].Reason ||
			!g.ExpiresAt.Equal(want[i].ExpiresAt) || !g.CreatedAt.Equal(want[i].CreatedAt) {
			t.Errorf("event %d = %+v, want %+v", i, g, want[i])
		}
	}

	after, err := s.RevocationEvents(ctx, got[1].ID, at, 1)
	if err != nil || len(after) != 1 || after[0].ID != got[2].ID {
		t.Errorf("RevocationEvents(after %d, limit 1) = %+v, %v; want event %d", got[1].ID, after, err, got[2].ID)
	}
	// At until the first three have expired: only the late one is served.
	live, err := s.RevocationEvents(ctx, 0, until, 100)
	if err != nil || len(live) != 1 || live[0].ID != got[3].ID {
		t.Errorf("RevocationEvents at %v = %+v, %v; want only event %d", until, live, err, got[3].ID)
	}
	// From a seen event: that event first, expired or not, then the live
	// ones after it; without it (never written, or deleted), only those.
	ids := func(evs []authd.RevocationEvent) []int64 {
		var out []int64
		for _, e := range evs {
			out = append(out, e.ID)
		}
		return out
	}
	for _, c := range []struct {
		name  string
		seen  int64
		now   time.Time
		limit int
		want  []int64
	}{
		{"a live event", got[1].ID, at, 100, []int64{got[1].ID, got[2].ID, got[3].ID}},
		{"a live event, limited", got[1].ID, at, 2, []int64{got[1].ID, got[2].ID}},
		{"an expired event", got[1].ID, until, 100, []int64{got[1].ID, got[3].ID}},
		{"the last event, expired", got[3].ID, late.Until, 100, []int64{got[3].ID}},
		{"an id never written", got[3].ID + 1000, at, 100, nil},
		{"an id before every event", got[0].ID - 1, until, 100, []int64{got[3].ID}},
	} {
		from, err := s.RevocationEventsFrom(ctx, c.seen, c.now, c.limit)
		if err != nil || fmt.Sprint(ids(from)) != fmt.Sprint(c.want) {
			t.Errorf("RevocationEventsFrom(%s: %d, at %v, limit %d) = %v, %v; want %v", c.name, c.seen, c.now, c.limit,
				ids(from), err, c.want)
		}
		for _, e := range from { // whole events: a reader compares their marks
			if i := slices.IndexFunc(got, func(g authd.RevocationEvent) bool { return g.ID == e.ID }); i < 0 || e.Mark() != got[i].Mark() {
				t.Errorf("RevocationEventsFrom(%s) read %+v, not the event written", c.name, e)
			}
		}
	}

	res, err := s.Purge(ctx, authd.PurgeRequest{LogsBefore: at.Add(-time.Hour), ExpiredBefore: at.Add(-time.Hour),
		Now: until.Add(time.Second), Batch: 2})
	if err != nil || res.RevocationEvents != 3 {
		t.Errorf("Purge = %+v, %v; want 3 revocation events deleted", res, err)
	}
	left, err := s.RevocationEvents(ctx, 0, at, 100)
	if err != nil || len(left) != 1 || left[0].ID != got[3].ID {
		t.Errorf("after the purge: %+v, %v; want only event %d", left, err, got[3].ID)
	}
	if from, err := s.RevocationEventsFrom(ctx, got[1].ID, at, 100); err != nil || fmt.Sprint(ids(from)) != fmt.Sprint([]int64{got[3].ID}) {
		t.Errorf("RevocationEventsFrom(a deleted event) = %v, %v; want only event %d", ids(from), err, got[3].ID)
	}
}

// testRevocationEventsNeverSkipped: a reader that always asks for the
// events after the last id it saw, while many transactions publish at
// once, ends up with every event — ids never become visible out of order.
func testRevocationEventsNeverSkipped(t *testing.T, s authd.Store) {
	ctx := context.Background()
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	const writers, each = 8, 10
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for range each {
				err := s.InTx(ctx, func(tx authd.Queries) error {
					// Another statement before the publication, as flows have.
					if _, err := tx.User(ctx, uuid.New()); authd.ErrorCode(err) != authd.ENotFound {
						return err
					}
					return tx.PublishRevocation(ctx, authd.Revocation{At: at, Until: at.Add(time.Hour),
						SessionIDs: []uuid.UUID{uuid.New()}})
				})
				if err != nil {
					t.Errorf("PublishRevocation: %v", err)
					return
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	seen := map[int64]bool{}
	var last int64
	read := func() {
		evs, err := s.RevocationEvents(ctx, last, at, 1000)
		if err != nil {
			t.Fatalf("RevocationEvents: %v", err)
		}
		for _, e := range evs {
			seen[e.ID] = true
			last = e.ID
		}
	}
	for finished := false; !finished; {
		select {
		case <-done:
			finished = true
		default:
		}
		read()
	}
	read()
	all, err := s.RevocationEvents(ctx, 0, at, 1000)
	if err != nil {
		t.Fatalf("RevocationEvents: %v", err)
	}
	if len(all) != writers*each {
		t.Fatalf("%d events, want %d", len(all), writers*each)
	}
	for _, e := range all {
		if !seen[e.ID] {
			t.Errorf("the reader following the feed never saw event %d", e.ID)
		}
	}
}

// testLastRevocationEventID: the highest id written, expired or not.
func testLastRevocationEventID(t *testing.T, s authd.Store) {
	ctx := context.Background()
	if id, err := s.LastRevocationEventID(ctx); err != nil || id != 0 {
		t.Errorf("empty table: %d, %v; want 0", id, err)
	}
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := s.InTx(ctx, func(tx authd.Queries) error {
		return tx.PublishRevocation(ctx, authd.Revocation{At: at, Until: at, SessionIDs: []uuid.UUID{uuid.New(), uuid.New()}})
	}); err != nil {
		t.Fatal(err)
	}
	evs, _ := s.RevocationEvents(ctx, 0, at.Add(-time.Hour), 10)
	if id, err := s.LastRevocationEventID(ctx); err != nil || len(evs) != 2 || id != evs[1].ID {
		t.Errorf("LastRevocationEventID = %d, %v; want %v's last", id, err, evs)
	}
}
