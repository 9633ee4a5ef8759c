package sqlite

import (
	"context"
	"time"

	"github.com/authd/authd"
	"github.com/google/uuid"
)

// Revocations implements authd.Store.
func (s *Store) Revocations(ctx context.Context, since, now time.Time) ([]authd.Revocation, error) {
	var out []authd.Revocation
	rows, err := s.db.QueryContext(ctx, `SELECT id, revoked_at FROM sessions WHERE revoked_at >= ?`, timeArg(since))
	if err != nil {
		return nil, translate(err)
	}
	for rows.Next() {
		var id uuid.UUID
		var at time.Time
		if err := rows.Scan(&id, timeCol{&at}); err != nil {
			rows.Close()
			return nil, translate(err)
		}
		out = append(out, authd.Revocation{At: at, SessionIDs: []uuid.UUID{id}})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, translate(err)
	}
	rows, err = s.db.QueryContext(ctx, `SELECT id, account_locked_until FROM users
		WHERE account_status = 'locked' AND (account_locked_until IS NULL OR account_locked_until > ?)`, timeArg(now))
	if err != nil {
		return nil, translate(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id uuid.UUID
		var until time.Time
		if err := rows.Scan(&id, timeCol{&until}); err != nil {
			return nil, translate(err)
		}
		out = append(out, authd.Revocation{At: now, UserID: id, Block: true, BlockUntil: until})
	}
	return out, translate(rows.Err())
}
