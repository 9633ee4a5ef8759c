package sqlite

import (
	"context"
	"database/sql"
	"time"

	"github.com/authd/authd"
	"github.com/google/uuid"
)

const factorColumns = `id, user_id, kind, secret, confirmed, created_at, confirmed_at, last_used_at, last_step`

// CreateFactor implements authd.Queries.
func (q *queries) CreateFactor(ctx context.Context, f *authd.Factor) error {
	_, err := q.db.ExecContext(ctx, `INSERT INTO mfa_factors (`+factorColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		f.ID, f.UserID, string(f.Kind), f.Secret, f.Confirmed, timeArg(f.CreatedAt), timeArg(f.ConfirmedAt),
		timeArg(f.LastUsedAt), f.LastStep)
	return translate(err)
}

// Factors implements authd.Queries. SQLite's write transactions exclude
// each other, so no lock is needed.
func (q *queries) Factors(ctx context.Context, userID uuid.UUID) ([]*authd.Factor, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT `+factorColumns+` FROM mfa_factors WHERE user_id = ?
		ORDER BY created_at, id`, userID)
	if err != nil {
		return nil, translate(err)
	}
	return collect(rows, scanFactor)
}

func scanFactor(row scanner) (*authd.Factor, error) {
	var f authd.Factor
	var kind string
	if err := row.Scan(&f.ID, &f.UserID, &kind, &f.Secret, &f.Confirmed, timeCol{&f.CreatedAt},
		timeCol{&f.ConfirmedAt}, timeCol{&f.LastUsedAt}, &f.LastStep); err != nil {
		return nil, translate(err)
	}
	f.Kind = authd.FactorKind(kind)
	return &f, nil
}

const recoveryCodeColumns = `id, user_id, code_digest, created_at, used_at`

func scanRecoveryCode(row scanner) (*authd.RecoveryCode, error) {
	var c authd.RecoveryCode
	if err := row.Scan(&c.ID, &c.UserID, &c.Digest, timeCol{&c.CreatedAt}, timeCol{&c.UsedAt}); err != nil {
		return nil, translate(err)
	}
	return &c, nil
}

// UpdateFactor implements authd.Queries.
func (q *queries) UpdateFactor(ctx context.Context, f *authd.Factor) error {
	res, err := q.db.ExecContext(ctx, `UPDATE mfa_factors SET confirmed = ?, confirmed_at = ?, last_used_at = ?,
		last_step = ? WHERE id = ?`, f.Confirmed, timeArg(f.ConfirmedAt), timeArg(f.LastUsedAt), f.LastStep, f.ID)
	return affected(res, err, "factor")
}

// DeleteFactor implements authd.Queries.
func (q *queries) DeleteFactor(ctx context.Context, id uuid.UUID) error {
	res, err := q.db.ExecContext(ctx, `DELETE FROM mfa_factors WHERE id = ?`, id)
	return affected(res, err, "factor")
}

// ReplaceRecoveryCodes implements authd.Queries.
func (q *queries) ReplaceRecoveryCodes(ctx context.Context, userID uuid.UUID, codes []*authd.RecoveryCode) error {
	if _, err := q.db.ExecContext(ctx, `DELETE FROM mfa_recovery_codes WHERE user_id = ?`, userID); err != nil {
		return translate(err)
	}
	for _, c := range codes {
		if _, err := q.db.ExecContext(ctx, `INSERT INTO mfa_recovery_codes (id, user_id, code_digest, created_at, used_at)
			VALUES (?, ?, ?, ?, ?)`, c.ID, c.UserID, c.Digest, timeArg(c.CreatedAt), timeArg(c.UsedAt)); err != nil {
			return translate(err)
		}
	}
	return nil
}

// UseRecoveryCode implements authd.Queries.
func (q *queries) UseRecoveryCode(ctx context.Context, userID uuid.UUID, digest string, at time.Time) error {
	res, err := q.db.ExecContext(ctx, `UPDATE mfa_recovery_codes SET used_at = ?
		WHERE user_id = ? AND code_digest = ? AND used_at IS NULL`, timeArg(at), userID, digest)
	return affected(res, err, "recovery code")
}

// RecoveryCodesLeft implements authd.Queries.
func (q *queries) RecoveryCodesLeft(ctx context.Context, userID uuid.UUID) (int, error) {
	var n int
	err := q.db.QueryRowContext(ctx, `SELECT count(*) FROM mfa_recovery_codes WHERE user_id = ? AND used_at IS NULL`,
		userID).Scan(&n)
	return n, translate(err)
}

const challengeColumns = `id, token, user_id, device_info, created_at, expires_at, failures, used_at`

// OpenChallengeSince implements authd.Queries (index ix_mfa_challenges_user_id).
func (q *queries) OpenChallengeSince(ctx context.Context, userID uuid.UUID, since, now time.Time) (bool, error) {
	var open bool
	err := q.db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM mfa_challenges
		WHERE user_id = ? AND created_at >= ? AND used_at IS NULL AND expires_at > ? AND failures <> ?)`,
		userID, timeArg(since), timeArg(now), authd.MFAChallengeVoided).Scan(&open)
	return open, translate(err)
}

// CreateMFAChallenge implements authd.Queries.
func (q *queries) CreateMFAChallenge(ctx context.Context, c *authd.MFAChallenge) error {
	_, err := q.db.ExecContext(ctx, `INSERT INTO mfa_challenges (`+challengeColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		c.ID, c.Token, c.UserID, nullString(c.DeviceInfo), timeArg(c.CreatedAt), timeArg(c.ExpiresAt), c.Failures,
		timeArg(c.UsedAt))
	return translate(err)
}

// MFAChallenge implements authd.Queries.
func (q *queries) MFAChallenge(ctx context.Context, digest string) (*authd.MFAChallenge, error) {
	return scanChallenge(q.db.QueryRowContext(ctx, `SELECT `+challengeColumns+` FROM mfa_challenges WHERE token = ?`, digest))
}

func scanChallenge(row scanner) (*authd.MFAChallenge, error) {
	var c authd.MFAChallenge
	var device sql.NullString
	if err := row.Scan(&c.ID, &c.Token, &c.UserID, &device, timeCol{&c.CreatedAt}, timeCol{&c.ExpiresAt}, &c.Failures,
		timeCol{&c.UsedAt}); err != nil {
		return nil, translate(err)
	}
	c.DeviceInfo = device.String
	return &c, nil
}

// VoidOpenMFAChallenges implements authd.Queries.
func (q *queries) VoidOpenMFAChallenges(ctx context.Context, userID uuid.UUID, mark int) error {
	_, err := q.db.ExecContext(ctx, `UPDATE mfa_challenges SET failures = ?1
		WHERE user_id = ?2 AND used_at IS NULL AND (failures <> ?3 OR ?1 = ?3)`,
		mark, userID, authd.MFAChallengeVoided)
	return translate(err)
}

// UpdateMFAChallenge implements authd.Queries.
func (q *queries) UpdateMFAChallenge(ctx context.Context, c *authd.MFAChallenge) error {
	res, err := q.db.ExecContext(ctx, `UPDATE mfa_challenges SET failures = ?, used_at = ? WHERE id = ?`,
		c.Failures, timeArg(c.UsedAt), c.ID)
	return affected(res, err, "challenge")
}
