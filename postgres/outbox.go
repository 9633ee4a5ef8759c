package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/authd/authd"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

const outboxColumns = `id, kind, user_id, recipient, data, created_at, next_attempt_at, attempts,
	claimed_until, last_error, dead_at`

func (q *queries) EnqueueMail(ctx context.Context, m *authd.OutboxMail) error {
	return q.write(ctx, nil, `INSERT INTO mail_outbox (`+outboxColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		m.ID, string(m.Kind), nullUUID(m.UserID), m.To, authd.MailData(m), m.CreatedAt, m.NextAttemptAt, m.Attempts,
		nullTime(m.ClaimedUntil), nullString(m.LastError), nullTime(m.DeadAt))
}

// WithdrawMails implements authd.Queries.
func (q *queries) WithdrawMails(ctx context.Context, userID uuid.UUID, kind authd.MailKind) error {
	return q.write(ctx, nil, `DELETE FROM mail_outbox WHERE user_id = $1 AND kind = $2`,
		userID, string(kind))
}

// WithdrawMailsTo implements authd.Queries.
func (q *queries) WithdrawMailsTo(ctx context.Context, userID uuid.UUID, to string) error {
	return q.write(ctx, nil, `DELETE FROM mail_outbox WHERE user_id = $1 AND recipient = $2`, userID, to)
}

// ClaimMail implements authd.Store with FOR UPDATE SKIP LOCKED, so that
// concurrent senders on many instances take different mails.
func (s *Store) ClaimMail(ctx context.Context, claim uuid.UUID, now time.Time, lease time.Duration) (*authd.OutboxMail, error) {
	rows, err := s.pool.Query(ctx, `UPDATE mail_outbox SET claimed_until = $2, claim = $3, attempts = attempts + 1
		WHERE id = (
			SELECT id FROM mail_outbox
			WHERE dead_at IS NULL AND next_attempt_at <= $1 AND (claimed_until IS NULL OR claimed_until <= $1)
			ORDER BY next_attempt_at, id
			LIMIT 1
			FOR UPDATE SKIP LOCKED)
		RETURNING `+outboxColumns, now, now.Add(lease), claim)
	if err != nil {
		return nil, translate(err)
	}
	mails, err := collectMail(rows)
	if err != nil || len(mails) == 0 {
		return nil, err
	}
	mails[0].Claim = claim
	return mails[0], nil
}

func collectMail(rows pgx.Rows) ([]*authd.OutboxMail, error) {
	defer rows.Close()
	var out []*authd.OutboxMail
	for rows.Next() {
		m, err := scanMail(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, translate(rows.Err())
}

// scanMail reads one mail_outbox row of outboxColumns.
func scanMail(row pgx.Row) (*authd.OutboxMail, error) {
	var m authd.OutboxMail
	var kind string
	var user *uuid.UUID
	var data map[string]any
	var claimed, dead *time.Time
	var lastErr *string
	if err := row.Scan(&m.ID, &kind, &user, &m.To, &data, &m.CreatedAt, &m.NextAttemptAt, &m.Attempts,
		&claimed, &lastErr, &dead); err != nil {
		return nil, translate(err)
	}
	var err error
	if m.Kind, err = authd.ParseMailKind(kind); err != nil {
		return nil, fmt.Errorf("postgres: mail %s: %w", m.ID, err)
	}
	m.SetData(data)
	m.UserID, m.ClaimedUntil, m.LastError, m.DeadAt = value(user), value(claimed), value(lastErr), value(dead)
	return &m, nil
}

// CompleteMail implements authd.Store.
func (s *Store) CompleteMail(ctx context.Context, id, claim uuid.UUID) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM mail_outbox WHERE id = $1 AND claim = $2`, id, claim)
	return affected(tag, err, "mail held by this claim")
}

// RetryMail implements authd.Store.
func (s *Store) RetryMail(ctx context.Context, id, claim uuid.UUID, next time.Time, lastError string) error {
	tag, err := s.pool.Exec(ctx, `UPDATE mail_outbox SET next_attempt_at = $3, last_error = $4, claimed_until = NULL,
		claim = NULL WHERE id = $1 AND claim = $2`, id, claim, next, lastError)
	return affected(tag, err, "mail held by this claim")
}

// KillMail implements authd.Store.
func (s *Store) KillMail(ctx context.Context, id, claim uuid.UUID, at time.Time, lastError string) error {
	tag, err := s.pool.Exec(ctx, `UPDATE mail_outbox SET dead_at = $3, last_error = $4, claimed_until = NULL,
		claim = NULL WHERE id = $1 AND claim = $2`, id, claim, at, lastError)
	return affected(tag, err, "mail held by this claim")
}

// MailQueued implements authd.Store.
func (s *Store) MailQueued(ctx context.Context, id uuid.UUID) (bool, error) {
	var queued bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM mail_outbox WHERE id = $1)`, id).Scan(&queued)
	return queued, translate(err)
}

// OutboxStats implements authd.Store.
func (s *Store) OutboxStats(ctx context.Context) (authd.OutboxStats, error) {
	var st authd.OutboxStats
	err := s.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE dead_at IS NULL), count(*) FILTER (WHERE dead_at IS NOT NULL)
		FROM mail_outbox`).Scan(&st.Pending, &st.Dead)
	return st, translate(err)
}

// Mails implements authd.Store.
func (s *Store) Mails(ctx context.Context, f authd.MailFilter) ([]*authd.OutboxMail, error) {
	state := "dead_at IS NULL"
	if f.Dead {
		state = "dead_at IS NOT NULL"
	}
	args := []any{listLimit(f.Limit)}
	after := ""
	if f.After != nil {
		args = append(args, f.After.Time, f.After.ID)
		after = " AND (created_at, id) < ($2, $3)"
	}
	rows, err := s.pool.Query(ctx, `SELECT `+outboxColumns+` FROM mail_outbox WHERE `+state+after+`
		ORDER BY created_at DESC, id DESC LIMIT $1`, args...)
	if err != nil {
		return nil, translate(err)
	}
	return collectMail(rows)
}

// ReviveMail runs at once, not queued, so that a mail that is not dead is
// ENotFound for the caller rather than a failed transaction.
func (q *queries) ReviveMail(ctx context.Context, id uuid.UUID, now time.Time) error {
	tag, err := q.exec(ctx, `UPDATE mail_outbox SET dead_at = NULL, attempts = 0, next_attempt_at = $2,
		claimed_until = NULL, claim = NULL WHERE id = $1 AND dead_at IS NOT NULL`, id, now)
	return affected(tag, err, "dead mail")
}

// ExtendMailClaim runs at once, not queued, so that a lapsed claim is
// ENotFound for the caller rather than a failed transaction.
func (q *queries) ExtendMailClaim(ctx context.Context, id, claim uuid.UUID, until time.Time) error {
	tag, err := q.exec(ctx, `UPDATE mail_outbox SET claimed_until = $3 WHERE id = $1 AND claim = $2`, id, claim, until)
	return affected(tag, err, "mail held by this claim")
}
