package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/authd/authd"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Users implements authd.Store.
func (s *Store) Users(ctx context.Context, f authd.UserFilter) ([]*authd.User, error) {
	var where []string
	var args []any
	if f.Email != "" {
		args = append(args, "%"+likeEscape(strings.ToLower(f.Email))+"%")
		where = append(where, fmt.Sprintf(`email LIKE $%d ESCAPE '\'`, len(args)))
	}
	if f.Status != "" {
		args = append(args, string(f.Status))
		where = append(where, fmt.Sprintf("account_status = $%d", len(args)))
	}
	if f.After != nil {
		args = append(args, f.After.Time, f.After.ID)
		where = append(where, fmt.Sprintf("(created_at, id) < ($%d, $%d)", len(args)-1, len(args)))
	}
	sql := `SELECT ` + userColumns + ` FROM users`
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, listLimit(f.Limit))
	sql += fmt.Sprintf(" ORDER BY created_at DESC, id DESC LIMIT $%d", len(args))
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, translate(err)
	}
	defer rows.Close()
	var out []*authd.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, translate(rows.Err())
}

// likeEscape makes s match literally in a LIKE pattern.
func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// UserData implements authd.Store: every row that refers to the user, read
// in one repeatable-read transaction so that the parts agree.
func (s *Store) UserData(ctx context.Context, userID uuid.UUID) (*authd.UserData, error) {
	var d authd.UserData
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		q := &queries{db: tx}
		var err error
		if d.User, err = q.User(ctx, userID); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT `+sessionColumns+` FROM sessions WHERE user_id = $1 ORDER BY created_at, id`, userID)
		if err != nil {
			return err
		}
		for rows.Next() {
			var s authd.Session
			var device *string
			var revokedAt *time.Time
			if err := rows.Scan(&s.ID, &s.UserID, &device, &s.CreatedAt, &s.LastUsedAt, &s.ExpiresAt, &revokedAt); err != nil {
				rows.Close()
				return err
			}
			s.DeviceInfo, s.RevokedAt = value(device), value(revokedAt)
			d.Sessions = append(d.Sessions, &s)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `SELECT `+tokenColumns+` FROM jwt_tokens WHERE user_id = $1 ORDER BY issued_at, id`, userID)
		if err != nil {
			return err
		}
		for rows.Next() {
			t, err := scanToken(rows)
			if err != nil {
				rows.Close()
				return err
			}
			d.Tokens = append(d.Tokens, t)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `SELECT `+verificationColumns+` FROM verification_tokens WHERE user_id = $1
			ORDER BY created_at, id`, userID)
		if err != nil {
			return err
		}
		for rows.Next() {
			v, err := scanVerification(rows)
			if err != nil {
				rows.Close()
				return err
			}
			d.VerificationTokens = append(d.VerificationTokens, v)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `SELECT `+securityLogColumns+` FROM security_logs WHERE user_id = $1
			ORDER BY "timestamp", id`, userID)
		if err != nil {
			return err
		}
		if d.SecurityLogs, err = collectSecurityLogs(rows); err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `SELECT `+outboxColumns+` FROM mail_outbox WHERE user_id = $1 ORDER BY created_at, id`, userID)
		if err != nil {
			return err
		}
		d.Mails, err = collectMail(rows)
		return err
	})
	if err != nil {
		return nil, translate(err)
	}
	return &d, nil
}

// ErasePersonalData implements authd.Queries.
func (q *queries) ErasePersonalData(ctx context.Context, userID uuid.UUID) error {
	for _, sql := range []string{
		`DELETE FROM verification_tokens WHERE user_id = $1`,
		`DELETE FROM mail_outbox WHERE user_id = $1`,
		`UPDATE security_logs SET ip_address = NULL, user_agent = NULL,
			additional_context = additional_context - 'device_info' WHERE user_id = $1`,
		`UPDATE sessions SET device_info = NULL WHERE user_id = $1`,
		`UPDATE jwt_tokens SET device_info = NULL WHERE user_id = $1`,
	} {
		if err := q.write(ctx, nil, sql, userID); err != nil {
			return err
		}
	}
	return nil
}

// purgeLockID is the advisory lock that keeps instances from purging at once.
const purgeLockID = 0x61757468647075 // "authdpu"

// Purge implements authd.Store. It holds a session-level advisory lock on
// one connection for the whole purge, and deletes in batches so that no
// statement locks many rows for long.
func (s *Store) Purge(ctx context.Context, r authd.PurgeRequest) (authd.PurgeResult, error) {
	var res authd.PurgeResult
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return res, translate(err)
	}
	defer conn.Release()
	var locked bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, purgeLockID).Scan(&locked); err != nil {
		return res, translate(err)
	}
	if !locked {
		res.Skipped = true
		return res, nil
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, purgeLockID)

	steps := []struct {
		n     *int
		table string
		where string
		at    time.Time
	}{
		{&res.SecurityLogs, "security_logs", `"timestamp" < $1`, r.LogsBefore},
		{&res.VerificationTokens, "verification_tokens", "expires_at < $1", r.ExpiredBefore},
		// Tokens of a session go with it (ON DELETE CASCADE): count them first.
		{&res.Tokens, "jwt_tokens", "expires_at < $1", r.ExpiredBefore},
		{&res.Sessions, "sessions", "(expires_at < $1 OR revoked_at < $1) AND NOT EXISTS " +
			"(SELECT 1 FROM jwt_tokens t WHERE t.session_id = sessions.id AND t.expires_at >= $1)", r.ExpiredBefore},
	}
	for _, st := range steps {
		if r.DryRun {
			if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+st.table+` WHERE `+st.where, st.at).Scan(st.n); err != nil {
				return res, translate(err)
			}
			continue
		}
		for {
			tag, err := conn.Exec(ctx, `DELETE FROM `+st.table+` WHERE id IN (SELECT id FROM `+st.table+
				` WHERE `+st.where+` LIMIT $2)`, st.at, r.Batch)
			if err != nil {
				return res, translate(err)
			}
			*st.n += int(tag.RowsAffected())
			if tag.RowsAffected() < int64(r.Batch) {
				break
			}
		}
	}
	return res, nil
}
