package sqlite

import (
	"context"
	"time"

	"github.com/authd/authd"
	"github.com/google/uuid"
)

// RevokedSessions implements authd.Store (index ix_sessions_revoked_at).
func (s *Store) RevokedSessions(ctx context.Context, since time.Time) ([]authd.Revocation, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, revoked_at FROM sessions WHERE revoked_at >= ?`, timeArg(since))
	if err != nil {
		return nil, translate(err)
	}
	defer rows.Close()
	var out []authd.Revocation
	for rows.Next() {
		var id uuid.UUID
		var at time.Time
		if err := rows.Scan(&id, timeCol{&at}); err != nil {
			return nil, translate(err)
		}
		out = append(out, authd.Revocation{At: at, SessionIDs: []uuid.UUID{id}})
	}
	return out, translate(rows.Err())
}

// RevocationEvents implements authd.Store.
func (s *Store) RevocationEvents(ctx context.Context, after int64, now time.Time, limit int) ([]authd.RevocationEvent, error) {
	return s.revocationEvents(ctx, `SELECT id, kind, subject_id, reason, expires_at, created_at
		FROM revocation_events WHERE id > ?1 AND expires_at > ?2 ORDER BY id LIMIT ?3`, after, timeArg(now), limit)
}

// RevocationEventsFrom implements authd.Store.
func (s *Store) RevocationEventsFrom(ctx context.Context, seen int64, now time.Time, limit int) ([]authd.RevocationEvent, error) {
	return s.revocationEvents(ctx, `SELECT id, kind, subject_id, reason, expires_at, created_at
		FROM revocation_events WHERE id >= ?1 AND (id = ?1 OR expires_at > ?2) ORDER BY id LIMIT ?3`, seen, timeArg(now), limit)
}

// revocationEvents runs query, a read of revocation events.
func (s *Store) revocationEvents(ctx context.Context, query string, args ...any) ([]authd.RevocationEvent, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, translate(err)
	}
	defer rows.Close()
	var out []authd.RevocationEvent
	for rows.Next() {
		var e authd.RevocationEvent
		if err := rows.Scan(&e.ID, &e.Kind, &e.Subject, &e.Reason, timeCol{&e.ExpiresAt}, timeCol{&e.CreatedAt}); err != nil {
			return nil, translate(err)
		}
		out = append(out, e)
	}
	return out, translate(rows.Err())
}

// LastRevocationEventID implements authd.Store.
func (s *Store) LastRevocationEventID(ctx context.Context) (int64, error) {
	var id int64
	err := s.db.QueryRowContext(ctx, `SELECT coalesce(max(id), 0) FROM revocation_events`).Scan(&id)
	return id, translate(err)
}
