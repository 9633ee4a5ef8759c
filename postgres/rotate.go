package postgres

import (
	"context"

	"github.com/authd/authd"
)

// rotateQuery is Rotate's one statement. It share-locks the user, then
// locks the session and the token — the order of every flow that changes a
// user and then ends their sessions (a lock, an erasure, a password change,
// a login evicting a session), and of a logout (session, then tokens) — and
// waits for none of them (SKIP LOCKED): its times were read before it ran,
// and a rotation stamped before a long wait would start its grace window
// spent. A row another transaction holds in a conflicting mode (the user
// updated or about to be; the session or the token locked in any mode, also
// by a row inserted that references it) leaves the statement nothing to
// rotate, as any case that is not ordinary does: Rotate answers ENotFound
// and the service's transaction waits (NOWAIT would do the same, but as an
// error PostgreSQL logs, each time two tabs refresh at once). A foreign-key
// failure (ENotFound) also leaves nothing: one statement.
var rotateQuery = `WITH old AS (
		SELECT t.id, t.session_id, t.user_id
		FROM jwt_tokens t JOIN sessions s ON s.id = t.session_id JOIN users u ON u.id = t.user_id
		WHERE t.token_value = $1 AND t.token_type = 'refresh' AND NOT t.revoked AND t.expires_at > $2
			AND s.revoked_at IS NULL AND s.expires_at > $2 AND COALESCE(s.client_id, '') = $3
			AND u.account_status NOT IN ('locked', 'deleted')
			AND (u.account_locked_until IS NULL OR u.account_locked_until <= $2)
		FOR SHARE OF u SKIP LOCKED FOR UPDATE OF s, t SKIP LOCKED
	), rotated AS (
		UPDATE jwt_tokens SET revoked = true, revoked_at = $2, rotated_at = $2 FROM old WHERE jwt_tokens.id = old.id
	), session AS (
		UPDATE sessions SET last_used_at = $2 FROM old WHERE sessions.id = old.session_id
		RETURNING ` + qualify("sessions", sessionColumns) + `
	), child AS (
		INSERT INTO jwt_tokens (` + tokenColumns + `)
		SELECT $4, $5, session.user_id, session.id, old.id, 'refresh', $6, $7, LEAST($8, session.expires_at),
			false, NULL, NULL, session.device_info, $9
		FROM old JOIN session ON session.id = old.session_id
	), log AS (
		INSERT INTO security_logs (` + securityLogColumns + `)
		SELECT $10, $11::event_type, old.user_id, $12, $13, $14, $15::event_result, $16,
			COALESCE($17::jsonb, '{}') || jsonb_build_object('session_id', old.session_id::text)
		FROM old
	)
	SELECT ` + sessionColumns + ` FROM session`

// Rotate implements authd.Rotator: rotateQuery, alone or, with admit, in a
// transaction that commits once admit agrees (two round trips: BEGIN with
// the statement, then COMMIT).
func (s *Store) Rotate(ctx context.Context, rotation func() *authd.Rotation, admit func(*authd.Session) error) (*authd.Session, error) {
	if admit == nil {
		conn, err := s.pool.Acquire(ctx)
		if err != nil {
			return nil, translate(err)
		}
		defer conn.Release()
		return rotate(ctx, &queries{db: conn}, rotation())
	}
	var sess *authd.Session
	err := s.inTx(ctx, func(q *queries) error {
		var err error
		if sess, err = rotate(ctx, q, rotation()); err != nil {
			return err
		}
		return admit(sess)
	})
	if err != nil {
		return nil, err
	}
	return sess, nil
}

func rotate(ctx context.Context, q *queries, r *authd.Rotation) (*authd.Session, error) {
	c, l := r.Child, r.Log
	var ss sessionScan
	err := q.row(ctx, rotateQuery, r.Digest, r.Now, r.ClientID,
		c.ID, c.JTI, c.TokenValue, c.IssuedAt, c.ExpiresAt, c.CreatedAt,
		l.ID, string(l.EventType), l.Timestamp, nullString(l.IPAddress), nullString(l.UserAgent), string(l.Result),
		nullString(l.FailureReason), l.AdditionalContext).Scan(ss.dest()...)
	if err != nil {
		return nil, translate(err)
	}
	return ss.session(), nil
}
