package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
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
	args  [][]any // each statement's
}

func (p *planned) plan(ctx context.Context, query string, args []any) {
	p.args = append(p.args, args)
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

// TestSecurityLogsListedByEvent: a listing of the security log by event
// (and result), first page or after a cursor, reads
// ix_security_logs_event_type in order, newest first — not every match
// and a sort (migration 27).
func TestSecurityLogsListedByEvent(t *testing.T) {
	ctx := context.Background()
	s, u := migratedWithUser(t, "logged@example.org")
	for i := range 30 {
		event := authd.EventTokenRefreshed
		if i%10 == 0 {
			event = authd.EventAccountLocked
		}
		l := authd.NewSecurityLog(storetest.Epoch.Add(time.Duration(i)*time.Second), event, authd.ResultSuccess, u.ID, "", "", "", nil)
		if err := s.CreateSecurityLog(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	cursor := &authd.Cursor{Time: storetest.Epoch.Add(20 * time.Second), ID: uuid.Max}
	for _, c := range []struct {
		name string
		f    authd.SecurityLogFilter
		want int
	}{
		{"an event and a result", authd.SecurityLogFilter{EventType: authd.EventAccountLocked, Result: authd.ResultSuccess}, 3},
		{"an event after a cursor", authd.SecurityLogFilter{EventType: authd.EventAccountLocked, After: cursor}, 3},
	} {
		p := &planned{db: s.db}
		logs, err := (&queries{db: p}).SecurityLogs(ctx, c.f)
		if err != nil {
			t.Fatal(err)
		}
		newestFirst := slices.IsSortedFunc(logs, func(a, b *authd.SecurityLog) int { return b.Timestamp.Compare(a.Timestamp) })
		if len(logs) != c.want || !newestFirst {
			t.Errorf("%s: %d rows, newest first %t; want %d, newest first", c.name, len(logs), newestFirst, c.want)
		}
		if plan := strings.Join(p.plans, "\n"); !strings.Contains(plan, "INDEX ix_security_logs_event_type") || strings.Contains(plan, "TEMP B-TREE") {
			t.Errorf("%s: plan\n%s\nwant a search of ix_security_logs_event_type, no sort", c.name, plan)
		}
	}
}

// TestUsersListedByStatus: the administrator's listing of users by status
// (alone, after a cursor, or with an email filter) reads
// ix_users_account_status in order, newest first — not every user of the
// status and a sort (migration 30: 1.1 s for the first page of 190,000
// active users before it, BenchmarkUsersByStatus).
func TestUsersListedByStatus(t *testing.T) {
	ctx := context.Background()
	s := openMigrated(t)
	var locked []*authd.User
	for i := range 30 {
		u := storetest.NewUser(fmt.Sprintf("user%d@example.org", i))
		u.CreatedAt = storetest.Epoch.Add(time.Duration(i) * time.Second)
		if i%3 == 0 {
			u.AccountStatus = authd.StatusLocked
			locked = append(locked, u)
		}
		if err := s.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	slices.Reverse(locked) // newest first
	cursor := &authd.Cursor{Time: locked[3].CreatedAt, ID: locked[3].ID}
	for _, c := range []struct {
		name string
		f    authd.UserFilter
		want []*authd.User
	}{
		{"a status", authd.UserFilter{Status: authd.StatusLocked}, locked},
		{"a status, a page", authd.UserFilter{Status: authd.StatusLocked, Limit: 4}, locked[:4]},
		{"a status after a cursor", authd.UserFilter{Status: authd.StatusLocked, After: cursor}, locked[4:]},
		{"a status and an address", authd.UserFilter{Status: authd.StatusLocked, Email: "user2"}, locked[:3]}, // user27, 24, 21
	} {
		p := &planned{db: s.db}
		users, err := (&queries{db: p}).users(ctx, c.f)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]string, len(users))
		for i, u := range users {
			got[i] = u.Email
		}
		want := make([]string, len(c.want))
		for i, u := range c.want {
			want[i] = u.Email
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: %v; want %v", c.name, got, want)
		}
		if plan := strings.Join(p.plans, "\n"); !strings.Contains(plan, "INDEX ix_users_account_status") || strings.Contains(plan, "TEMP B-TREE") {
			t.Errorf("%s: plan\n%s\nwant a search of ix_users_account_status, no sort", c.name, plan)
		}
	}
}

// TestSecurityLogsListedByUser: a listing of one user's security log
// (alone, by event or result, or after a cursor) reads
// ix_security_logs_user_id in order, newest first — not every row of the
// user and a sort (migration 28: 1.0-1.3 s a page for a user of 150,000
// rows before it) nor the event's whole part of its index for a user of a
// few rows.
func TestSecurityLogsListedByUser(t *testing.T) {
	ctx := context.Background()
	s := openMigrated(t)
	users := []*authd.User{storetest.NewUser("busy@example.org"), storetest.NewUser("quiet@example.org")}
	for _, u := range users {
		if err := s.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 40 {
		event, u := authd.EventTokenRefreshed, users[0]
		if i%10 == 0 {
			event, u = authd.EventAccountLocked, users[1]
		}
		l := authd.NewSecurityLog(storetest.Epoch.Add(time.Duration(i)*time.Second), event, authd.ResultSuccess, u.ID, "", "", "", nil)
		if err := s.CreateSecurityLog(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	cursor := &authd.Cursor{Time: storetest.Epoch.Add(25 * time.Second), ID: uuid.Max}
	for _, c := range []struct {
		name string
		f    authd.SecurityLogFilter
		want int
	}{
		{"a user", authd.SecurityLogFilter{UserID: users[0].ID}, 36},
		{"a user after a cursor", authd.SecurityLogFilter{UserID: users[0].ID, After: cursor}, 23},
		{"a user and a result", authd.SecurityLogFilter{UserID: users[0].ID, Result: authd.ResultSuccess}, 36},
		{"a user and an event", authd.SecurityLogFilter{UserID: users[1].ID, EventType: authd.EventAccountLocked}, 4},
		{"a user and another's event", authd.SecurityLogFilter{UserID: users[1].ID, EventType: authd.EventTokenRefreshed}, 0},
	} {
		p := &planned{db: s.db}
		logs, err := (&queries{db: p}).SecurityLogs(ctx, c.f)
		if err != nil {
			t.Fatal(err)
		}
		newestFirst := slices.IsSortedFunc(logs, func(a, b *authd.SecurityLog) int { return b.Timestamp.Compare(a.Timestamp) })
		mine := !slices.ContainsFunc(logs, func(l *authd.SecurityLog) bool { return l.UserID != c.f.UserID })
		if len(logs) != c.want || !newestFirst || !mine {
			t.Errorf("%s: %d rows, newest first %t, the user's alone %t; want %d, newest first, the user's",
				c.name, len(logs), newestFirst, mine, c.want)
		}
		if plan := strings.Join(p.plans, "\n"); !strings.Contains(plan, "INDEX ix_security_logs_user_id") || strings.Contains(plan, "TEMP B-TREE") {
			t.Errorf("%s: plan\n%s\nwant a search of ix_security_logs_user_id, no sort", c.name, plan)
		}
	}
}

// TestSecurityLogsPagedWithinARange: a page of a listing within since and
// until, after a cursor, is read back from the cursor — not from until,
// past every row between them (a probe, a million rows deep: 121 ms a
// page, 0.1 ms) — and holds the rows of the range before the cursor
// alone, also when the cursor is at or past until.
func TestSecurityLogsPagedWithinARange(t *testing.T) {
	ctx := context.Background()
	s, u := migratedWithUser(t, "ranged@example.org")
	at := func(i int) time.Time { return storetest.Epoch.Add(time.Duration(i) * time.Second) }
	for i := range 30 {
		l := authd.NewSecurityLog(at(i), authd.EventTokenRefreshed, authd.ResultSuccess, u.ID, "", "", "", nil)
		if err := s.CreateSecurityLog(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	since := at(5)
	for _, c := range []struct {
		name         string
		after, until time.Time
		newest, rows int  // the page's first row, and how many
		boundByUntil bool // the statement bounds the scan at until
	}{
		{"a cursor within the range", at(12), at(20), 12, 8, false},
		{"a cursor at until", at(20), at(20), 19, 15, true},
		{"a cursor past until", at(25), at(20), 19, 15, true},
		// Both within one microsecond, as stored: the cursor is not
		// before until there, and the row at that microsecond stays out.
		{"a cursor just below until", at(20).Add(100), at(20).Add(500), 19, 15, true},
	} {
		p := &planned{db: s.db}
		f := authd.SecurityLogFilter{Since: since, Until: c.until, After: &authd.Cursor{Time: c.after, ID: uuid.Max}}
		logs, err := (&queries{db: p}).SecurityLogs(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		if len(logs) != c.rows || !logs[0].Timestamp.Equal(at(c.newest)) || !logs[len(logs)-1].Timestamp.Equal(since) {
			t.Errorf("%s: %d rows (%v); want %d, %v to %v", c.name, len(logs), logTimes(logs), c.rows, at(c.newest), since)
		}
		// The cursor's time is an argument too: until's is looked for
		// where the two differ as stored.
		until := slices.Contains(p.args[0], any(timeText(c.until)))
		if timeText(c.after) != timeText(c.until) && until != c.boundByUntil {
			t.Errorf("%s: the statement bounds the scan at until: %t, want %t\n%s", c.name, until, c.boundByUntil, p.plans[0])
		}
	}
}

// logTimes is the times of logs, for a failure's message.
func logTimes(logs []*authd.SecurityLog) []time.Time {
	out := make([]time.Time, len(logs))
	for i, l := range logs {
		out[i] = l.Timestamp
	}
	return out
}

// TestPurgeSessionsGoOnAfterTheLastBatch: each batch of retention's
// sessions step reads the sessions after the last one the batch before
// picked, by their key, rather than from the first session again past
// every live one (the step's time grew with the square of its rows); its
// DELETE, which holds the writer lane, looks up the picked sessions by key
// rather than reading the live ones between them; and the step deletes
// the ended sessions and only them.
func TestPurgeSessionsGoOnAfterTheLastBatch(t *testing.T) {
	ctx := context.Background()
	s := openMigrated(t)
	now := storetest.Epoch
	u := storetest.NewUser("batches@example.org")
	if err := s.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	ended := map[uuid.UUID]bool{}
	for i := range 9 {
		sess := &authd.Session{ID: authd.NewID(), UserID: u.ID, CreatedAt: now.Add(-200 * time.Hour), LastUsedAt: now,
			ExpiresAt: now.Add(time.Hour)}
		if i%3 == 0 {
			sess.RevokedAt = now.Add(-100 * time.Hour)
		}
		ended[sess.ID] = i%3 == 0
		if err := s.CreateSession(ctx, sess); err != nil {
			t.Fatal(err)
		}
	}
	p := &planned{db: s.db}
	recorded := *s
	recorded.queries = queries{db: p}
	res, err := recorded.Purge(ctx, authd.PurgeRequest{LogsBefore: now.Add(-72 * time.Hour), ExpiredBefore: now.Add(-24 * time.Hour),
		Now: now, Batch: 1})
	if err != nil || res.Sessions != 3 {
		t.Fatalf("Purge in batches of 1 = %+v, %v; want the 3 ended sessions", res, err)
	}
	var picks []string // each pick's after
	for i, plan := range p.plans {
		switch {
		case strings.Contains(plan, "json_group_array"): // a pick
			picks = append(picks, p.args[i][1].(string))
			if !strings.Contains(plan, "sqlite_autoindex_sessions_1 (id>?") {
				t.Errorf("a pick after %q: plan\n%s\nwant a search of the key after the last batch's", p.args[i][1], plan)
			}
		case strings.Contains(plan, "DELETE FROM sessions"):
			if !strings.Contains(plan, "sqlite_autoindex_sessions_1 (id=?)") || strings.Contains(plan, "id>?") {
				t.Errorf("a sessions DELETE: plan\n%s\nwant the picked sessions looked up by key", plan)
			}
		}
	}
	// Batches of 1 among 3 ended: from the first session, then after
	// each ended one, the last finding none.
	increasing := true
	for i := 1; i < len(picks); i++ {
		increasing = increasing && picks[i] > picks[i-1]
	}
	if len(picks) != 4 || picks[0] != "" || !increasing {
		t.Errorf("the picks went on after %q; want 4, from the first session, each after the last picked", picks)
	}
	for id, end := range ended {
		if _, err := s.Session(ctx, id); (err == nil) == end {
			t.Errorf("session ended %t after the step: %v", end, err)
		}
	}
}

// rowCounts is a dbtx that records the rows each statement it runs changed.
type rowCounts struct {
	dbtx
	rows []int64
}

func (a *rowCounts) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	res, err := a.dbtx.ExecContext(ctx, query, args...)
	if err == nil {
		n, _ := res.RowsAffected()
		a.rows = append(a.rows, n)
	}
	return res, err
}

// TestPurgeStatementsDeleteSmallBatches: a retention statement deletes at
// most purgeBatch rows, below the request's batch, since every other write
// waits behind it in the lane; a request that asks no batch size (0) gets
// the store's; the purge still deletes every row due.
func TestPurgeStatementsDeleteSmallBatches(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // a guard: a purge that never ends fails
	defer cancel()
	s := openMigrated(t)
	const due = 2*purgeBatch + 50
	for _, asked := range []int{1000, 0} {
		for i := range due {
			l := authd.NewSecurityLog(storetest.Epoch.Add(-time.Duration(i+1)*time.Second), authd.EventTokenRefreshed,
				authd.ResultSuccess, uuid.Nil, "", "", "", nil)
			if err := s.CreateSecurityLog(ctx, l); err != nil {
				t.Fatal(err)
			}
		}
		a := &rowCounts{dbtx: s.queries.db}
		recorded := *s
		recorded.queries = queries{db: a}
		res, err := recorded.Purge(ctx, authd.PurgeRequest{LogsBefore: storetest.Epoch, ExpiredBefore: storetest.Epoch,
			Now: storetest.Epoch, Batch: asked})
		if err != nil || res.SecurityLogs != due {
			t.Fatalf("Purge asking batches of %d = %+v, %v; want %d security logs", asked, res, err, due)
		}
		if most := slices.Max(a.rows); most != purgeBatch {
			t.Errorf("asking batches of %d, a statement deleted up to %d rows (all: %v); want %d", asked, most, a.rows, purgeBatch)
		}
	}
}

// TestPurgeTokensInSmallerBatches: the tokens step deletes at most
// tokenPurgeBatch rows a statement (each an expired token scattered among
// live ones in the table and its eight indexes: 100 held the lane 45 ms in
// BenchmarkPurgeTokens, 25 12 ms), whatever the request asks, and every
// token due.
func TestPurgeTokensInSmallerBatches(t *testing.T) {
	ctx := context.Background()
	s := openMigrated(t)
	now := storetest.Epoch
	u := storetest.NewUser("tokens@example.org")
	if err := s.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	sess := &authd.Session{ID: authd.NewID(), UserID: u.ID, CreatedAt: now, LastUsedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := s.CreateSession(ctx, sess); err != nil {
		t.Fatal(err)
	}
	const due = 2*tokenPurgeBatch + 5
	for _, asked := range []int{1000, 0} {
		for i := range due {
			tok := &authd.Token{ID: authd.NewID(), JTI: authd.NewID().String(), UserID: u.ID, SessionID: sess.ID,
				TokenType: authd.TokenRefresh, TokenValue: authd.Digest(fmt.Sprint(asked, i)),
				IssuedAt: now.Add(-2 * time.Hour), ExpiresAt: now.Add(-time.Hour), CreatedAt: now.Add(-2 * time.Hour)}
			if err := s.CreateToken(ctx, tok); err != nil {
				t.Fatal(err)
			}
		}
		a := &rowCounts{dbtx: s.queries.db}
		recorded := *s
		recorded.queries = queries{db: a}
		res, err := recorded.Purge(ctx, authd.PurgeRequest{LogsBefore: now, ExpiredBefore: now, Now: now, Batch: asked})
		if err != nil || res.Tokens != due {
			t.Fatalf("Purge asking batches of %d = %+v, %v; want %d tokens", asked, res, err, due)
		}
		if most := slices.Max(a.rows); most != tokenPurgeBatch {
			t.Errorf("asking batches of %d, a statement deleted up to %d rows (all: %v); want %d", asked, most, a.rows, tokenPurgeBatch)
		}
	}
}

// TestClientSessionsOfOneUserReadByTheirIndex: ending one user's sessions
// of a client (a consent withdrawn) reads that user's live sessions, not
// every session the client ever had, in the writer lane.
func TestClientSessionsOfOneUserReadByTheirIndex(t *testing.T) {
	ctx := context.Background()
	s, u := migratedWithUser(t, "one-user@example.org")
	now := storetest.Epoch
	sess := &authd.Session{ID: authd.NewID(), UserID: u.ID, ClientID: "app", CreatedAt: now, LastUsedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := s.CreateSession(ctx, sess); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		user  uuid.UUID
		index string
	}{"one user's": {u.ID, "ix_sessions_user_id_live"}, "every user's": {uuid.Nil, "ix_sessions_client_id"}} {
		p := &planned{db: s.db}
		ids, err := (&queries{db: p}).RevokeClientSessions(ctx, "app", c.user, now)
		if err != nil || len(ids) != 1 {
			t.Fatalf("%s: %v, %v; want the session", name, ids, err)
		}
		if len(p.plans) == 0 || !strings.Contains(p.plans[0], "USING INDEX "+c.index) {
			t.Errorf("%s: plans\n%s\nwant a search of %s", name, strings.Join(p.plans, "\n"), c.index)
		}
		if _, err := s.db.ExecContext(ctx, `UPDATE sessions SET revoked_at = NULL`); err != nil { // for the next
			t.Fatal(err)
		}
	}
}
