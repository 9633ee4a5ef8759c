package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/storetest"
	"github.com/google/uuid"
)

// BenchmarkPurgeLogs: one op is one retention statement on security_logs,
// which holds the writer lane (every other write waits behind it) for its
// time: the batch's rows go from the table and its four indexes, among
// 100,000 newer rows that stay.
func BenchmarkPurgeLogs(b *testing.B) {
	for _, batch := range []int{1000, purgeBatch} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			ctx := context.Background()
			s, u := migratedWithUser(b, "logged@example.org")
			cut := storetest.Epoch
			old := b.N * batch
			// old rows a millisecond apart before cut, then 100,000 after it.
			if _, err := s.db.ExecContext(ctx, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1 + 100000)
				INSERT INTO security_logs (id, event_type, user_id, "timestamp", ip_address, user_agent, result)
				SELECT printf('%08x-0000-4000-8000-%012x', i, i), CASE WHEN i % 2 = 0 THEN 'token_refreshed' ELSE 'login_success' END,
					?2, strftime('%Y-%m-%dT%H:%M:%fZ', ?3, printf('%+.3f seconds', (i - ?1 - 1) / 1000.0)), '192.0.2.1', 'bench', 'success'
				FROM n`, old, u.ID, timeText(cut)); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			start := time.Now()
			res, err := s.Purge(ctx, authd.PurgeRequest{LogsBefore: cut, ExpiredBefore: cut, Now: cut, Batch: batch})
			elapsed := time.Since(start)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			if res.SecurityLogs != old {
				b.Fatalf("purged %d rows, want %d", res.SecurityLogs, old)
			}
			b.ReportMetric(float64(elapsed.Microseconds())/float64(old)*1000, "ns/row")
		})
	}
}

// BenchmarkPurgeSessions: one op is one purge of 400 ended sessions, one in
// 125 among 50,000 live ones (so each deleted row is a page of its own and
// of each index), in the store's batches; lane-ns/batch is the time its
// statements that write held the writer lane, per batch.
func BenchmarkPurgeSessions(b *testing.B) {
	const ended, live = 400, 50000
	ctx := context.Background()
	s, u := migratedWithUser(b, "sessions@example.org")
	cut := storetest.Epoch
	lane := &laneTime{dbtx: s.queries.db}
	timed := *s
	timed.queries = queries{db: lane}
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		// Session i is ended when i is a multiple of 126 (400 of them), live otherwise.
		if _, err := s.db.ExecContext(ctx, `DELETE FROM sessions`); err != nil {
			b.Fatal(err)
		}
		if _, err := s.db.ExecContext(ctx, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1 + ?2)
			INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, revoked_at)
			SELECT printf('%08x-0000-4000-8000-%012x', i, i), ?3, ?4, ?5, ?5, CASE WHEN i % 126 = 0 THEN ?4 END
			FROM n`, ended, live, u.ID, timeText(cut.Add(-100*time.Hour)), timeText(cut.Add(time.Hour))); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		res, err := timed.Purge(ctx, authd.PurgeRequest{LogsBefore: cut, ExpiredBefore: cut, Now: cut})
		if err != nil || res.Sessions != ended {
			b.Fatalf("purged %d sessions, %v; want %d", res.Sessions, err, ended)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(lane.held.Nanoseconds())/float64(b.N*ended/purgeBatch), "lane-ns/batch")
}

// laneTime is a dbtx that adds up the time its statements that write
// (ExecContext: in the lane) took.
type laneTime struct {
	dbtx
	held time.Duration
}

func (l *laneTime) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	start := time.Now()
	defer func() { l.held += time.Since(start) }()
	return l.dbtx.ExecContext(ctx, query, args...)
}

