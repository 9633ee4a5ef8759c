package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/storetest"
	"github.com/google/uuid"
)

// TestLiveSessionsReadByTheirIndex: the reads of a user's live sessions —
// the session limit every login applies, the list, ending every other
// session — use ix_sessions_user_id_live, so that a user with many ended
// sessions (kept a day after they end) does not make each of them read
// every one.
func TestLiveSessionsReadByTheirIndex(t *testing.T) {
	ctx := context.Background()
	s, _, _ := tracedStore(t)
	now := storetest.Epoch
	u := storetest.NewUser("many-sessions@example.org")
	if err := s.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	// 3,000 ended sessions and 3 live ones, in one statement.
	if _, err := s.pool.Exec(ctx, `INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, revoked_at)
		SELECT gen_random_uuid(), $1, $2, $2, $3, CASE WHEN i > 3 THEN $2::timestamptz END
		FROM generate_series(1, 3003) AS i`, u.ID, now.Add(-time.Hour), now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `ANALYZE sessions`); err != nil {
		t.Fatal(err)
	}
	reads := []struct {
		name string
		run  func(*queries) (int, error)
	}{
		{"Sessions", func(q *queries) (int, error) {
			l, err := q.Sessions(ctx, u.ID, now)
			return len(l), err
		}},
		{"ExcessSessions", func(q *queries) (int, error) {
			ids, err := q.ExcessSessions(ctx, u.ID, 1, now)
			return len(ids), err
		}},
		{"RevokeUserSessions", func(q *queries) (int, error) {
			ids, err := q.RevokeUserSessions(ctx, u.ID, uuid.Nil, now)
			return len(ids), err
		}},
	}
	wants := []int{3, 2, 3}
	for i, r := range reads {
		t.Run(r.name, func(t *testing.T) {
			err := s.inTx(ctx, func(q *queries) error {
				n, err := r.run(q)
				if err != nil {
					return err
				}
				if n != wants[i] {
					t.Errorf("%s found %d live sessions, want %d", r.name, n, wants[i])
				}
				// This transaction's scans of the index (the statement
				// above ran: a read sends the writes queued before it).
				var scans int64
				if err := q.row(ctx, `SELECT pg_stat_get_xact_numscans('ix_sessions_user_id_live'::regclass)`).Scan(&scans); err != nil {
					return err
				}
				if scans == 0 {
					t.Errorf("%s did not read ix_sessions_user_id_live", r.name)
				}
				return errRollback
			})
			if err != errRollback {
				t.Fatal(err)
			}
		})
	}
}

// errRollback ends a test's transaction without its effects.
var errRollback = &authd.Error{Code: authd.EInternal, Message: "rolled back by the test"}
