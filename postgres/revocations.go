package postgres

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/authd/authd"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

var _ authd.RevocationFeed = (*Store)(nil)

// RevocationEvents implements authd.Store.
func (s *Store) RevocationEvents(ctx context.Context, after int64, now time.Time, limit int) ([]authd.RevocationEvent, error) {
	return s.revocationEvents(ctx, `SELECT id, kind, subject_id, reason, expires_at, created_at
		FROM revocation_events WHERE id > $1 AND expires_at > $2 ORDER BY id LIMIT $3`, after, now, limit)
}

// RevocationEventsFrom implements authd.Store.
func (s *Store) RevocationEventsFrom(ctx context.Context, seen int64, now time.Time, limit int) ([]authd.RevocationEvent, error) {
	return s.revocationEvents(ctx, `SELECT id, kind, subject_id, reason, expires_at, created_at
		FROM revocation_events WHERE id >= $1 AND (id = $1 OR expires_at > $2) ORDER BY id LIMIT $3`, seen, now, limit)
}

// revocationEvents runs query, a read of revocation events.
func (s *Store) revocationEvents(ctx context.Context, query string, args ...any) ([]authd.RevocationEvent, error) {
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, translate(err)
	}
	defer rows.Close()
	var out []authd.RevocationEvent
	for rows.Next() {
		var e authd.RevocationEvent
		if err := rows.Scan(&e.ID, &e.Kind, &e.Subject, &e.Reason, &e.ExpiresAt, &e.CreatedAt); err != nil {
			return nil, translate(err)
		}
		out = append(out, e)
	}
	return out, translate(rows.Err())
}

// LastRevocationEventID implements authd.Store.
func (s *Store) LastRevocationEventID(ctx context.Context) (int64, error) {
	var id int64
	err := s.pool.QueryRow(ctx, `SELECT coalesce(max(id), 0) FROM revocation_events`).Scan(&id)
	return id, translate(err)
}

// revocationEventsLock is the transaction-level advisory lock under which
// a transaction inserts its revocation events and commits. A sequence hands
// out ids when asked, not when their transactions commit: without the lock,
// a reader could see id 11 committed while 10 is still in flight, move past
// it and never see 10. With it, the transaction that took id n has
// committed (and its rows are visible: locks are released after that)
// before any other can take n+1. The insert comes last in the
// transaction, just before COMMIT, so the lock is held only that long and
// nothing is waited for while holding it (no deadlock).
const revocationEventsLock = 0x61757468645f7276 // "authd_rv"

// insertRevocationEvents queues, at the end of a transaction, the feed
// events of every revocation it published.
func (q *queries) insertRevocationEvents(ctx context.Context) error {
	if len(q.revocations) == 0 {
		return nil
	}
	var kinds []string
	var subjects []uuid.UUID
	var reasons []string
	var expires, created []time.Time
	for _, rev := range q.revocations {
		for _, e := range rev.Events() {
			kinds, subjects, reasons = append(kinds, string(e.Kind)), append(subjects, e.Subject), append(reasons, e.Reason)
			expires, created = append(expires, e.ExpiresAt), append(created, e.CreatedAt)
		}
	}
	q.revocations = nil
	if err := q.write(ctx, nil, `SELECT pg_advisory_xact_lock($1)`, int64(revocationEventsLock)); err != nil {
		return err
	}
	return q.write(ctx, nil, `INSERT INTO revocation_events (kind, subject_id, reason, expires_at, created_at)
		SELECT kind, subject_id, reason, expires_at, created_at FROM unnest($1::text[], $2::uuid[], $3::text[], $4::timestamptz[], $5::timestamptz[])
		WITH ORDINALITY AS e(kind, subject_id, reason, expires_at, created_at, n) ORDER BY n`,
		kinds, subjects, reasons, expires, created)
}

// RevokedSessions implements authd.Store (index ix_sessions_revoked_at).
func (s *Store) RevokedSessions(ctx context.Context, since time.Time) ([]authd.Revocation, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, revoked_at FROM sessions WHERE revoked_at >= $1`, since)
	if err != nil {
		return nil, translate(err)
	}
	defer rows.Close()
	var out []authd.Revocation
	for rows.Next() {
		var id uuid.UUID
		var at time.Time
		if err := rows.Scan(&id, &at); err != nil {
			return nil, translate(err)
		}
		out = append(out, authd.Revocation{At: at, SessionIDs: []uuid.UUID{id}})
	}
	return out, translate(rows.Err())
}

// Listen implements authd.RevocationFeed with LISTEN on a dedicated
// connection. After every (re)connection it calls resync, because
// notifications sent while it was away are lost; it reconnects with backoff
// (from 100 ms again once a connection listens) until ctx ends. A
// connection silent for listenCheck must answer a ping within
// listenPing, or it is taken for dead and replaced: a failover, or a NAT
// or firewall that forgot it, leaves a connection that neither delivers
// nor closes, and TCP would not say so for many minutes. (Behind a pooler
// that does not carry notifications a connection answers and hears
// nothing: the server's periodic catch-up is what bounds that.)
func (s *Store) Listen(ctx context.Context, apply func(authd.Revocation), resync func(context.Context)) error {
	backoff := 100 * time.Millisecond
	for {
		listened, err := s.listen(ctx, apply, resync)
		if ctx.Err() != nil {
			return nil
		}
		if listened {
			backoff = 100 * time.Millisecond
		}
		s.logger().Warn("revocation listener disconnected; reconnecting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// listenCheck is how long the revocation listener waits in silence before
// it pings its connection, and listenPing how long the ping may take.
const (
	listenCheck = 10 * time.Second
	listenPing  = 5 * time.Second
)

// listen listens on one connection until it fails; listened reports
// whether it got as far as listening.
func (s *Store) listen(ctx context.Context, apply func(authd.Revocation), resync func(context.Context)) (listened bool, err error) {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return false, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+revocationChannel); err != nil {
		return false, err
	}
	resync(ctx)
	check := cmp.Or(s.listenCheck, listenCheck)
	for {
		wait, cancel := context.WithTimeout(ctx, check)
		n, err := conn.WaitForNotification(wait)
		cancel()
		if err != nil && ctx.Err() == nil && wait.Err() != nil && !conn.IsClosed() {
			// Silence: a connection that answers is still listening.
			ping, cancel := context.WithTimeout(ctx, listenPing)
			err = conn.Ping(ping)
			cancel()
			if err != nil {
				return true, fmt.Errorf("no answer to a ping after %v of silence: %w", check, err)
			}
			continue
		}
		if err != nil {
			return true, err
		}
		var rev authd.Revocation
		if err := json.Unmarshal([]byte(n.Payload), &rev); err != nil {
			s.logger().Error("malformed revocation notification", "err", err)
			continue
		}
		apply(rev)
	}
}