// BenchmarkSecurityLogInsert: one op is one audit row (what every flow
// writes), of one of 1,000 users in turn, into a log of 200,000 rows of
// theirs: each row goes to the end of its user's part of
// ix_security_logs_user_id (migration 28 made its entries the user, the
// time and the id). Migration 28 before and after, 50,000 ops each, five
// rounds alternating (a busy machine): 137-235 µs a row (median 157)
// before, 162-189 µs (median 174) after, about a tenth more.
func BenchmarkSecurityLogInsert(b *testing.B) {
	const users, rows = 1000, 200000
	ctx := context.Background()
	s := openMigrated(b)
	ids := make([]uuid.UUID, users)
	for i := range ids {
		u := storetest.NewUser(fmt.Sprintf("user%d@example.org", i))
		u.ID = uuid.MustParse(fmt.Sprintf("%08x-0000-4000-8000-000000000000", i)) // as the bulk rows name it
		if err := s.CreateUser(ctx, u); err != nil {
			b.Fatal(err)
		}
		ids[i] = u.ID
	}
	if _, err := s.db.ExecContext(ctx, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
		INSERT INTO security_logs (id, event_type, user_id, "timestamp", ip_address, user_agent, result)
		SELECT printf('%08x-0000-4000-8000-%012x', i, i), 'token_refreshed', printf('%08x-0000-4000-8000-000000000000', i % ?2),
			strftime('%Y-%m-%dT%H:%M:%fZ', ?3, printf('%+.3f seconds', (i - ?1) / 1000.0)), '192.0.2.1', 'bench', 'success'
		FROM n`, rows, users, timeText(storetest.Epoch)); err != nil {
		b.Fatal(err)
	}
	// A commit every 1,000 rows, so that the rows' pages, not the disk's
	// flushes, are what is measured.
	var tx *sql.Tx
	b.ResetTimer()
	for i := range b.N {
		var err error
		if tx == nil {
			if tx, err = s.db.BeginTx(ctx, nil); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO security_logs (id, event_type, user_id, "timestamp", ip_address, user_agent, result)
			VALUES (?, 'token_refreshed', ?, ?, '192.0.2.1', 'bench', 'success')`,
			authd.NewID(), ids[i%users], timeText(storetest.Epoch.Add(time.Duration(i)*time.Millisecond))); err != nil {
			b.Fatal(err)
		}
		if i%1000 == 999 || i == b.N-1 {
			if err := tx.Commit(); err != nil {
				b.Fatal(err)
			}
			tx = nil
		}
	}
}

// BenchmarkPurgeTokens: one op is one purge of 400 expired refresh tokens,
// one in 126 among 50,000 live ones (each deleted row a page of its own in
// the table and in each of its eight indexes), in batches of the size
// named; lane-ns/batch is the time its statements held the writer lane,
// per batch.
func BenchmarkPurgeTokens(b *testing.B) {
	const expired, live, sessions = 400, 50000, 1000
	for _, batch := range []int{purgeBatch, tokenPurgeBatch} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			ctx := context.Background()
			s, u := migratedWithUser(b, "tokens@example.org")
			cut := storetest.Epoch
			if _, err := s.db.ExecContext(ctx, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
				INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at)
				SELECT printf('%08x-0000-4000-8000-%012x', i, i), ?2, ?3, ?3, ?4 FROM n`,
				sessions, u.ID, timeText(cut.Add(-100*time.Hour)), timeText(cut.Add(time.Hour))); err != nil {
				b.Fatal(err)
			}
			lane := &laneTime{dbtx: s.queries.db}
			timed := *s
			timed.queries = queries{db: lane}
			batches := 0
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				// Token i expired when i is a multiple of 126 (400 of them), live otherwise.
				if _, err := s.db.ExecContext(ctx, `DELETE FROM jwt_tokens`); err != nil {
					b.Fatal(err)
				}
				if _, err := s.db.ExecContext(ctx, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1 + ?2)
					INSERT INTO jwt_tokens (id, jti, user_id, token_type, token_value, issued_at, expires_at, created_at, session_id)
					SELECT printf('%08x-0000-4000-8000-%012x', abs(random()) % 4294967296, i), printf('%064x', i), ?3, 'refresh',
						hex(randomblob(32)), ?4, CASE WHEN i % 126 = 0 THEN ?4 ELSE ?5 END, ?4,
						printf('%08x-0000-4000-8000-%012x', i % ?6 + 1, i % ?6 + 1)
					FROM n`, expired, live, u.ID, timeText(cut.Add(-100*time.Hour)), timeText(cut.Add(time.Hour)), sessions); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				res, err := timed.Purge(ctx, authd.PurgeRequest{LogsBefore: cut, ExpiredBefore: cut, Now: cut, Batch: batch})
				if err != nil || res.Tokens != expired {
					b.Fatalf("purged %d tokens, %v; want %d", res.Tokens, err, expired)
				}
				batches += (expired + batch - 1) / batch
			}
			b.StopTimer()
			b.ReportMetric(float64(lane.held.Nanoseconds())/float64(batches), "lane-ns/batch")
		})
	}
}

// BenchmarkWritesBehindALongRead: one op is one run of 4 s in which eight
// writers commit, each as fast as it can, a transaction of an audit row
// and an update of its user (a flow's writes), while a read transaction
// holds one snapshot for the first 2 s (as an export does): the WAL cannot
// be checkpointed past it and grows (read=0: no such read). Reported: the
// writes' p50, p99 and longest, and the WAL file's size after.
func BenchmarkWritesBehindALongRead(b *testing.B) {
	for _, read := range []time.Duration{0, 2 * time.Second} {
		b.Run(fmt.Sprintf("read=%s", read), func(b *testing.B) { benchmarkWritesBehindARead(b, read) })
	}
}

