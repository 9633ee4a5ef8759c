package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/authd/authd"
	"github.com/google/uuid"
)

const outboxColumns = `id, kind, user_id, recipient, data, created_at, next_attempt_at, attempts,
	claimed_until, last_error, dead_at`

func (q *queries) EnqueueMail(ctx context.Context, m *authd.OutboxMail) error {
	var data any
	if d := authd.MailData(m); d != nil {
		b, _ := json.Marshal(d)
		data = string(b)
	}
	_, err := q.db.ExecContext(ctx, `INSERT INTO mail_outbox (`+outboxColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		m.ID, string(m.Kind), nullUUID(m.UserID), m.To, data, timeArg(m.CreatedAt), timeArg(m.NextAttemptAt),
		m.Attempts, timeArg(m.ClaimedUntil), nullString(m.LastError), timeArg(m.DeadAt))
	return translate(err)
}

// WithdrawMails implements authd.Queries.
func (q *queries) WithdrawMails(ctx context.Context, userID uuid.UUID, kind authd.MailKind) error {
	_, err := q.db.ExecContext(ctx, `DELETE FROM mail_outbox WHERE user_id = ? AND kind = ?`,
		userID, string(kind))
	return translate(err)
}

// WithdrawMailsTo implements authd.Queries.
func (q *queries) WithdrawMailsTo(ctx context.Context, userID uuid.UUID, to string) error {
	_, err := q.db.ExecContext(ctx, `DELETE FROM mail_outbox WHERE user_id = ? AND recipient = ?`, userID, to)
	return translate(err)
}

// ClaimMail implements authd.Store. The UPDATE runs alone in SQLite's one
// writer slot, so two senders never claim the same mail.
func (s *Store) ClaimMail(ctx context.Context, claim uuid.UUID, now time.Time, lease time.Duration) (*authd.OutboxMail, error) {
	if err := s.lane.enter(ctx); err != nil {
		return nil, err
	}
	defer s.lane.leave() // collectMail steps the rows, and so the UPDATE, to its end
	rows, err := s.db.QueryContext(ctx, `UPDATE mail_outbox SET claimed_until = ?2, claim = ?3, attempts = attempts + 1
		WHERE id = (
			SELECT id FROM mail_outbox
			WHERE dead_at IS NULL AND next_attempt_at <= ?1 AND (claimed_until IS NULL OR claimed_until <= ?1)
			ORDER BY next_attempt_at, id
			LIMIT 1)
		RETURNING `+outboxColumns, timeArg(now), timeArg(now.Add(lease)), claim)
	if err != nil {
		return nil, translate(err)
	}
	mails, err := collect(rows, scanMail)
	if err != nil || len(mails) == 0 {
		return nil, err
	}
	mails[0].Claim = claim
	return mails[0], nil
}

// scanMail reads one mail_outbox row of outboxColumns.
func scanMail(row scanner) (*authd.OutboxMail, error) {
	var m authd.OutboxMail
	var kind string
	var user uuid.NullUUID
	var data, lastErr sql.NullString
	if err := row.Scan(&m.ID, &kind, &user, &m.To, &data, timeCol{&m.CreatedAt}, timeCol{&m.NextAttemptAt},
		&m.Attempts, timeCol{&m.ClaimedUntil}, &lastErr, timeCol{&m.DeadAt}); err != nil {
		return nil, translate(err)
	}
	var err error
	if m.Kind, err = authd.ParseMailKind(kind); err != nil {
		return nil, fmt.Errorf("sqlite: mail %s: %w", m.ID, err)
	}
	if data.Valid {
		var d map[string]any
		if json.Unmarshal([]byte(data.String), &d) == nil {
			m.SetData(d)
		}
	}
	m.UserID, m.LastError = user.UUID, lastErr.String
	return &m, nil
}

// CompleteMail implements authd.Store.
func (s *Store) CompleteMail(ctx context.Context, id, claim uuid.UUID) error {
	res, err := s.queries.db.ExecContext(ctx, `DELETE FROM mail_outbox WHERE id = ? AND claim = ?`, id, claim)
	return affected(res, err, "mail held by this claim")
}

// RetryMail implements authd.Store.
func (s *Store) RetryMail(ctx context.Context, id, claim uuid.UUID, next time.Time, lastError string) error {
	res, err := s.queries.db.ExecContext(ctx, `UPDATE mail_outbox SET next_attempt_at = ?, last_error = ?, claimed_until = NULL,
		claim = NULL WHERE id = ? AND claim = ?`, timeArg(next), lastError, id, claim)
	return affected(res, err, "mail held by this claim")
}

// KillMail implements authd.Store.
func (s *Store) KillMail(ctx context.Context, id, claim uuid.UUID, at time.Time, lastError string) error {
	res, err := s.queries.db.ExecContext(ctx, `UPDATE mail_outbox SET dead_at = ?, last_error = ?, claimed_until = NULL,
		claim = NULL WHERE id = ? AND claim = ?`, timeArg(at), lastError, id, claim)
	return affected(res, err, "mail held by this claim")
}

// MailQueued implements authd.Store.
func (s *Store) MailQueued(ctx context.Context, id uuid.UUID) (bool, error) {
	var queued bool
	err := s.db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM mail_outbox WHERE id = ?)`, id).Scan(&queued)
	return queued, translate(err)
}

// OutboxStats implements authd.Store.
func (s *Store) OutboxStats(ctx context.Context) (authd.OutboxStats, error) {
	var st authd.OutboxStats
	err := s.db.QueryRowContext(ctx, `SELECT coalesce(sum(dead_at IS NULL), 0), coalesce(sum(dead_at IS NOT NULL), 0)
		FROM mail_outbox`).Scan(&st.Pending, &st.Dead)
	return st, translate(err)
}

// Mails implements authd.Store.
func (s *Store) Mails(ctx context.Context, f authd.MailFilter) ([]*authd.OutboxMail, error) {
	state := "dead_at IS NULL"
	if f.Dead {
		state = "dead_at IS NOT NULL"
	}
	var args []any
	after := ""
	if f.After != nil {
		args = append(args, timeArg(f.After.Time), f.After.ID)
		after = " AND (created_at, id) < (?, ?)"
	}
	args = append(args, listLimit(f.Limit))
	rows, err := s.db.QueryContext(ctx, `SELECT `+outboxColumns+` FROM mail_outbox WHERE `+state+after+`
		ORDER BY created_at DESC, id DESC LIMIT ?`, args...)
	if err != nil {
		return nil, translate(err)
	}
	return collect(rows, scanMail)
}

func (q *queries) ReviveMail(ctx context.Context, id uuid.UUID, now time.Time) error {
	res, err := q.db.ExecContext(ctx, `UPDATE mail_outbox SET dead_at = NULL, attempts = 0, next_attempt_at = ?,
		claimed_until = NULL, claim = NULL WHERE id = ? AND dead_at IS NOT NULL`, timeArg(now), id)
	return affected(res, err, "dead mail")
}

func (q *queries) ExtendMailClaim(ctx context.Context, id, claim uuid.UUID, until time.Time) error {
	res, err := q.db.ExecContext(ctx, `UPDATE mail_outbox SET claimed_until = ? WHERE id = ? AND claim = ?`,
		timeArg(until), id, claim)
	return affected(res, err, "mail held by this claim")
}
