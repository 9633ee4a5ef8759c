package sqlite

import (
	"context"
	"database/sql"
	"time"

	"github.com/authd/authd"
)

// lane is the queue of the store's writers: one at a time, in the order
// they came (goroutines blocked on a channel are woken first in, first
// out).
type lane chan struct{}

// laneWait bounds a writer's wait for the lane, as busy_timeout bounds
// its wait for the lock: past it the database is busy (503, Retry-After).
var laneWait = 10 * time.Second // a variable for its test

// enter waits for the lane, for laneWait at most, or until ctx ends.
func (l lane) enter(ctx context.Context) error {
	select {
	case l <- struct{}{}: // free: no timer
		return nil
	default:
	}
	t := time.NewTimer(laneWait)
	defer t.Stop()
	select {
	case l <- struct{}{}:
		return nil
	case <-t.C:
		// Shed by design, as the hashing workers shed (logged sampled).
		return &authd.Error{Code: authd.EUnavailable, Message: "the database is busy", RetryAfter: time.Second,
			Err: authd.ErrBusy}
	case <-ctx.Done():
		return &authd.Error{Code: authd.EUnavailable, Message: "the database is busy", Err: ctx.Err()}
	}
}

func (l lane) leave() { <-l }

// laneDB is the database outside transactions: statements that write take
// the lane, reads run at once.
type laneDB struct {
	db    *sql.DB
	lane  lane
	stmts *stmts
	file  *dbFile // its writes are refused once the file was replaced (dbFile.check)
}

func (d laneDB) ExecContext(ctx context.Context, query string, args ...any) (res sql.Result, err error) {
	if err := d.lane.enter(ctx); err != nil {
		return nil, err
	}
	defer d.lane.leave()
	defer func() { dropReadOnly(d.db, err) }()
	if err := d.file.check(); err != nil {
		return nil, err
	}
	if st := d.stmts.get(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return d.db.ExecContext(ctx, query, args...)
}

// QueryContext and QueryRowContext run reads at once. A statement that
// writes and returns rows (UPDATE … RETURNING) writes as its rows are
// stepped, after these return, so the lane cannot cover it: the flows run
// such statements in transactions (InTx), and the store's own (ClaimMail)
// hold the lane while they read the rows.
func (d laneDB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := d.stmts.get(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return d.db.QueryContext(ctx, query, args...)
}

func (d laneDB) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := d.stmts.get(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return d.db.QueryRowContext(ctx, query, args...)
}