func benchmarkWritesBehindARead(b *testing.B, read time.Duration) {
	const writers, run = 8, 4 * time.Second
	ctx := context.Background()
	s := openMigrated(b)
	users := make([]*authd.User, writers)
	for i := range users {
		users[i] = storetest.NewUser(fmt.Sprintf("writer%d@example.org", i))
		if err := s.CreateUser(ctx, users[i]); err != nil {
			b.Fatal(err)
		}
	}
	var all []time.Duration
	for range b.N {
		reader, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
		if err != nil {
			b.Fatal(err)
		}
		var n int
		if err := reader.QueryRowContext(ctx, `SELECT count(*) FROM security_logs`).Scan(&n); err != nil {
			b.Fatal(err)
		}
		end := time.Now().Add(run)
		took := make([][]time.Duration, writers)
		var wg sync.WaitGroup
		for w, u := range users {
			wg.Go(func() {
				for time.Now().Before(end) {
					start := time.Now()
					err := s.InTx(ctx, func(q authd.Queries) error {
						if err := q.CreateSecurityLog(ctx, authd.NewSecurityLog(start, authd.EventTokenRefreshed, authd.ResultSuccess,
							u.ID, "192.0.2.1", "bench", "", map[string]any{"session_id": authd.NewID().String()})); err != nil {
							return err
						}
						u.UpdatedAt = start
						return q.UpdateUser(ctx, u)
					})
					if err != nil {
						b.Error(err)
						return
					}
					took[w] = append(took[w], time.Since(start))
				}
			})
		}
		time.Sleep(read)
		reader.Rollback() //nolint:errcheck // read-only
		wg.Wait()
		for _, t := range took {
			all = append(all, t...)
		}
	}
	slices.Sort(all)
	if len(all) == 0 {
		b.Fatal("no write")
	}
	b.ReportMetric(float64(all[len(all)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(all[len(all)*99/100].Nanoseconds()), "p99-ns")
	b.ReportMetric(float64(all[len(all)-1].Nanoseconds()), "max-ns")
	b.ReportMetric(float64(len(all))/float64(b.N)/run.Seconds(), "writes/s")
	if fi, err := os.Stat(s.file.path + "-wal"); err == nil {
		b.ReportMetric(float64(fi.Size())/(1<<20), "wal-MiB")
	}
}

// BenchmarkUsersByStatus: one op is one page (50) of the administrator's
// listing of users by status, newest first, among 200,000 users of whom
// 190,000 are active and 10,000 locked: the first page, and one after
// 100,000 rows of the status (active) or 5,000 (locked). Before migration
// 30 (status alone in the index): 1.1 s and 0.57 s (active), 96 and 69 ms
// (locked); after: 1.0-1.4 ms each.
func BenchmarkUsersByStatus(b *testing.B) {
	const users = 200000
	ctx := context.Background()
	s := openMigrated(b)
	if _, err := s.db.ExecContext(ctx, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
		INSERT INTO users (id, email, password_hash, account_status, created_at, updated_at)
		SELECT printf('%08x-0000-4000-8000-%012x', i, i), 'user' || i || '@example.org', 'x',
			CASE WHEN i % 20 = 0 THEN 'locked' ELSE 'active' END,
			strftime('%Y-%m-%dT%H:%M:%fZ', ?2, printf('+%d seconds', i)), ?2
		FROM n`, users, timeText(storetest.Epoch)); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		status authd.AccountStatus
		deep   int // the i of the row the page continues after
	}{{authd.StatusActive, users / 2}, {authd.StatusLocked, users / 2}} {
		for _, deep := range []bool{false, true} {
			f := authd.UserFilter{Status: c.status, Limit: 50}
			if deep {
				f.After = &authd.Cursor{Time: storetest.Epoch.Add(time.Duration(c.deep) * time.Second),
					ID: uuid.MustParse(fmt.Sprintf("%08x-0000-4000-8000-%012x", c.deep, c.deep))}
			}
			b.Run(fmt.Sprintf("status=%s/deep=%v", c.status, deep), func(b *testing.B) {
				for range b.N {
					if got, err := s.Users(ctx, f); err != nil || len(got) != 50 {
						b.Fatalf("%d users, %v", len(got), err)
					}
				}
			})
		}
	}
}
