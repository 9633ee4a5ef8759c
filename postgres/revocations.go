package postgres

import (
	"context"
	"encoding/json"
	"time"

	"github.com/authd/authd"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

var _ authd.RevocationFeed = (*Store)(nil)

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
// until ctx ends.
func (s *Store) Listen(ctx context.Context, apply func(authd.Revocation), resync func(context.Context)) error {
	backoff := 100 * time.Millisecond
	for {
		err := s.listen(ctx, apply, resync)
		if ctx.Err() != nil {
			return nil
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

func (s *Store) listen(ctx context.Context, apply func(authd.Revocation), resync func(context.Context)) error {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+revocationChannel); err != nil {
		return err
	}
	resync(ctx)
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		var rev authd.Revocation
		if err := json.Unmarshal([]byte(n.Payload), &rev); err != nil {
			s.logger().Error("malformed revocation notification", "err", err)
			continue
		}
		apply(rev)
	}
}
