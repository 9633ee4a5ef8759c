package sqlite

import (
	"context"
	"database/sql"
	"sync"
)

// stmts prepares each statement text once for the database: SQLite
// compiles SQL on every unprepared call, which was a tenth of a refresh's
// CPU, much of it inside the writer lane. database/sql keeps each
// statement prepared on every connection that ran it. The texts are the
// store's own (a bounded set); past maxStmts, statements run unprepared.
type stmts struct {
	db *sql.DB
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

const maxStmts = 512

// get returns the prepared statement of query, or nil to run it
// unprepared (the cache is full, or preparing failed: running it reports
// the error).
func (c *stmts) get(ctx context.Context, query string) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.m[query]; ok {
		return st
	}
	if len(c.m) >= maxStmts {
		return nil
	}
	st, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	if c.m == nil {
		c.m = map[string]*sql.Stmt{}
	}
	c.m[query] = st
	return st
}

func (c *stmts) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.m {
		st.Close()
	}
	c.m = nil
}

// txDB runs a transaction's statements prepared.
type txDB struct {
	tx *sql.Tx
	c  *stmts
}

func (d txDB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := d.c.get(ctx, query); st != nil {
		return d.tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return d.tx.ExecContext(ctx, query, args...)
}

func (d txDB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := d.c.get(ctx, query); st != nil {
		return d.tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	return d.tx.QueryContext(ctx, query, args...)
}

func (d txDB) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := d.c.get(ctx, query); st != nil {
		return d.tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return d.tx.QueryRowContext(ctx, query, args...)
}
