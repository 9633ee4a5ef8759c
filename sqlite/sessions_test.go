package sqlite

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/storetest"
	"github.com/google/uuid"
)

// planned is a dbtx that runs each statement on db and records SQLite's
// query plan for it.
type planned struct {
	db    *sql.DB
	plans []string
}

func (p *planned) plan(ctx context.Context, query string, args []any) {
	rows, err := p.db.QueryContext(ctx, "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		p.plans = append(p.plans, "EXPLAIN failed: "+err.Error())
		return
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			b.WriteString("scan failed: " + err.Error())
			break
		}
		b.WriteString(detail + "; ")
	}
	p.plans = append(p.plans, query+"\n\t→ "+b.String())
}

func (p *planned) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	p.plan(ctx, query, args)
	return p.db.ExecContext(ctx, query, args...)
}

func (p *planned) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	p.plan(ctx, query, args)
	return p.db.QueryContext(ctx, query, args...)
}

func (p *planned) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	p.plan(ctx, query, args)
	return p.db.QueryRowContext(ctx, query, args...)
}

// TestLiveSessionsReadByTheirIndex: the reads of a user's live sessions —
// the session limit every login applies, the list, ending every other
// session — use ix_sessions_user_id_live, so that a user with many ended
// sessions (kept a day after they end) does not make each of them read
// every one.
func TestLiveSessionsReadByTheirIndex(t *testing.T) {
	ctx := context.Background()
	s := openMigrated(t)
	now := storetest.Epoch
	u := storetest.NewUser("many-sessions@example.org")
	if err := s.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	for i := range 303 {
		sess := &authd.Session{ID: authd.NewID(), UserID: u.ID, CreatedAt: now.Add(-time.Hour), LastUsedAt: now.Add(-time.Hour),
			ExpiresAt: now.Add(time.Hour)}
		if i >= 3 {
			sess.RevokedAt = now.Add(-time.Hour)
		}
		if err := s.CreateSession(ctx, sess); err != nil {
			t.Fatal(err)
		}
	}
	reads := []struct {
		name string
		want int
		run  func(*queries) (int, error)
	}{
		{"Sessions", 3, func(q *queries) (int, error) {
			l, err := q.Sessions(ctx, u.ID, now)
			return len(l), err
		}},
		{"ExcessSessions", 2, func(q *queries) (int, error) {
			ids, err := q.excessSessions(ctx, u.ID, 1, now)
			return len(ids), err
		}},
		{"RevokeUserSessions", 3, func(q *queries) (int, error) {
			ids, err := q.RevokeUserSessions(ctx, u.ID, uuid.Nil, now)
			return len(ids), err
		}},
	}
	for _, r := range reads {
		t.Run(r.name, func(t *testing.T) {
			p := &planned{db: s.db}
			n, err := r.run(&queries{db: p})
			if err != nil {
				t.Fatal(err)
			}
			if n != r.want {
				t.Errorf("%s found %d live sessions, want %d", r.name, n, r.want)
			}
			// Its statement on sessions (the first; the tokens' follow).
			if len(p.plans) == 0 || !strings.Contains(p.plans[0], "ix_sessions_user_id_live") {
				t.Errorf("%s did not use ix_sessions_user_id_live:\n%s", r.name, strings.Join(p.plans, "\n"))
			}
		})
	}
}
