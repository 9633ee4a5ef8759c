package sqlite

import (
	"context"
	"database/sql"
	"strings"

	"github.com/authd/authd"
	"github.com/google/uuid"
)

// Users implements authd.Store.
func (s *Store) Users(ctx context.Context, f authd.UserFilter) ([]*authd.User, error) {
	var where []string
	var args []any
	if f.Email != "" {
		where = append(where, `email LIKE ? ESCAPE '\'`)
		args = append(args, "%"+likeEscape(strings.ToLower(f.Email))+"%")
	}
	if f.Status != "" {
		where, args = append(where, "account_status = ?"), append(args, string(f.Status))
	}
	if f.After != nil {
		where, args = append(where, "(created_at, id) < (?, ?)"), append(args, timeArg(f.After.Time), f.After.ID)
	}
	query := `SELECT ` + userColumns + ` FROM users`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY created_at DESC, id DESC LIMIT ?"
	args = append(args, listLimit(f.Limit))
	rows, err := s.db.QueryContext(ctx, query, args...)
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

// likeEscape makes s match literally in a LIKE pattern. (SQLite's LIKE
// ignores ASCII case; the stored emails are lower-case anyway.)
func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// UserData implements authd.Store, in one read transaction.
func (s *Store) UserData(ctx context.Context, userID uuid.UUID) (*authd.UserData, error) {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, translate(err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only
	q := &queries{db: tx}
	var d authd.UserData
	if d.User, err = q.User(ctx, userID); err != nil {
		return nil, err
	}
	each := func(query string, scan func(*sql.Rows) error) error {
		rows, err := tx.QueryContext(ctx, query, userID)
		if err != nil {
			return translate(err)
		}
		defer rows.Close()
		for rows.Next() {
			if err := scan(rows); err != nil {
				return err
			}
		}
		return translate(rows.Err())
	}
	if err := each(`SELECT `+sessionColumns+` FROM sessions WHERE user_id = ? ORDER BY created_at, id`, func(rows *sql.Rows) error {
		var s authd.Session
		var device sql.NullString
		if err := rows.Scan(&s.ID, &s.UserID, &device, timeCol{&s.CreatedAt}, timeCol{&s.LastUsedAt},
			timeCol{&s.ExpiresAt}, timeCol{&s.RevokedAt}); err != nil {
			return translate(err)
		}
		s.DeviceInfo = device.String
		d.Sessions = append(d.Sessions, &s)
		return nil
	}); err != nil {
		return nil, err
	}
	if err := each(`SELECT `+tokenColumns+` FROM jwt_tokens WHERE user_id = ? ORDER BY issued_at, id`, func(rows *sql.Rows) error {
		t, err := scanToken(rows)
		d.Tokens = append(d.Tokens, t)
		return err
	}); err != nil {
		return nil, err
	}
	if err := each(`SELECT `+verificationColumns+` FROM verification_tokens WHERE user_id = ? ORDER BY created_at, id`, func(rows *sql.Rows) error {
		v, err := scanVerification(rows)
		d.VerificationTokens = append(d.VerificationTokens, v)
		return err
	}); err != nil {
		return nil, err
	}
	rows, err := tx.QueryContext(ctx, `SELECT `+securityLogColumns+` FROM security_logs WHERE user_id = ? ORDER BY "timestamp", id`, userID)
	if err != nil {
		return nil, translate(err)
	}
	if d.SecurityLogs, err = collectSecurityLogs(rows); err != nil {
		return nil, err
	}
	rows, err = tx.QueryContext(ctx, `SELECT `+outboxColumns+` FROM mail_outbox WHERE user_id = ? ORDER BY created_at, id`, userID)
	if err != nil {
		return nil, translate(err)
	}
	if d.Mails, err = collectMail(rows); err != nil {
		return nil, err
	}
	return &d, nil
}

// ErasePersonalData implements authd.Queries.
func (q *queries) ErasePersonalData(ctx context.Context, userID uuid.UUID) error {
	for _, query := range []string{
		`DELETE FROM verification_tokens WHERE user_id = ?`,
		`DELETE FROM mail_outbox WHERE user_id = ?`,
		`UPDATE security_logs SET ip_address = NULL, user_agent = NULL,
			additional_context = json_remove(additional_context, '$.device_info') WHERE user_id = ?`,
		`UPDATE sessions SET device_info = NULL WHERE user_id = ?`,
		`UPDATE jwt_tokens SET device_info = NULL WHERE user_id = ?`,
	} {
		if _, err := q.db.ExecContext(ctx, query, userID); err != nil {
			return translate(err)
		}
	}
	return nil
}

// Purge implements authd.Store. An SQLite database serves one instance, so
// there is no one to coordinate with; each batch is its own short write.
func (s *Store) Purge(ctx context.Context, r authd.PurgeRequest) (authd.PurgeResult, error) {
	var res authd.PurgeResult
	steps := []struct {
		n     *int
		table string
		where string
		at    string
	}{
		{&res.SecurityLogs, "security_logs", `"timestamp" < ?1`, timeText(r.LogsBefore)},
		{&res.VerificationTokens, "verification_tokens", "expires_at < ?1", timeText(r.ExpiredBefore)},
		{&res.Tokens, "jwt_tokens", "expires_at < ?1", timeText(r.ExpiredBefore)},
		{&res.Sessions, "sessions", "(expires_at < ?1 OR revoked_at < ?1) AND NOT EXISTS " +
			"(SELECT 1 FROM jwt_tokens t WHERE t.session_id = sessions.id AND t.expires_at >= ?1)", timeText(r.ExpiredBefore)},
	}
	for _, st := range steps {
		if r.DryRun {
			if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM `+st.table+` WHERE `+st.where, st.at).Scan(st.n); err != nil {
				return res, translate(err)
			}
			continue
		}
		for {
			out, err := s.db.ExecContext(ctx, `DELETE FROM `+st.table+` WHERE id IN (SELECT id FROM `+st.table+
				` WHERE `+st.where+` LIMIT ?2)`, st.at, r.Batch)
			if err != nil {
				return res, translate(err)
			}
			n, err := out.RowsAffected()
			if err != nil {
				return res, translate(err)
			}
			*st.n += int(n)
			if n < int64(r.Batch) {
				break
			}
		}
	}
	return res, nil
}
