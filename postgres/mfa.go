package postgres

import (
	"context"
	"time"

	"github.com/authd/authd"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

const factorColumns = `id, user_id, kind, secret, confirmed, created_at, confirmed_at, last_used_at, last_step`

// CreateFactor implements authd.Queries. It runs at once, not queued, so
// that a taken kind is reported to the caller rather than at commit.
func (q *queries) CreateFactor(ctx context.Context, f *authd.Factor) error {
	_, err := q.exec(ctx, `INSERT INTO mfa_factors (`+factorColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		f.ID, f.UserID, string(f.Kind), f.Secret, f.Confirmed, f.CreatedAt, nullTime(f.ConfirmedAt),
		nullTime(f.LastUsedAt), f.LastStep)
	return translate(err)
}

// Factors implements authd.Queries.
func (q *queries) Factors(ctx context.Context, userID uuid.UUID) ([]*authd.Factor, error) {
	st := q.factors(userID)
	rows, err := q.rows(ctx, st.sql, st.args...)
	if err != nil {
		return nil, translate(err)
	}
	out, err := pgx.CollectRows(rows, rowTo(scanFactor))
	return out, translate(err)
}

// factors reads Factors.
func (q *queries) factors(userID uuid.UUID) statement {
	return statement{`SELECT ` + factorColumns + ` FROM mfa_factors WHERE user_id = $1
		ORDER BY created_at, id` + q.forUpdate(), []any{userID}}
}

func scanFactor(row pgx.Row) (*authd.Factor, error) {
	var f authd.Factor
	var kind string
	var confirmedAt, lastUsedAt *time.Time
	if err := row.Scan(&f.ID, &f.UserID, &kind, &f.Secret, &f.Confirmed, &f.CreatedAt, &confirmedAt,
		&lastUsedAt, &f.LastStep); err != nil {
		return nil, err
	}
	f.Kind, f.ConfirmedAt, f.LastUsedAt = authd.FactorKind(kind), value(confirmedAt), value(lastUsedAt)
	return &f, nil
}

const recoveryCodeColumns = `id, user_id, code_digest, created_at, used_at`

func scanRecoveryCode(row pgx.Row) (*authd.RecoveryCode, error) {
	var c authd.RecoveryCode
	var usedAt *time.Time
	if err := row.Scan(&c.ID, &c.UserID, &c.Digest, &c.CreatedAt, &usedAt); err != nil {
		return nil, translate(err)
	}
	c.UsedAt = value(usedAt)
	return &c, nil
}

// UpdateFactor implements authd.Queries.
func (q *queries) UpdateFactor(ctx context.Context, f *authd.Factor) error {
	return q.write(ctx, mustAffect("factor"), `UPDATE mfa_factors SET confirmed = $2, confirmed_at = $3,
		last_used_at = $4, last_step = $5 WHERE id = $1`,
		f.ID, f.Confirmed, nullTime(f.ConfirmedAt), nullTime(f.LastUsedAt), f.LastStep)
}

// DeleteFactor implements authd.Queries.
func (q *queries) DeleteFactor(ctx context.Context, id uuid.UUID) error {
	return q.write(ctx, mustAffect("factor"), `DELETE FROM mfa_factors WHERE id = $1`, id)
}

// ReplaceRecoveryCodes implements authd.Queries.
func (q *queries) ReplaceRecoveryCodes(ctx context.Context, userID uuid.UUID, codes []*authd.RecoveryCode) error {
	if err := q.write(ctx, nil, `DELETE FROM mfa_recovery_codes WHERE user_id = $1`, userID); err != nil {
		return err
	}
	for _, c := range codes {
		if err := q.write(ctx, nil, `INSERT INTO mfa_recovery_codes (id, user_id, code_digest, created_at, used_at)
			VALUES ($1, $2, $3, $4, $5)`, c.ID, c.UserID, c.Digest, c.CreatedAt, nullTime(c.UsedAt)); err != nil {
			return err
		}
	}
	return nil
}

// UseRecoveryCode implements authd.Queries.
func (q *queries) UseRecoveryCode(ctx context.Context, userID uuid.UUID, digest string, at time.Time) error {
	tag, err := q.exec(ctx, `UPDATE mfa_recovery_codes SET used_at = $3
		WHERE user_id = $1 AND code_digest = $2 AND used_at IS NULL`, userID, digest, at)
	return affected(tag, err, "recovery code")
}

// RecoveryCodesLeft implements authd.Queries.
func (q *queries) RecoveryCodesLeft(ctx context.Context, userID uuid.UUID) (int, error) {
	var n int
	err := q.row(ctx, `SELECT count(*) FROM mfa_recovery_codes WHERE user_id = $1 AND used_at IS NULL`, userID).Scan(&n)
	return n, translate(err)
}

const challengeColumns = `id, token, user_id, device_info, created_at, expires_at, failures, used_at`

// OpenChallengeSince implements authd.Queries (index ix_mfa_challenges_user_id).
func (q *queries) OpenChallengeSince(ctx context.Context, userID uuid.UUID, since, now time.Time) (bool, error) {
	var open bool
	err := q.row(ctx, `SELECT EXISTS (SELECT 1 FROM mfa_challenges
		WHERE user_id = $1 AND created_at >= $2 AND used_at IS NULL AND expires_at > $3 AND failures <> $4)`,
		userID, since, now, authd.MFAChallengeVoided).Scan(&open)
	return open, translate(err)
}

// CreateMFAChallenge implements authd.Queries.
func (q *queries) CreateMFAChallenge(ctx context.Context, c *authd.MFAChallenge) error {
	return q.write(ctx, nil, `INSERT INTO mfa_challenges (`+challengeColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		c.ID, c.Token, c.UserID, nullString(c.DeviceInfo), c.CreatedAt, c.ExpiresAt, c.Failures, nullTime(c.UsedAt))
}

// MFAChallenge implements authd.Queries: see ownedRow for the locks.
func (q *queries) MFAChallenge(ctx context.Context, digest string) (*authd.MFAChallenge, error) {
	return scanChallenge(q.ownedRow(ctx, "mfa_challenges", "token", challengeColumns, digest))
}

func scanChallenge(row pgx.Row) (*authd.MFAChallenge, error) {
	var c authd.MFAChallenge
	var device *string
	var usedAt *time.Time
	if err := row.Scan(&c.ID, &c.Token, &c.UserID, &device, &c.CreatedAt, &c.ExpiresAt, &c.Failures, &usedAt); err != nil {
		return nil, translate(err)
	}
	c.DeviceInfo, c.UsedAt = value(device), value(usedAt)
	return &c, nil
}

// VoidOpenMFAChallenges implements authd.Queries. The flows that call it
// hold the user, which MFAChallenge locks first (ownedRow).
func (q *queries) VoidOpenMFAChallenges(ctx context.Context, userID uuid.UUID, mark int) error {
	return q.write(ctx, nil, `UPDATE mfa_challenges SET failures = $2
		WHERE user_id = $1 AND used_at IS NULL AND (failures <> $3 OR $2 = $3)`,
		userID, mark, authd.MFAChallengeVoided)
}

// UpdateMFAChallenge implements authd.Queries.
func (q *queries) UpdateMFAChallenge(ctx context.Context, c *authd.MFAChallenge) error {
	return q.write(ctx, mustAffect("challenge"), `UPDATE mfa_challenges SET failures = $2, used_at = $3 WHERE id = $1`,
		c.ID, c.Failures, nullTime(c.UsedAt))
}
