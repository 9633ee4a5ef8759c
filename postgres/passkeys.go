package postgres

import (
	"context"
	"encoding/base64"
	"strings"
	"time"

	"github.com/authd/authd"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

const passkeyColumns = `id, user_id, name, credential_id, public_key, attestation_type, aaguid, sign_count,
	backup_eligible, backup_state, transports, created_at, last_used_at`

// b64 is how credential ids and public keys are stored: base64url text.
var b64 = base64.RawURLEncoding

// CreatePasskey implements authd.Queries. It runs at once, so that a taken
// credential id is reported to the caller rather than at commit.
func (q *queries) CreatePasskey(ctx context.Context, p *authd.Passkey) error {
	_, err := q.exec(ctx, `INSERT INTO passkeys (`+passkeyColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
		p.ID, p.UserID, p.Name, b64.EncodeToString(p.CredentialID), b64.EncodeToString(p.PublicKey),
		p.AttestationType, p.AAGUID, int64(p.SignCount), p.BackupEligible, p.BackupState,
		strings.Join(p.Transports, ","), p.CreatedAt, nullTime(p.LastUsedAt))
	return translate(err)
}

// Passkeys implements authd.Queries.
func (q *queries) Passkeys(ctx context.Context, userID uuid.UUID) ([]*authd.Passkey, error) {
	st := q.passkeys(userID)
	rows, err := q.rows(ctx, st.sql, st.args...)
	if err != nil {
		return nil, translate(err)
	}
	out, err := pgx.CollectRows(rows, rowTo(scanPasskey))
	return out, translate(err)
}

// passkeys reads Passkeys.
func (q *queries) passkeys(userID uuid.UUID) statement {
	return statement{`SELECT ` + passkeyColumns + ` FROM passkeys WHERE user_id = $1
		ORDER BY created_at, id` + q.forUpdate(), []any{userID}}
}

// PasskeyByCredentialID implements authd.Queries.
func (q *queries) PasskeyByCredentialID(ctx context.Context, credentialID []byte) (*authd.Passkey, error) {
	p, err := scanPasskey(q.row(ctx, `SELECT `+passkeyColumns+` FROM passkeys WHERE credential_id = $1`+q.forUpdate(),
		b64.EncodeToString(credentialID)))
	return p, translate(err)
}

func scanPasskey(row pgx.Row) (*authd.Passkey, error) {
	var p authd.Passkey
	var credID, key, transports string
	var count int64
	var lastUsed *time.Time
	if err := row.Scan(&p.ID, &p.UserID, &p.Name, &credID, &key, &p.AttestationType, &p.AAGUID, &count,
		&p.BackupEligible, &p.BackupState, &transports, &p.CreatedAt, &lastUsed); err != nil {
		return nil, err
	}
	var err error
	if p.CredentialID, err = b64.DecodeString(credID); err != nil {
		return nil, err
	}
	if p.PublicKey, err = b64.DecodeString(key); err != nil {
		return nil, err
	}
	p.SignCount, p.LastUsedAt = uint32(count), value(lastUsed)
	if transports != "" {
		p.Transports = strings.Split(transports, ",")
	}
	return &p, nil
}

// UpdatePasskey implements authd.Queries.
func (q *queries) UpdatePasskey(ctx context.Context, p *authd.Passkey) error {
	return q.write(ctx, mustAffect("passkey"), `UPDATE passkeys SET name = $2, sign_count = $3, backup_state = $4,
		last_used_at = $5 WHERE id = $1`, p.ID, p.Name, int64(p.SignCount), p.BackupState, nullTime(p.LastUsedAt))
}

// DeletePasskey implements authd.Queries.
func (q *queries) DeletePasskey(ctx context.Context, id uuid.UUID) error {
	return q.write(ctx, mustAffect("passkey"), `DELETE FROM passkeys WHERE id = $1`, id)
}

// DeleteUserPasskeys implements authd.Queries.
func (q *queries) DeleteUserPasskeys(ctx context.Context, userID uuid.UUID) (int, error) {
	tag, err := q.exec(ctx, `DELETE FROM passkeys WHERE user_id = $1`, userID)
	return int(tag.RowsAffected()), translate(err)
}

const webauthnChallengeColumns = `id, challenge, user_id, purpose, mfa_challenge_id, session_data, created_at,
	expires_at, used_at`

// CreateWebAuthnChallenge implements authd.Queries.
func (q *queries) CreateWebAuthnChallenge(ctx context.Context, c *authd.WebAuthnChallenge) error {
	return q.write(ctx, nil, `INSERT INTO webauthn_challenges (`+webauthnChallengeColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, c.ID, c.Challenge, nullUUID(c.UserID), string(c.Purpose),
		nullUUID(c.MFAChallengeID), c.SessionData, c.CreatedAt, c.ExpiresAt, nullTime(c.UsedAt))
}

// WebAuthnChallenge implements authd.Queries: see ownedRow for the locks.
func (q *queries) WebAuthnChallenge(ctx context.Context, digest string) (*authd.WebAuthnChallenge, error) {
	c, err := scanWebAuthnChallenge(q.ownedRow(ctx, "webauthn_challenges", "challenge", webauthnChallengeColumns, digest))
	return c, translate(err)
}

func scanWebAuthnChallenge(row pgx.Row) (*authd.WebAuthnChallenge, error) {
	var c authd.WebAuthnChallenge
	var user, mfa *uuid.UUID
	var purpose string
	var used *time.Time
	if err := row.Scan(&c.ID, &c.Challenge, &user, &purpose, &mfa, &c.SessionData, &c.CreatedAt, &c.ExpiresAt,
		&used); err != nil {
		return nil, err
	}
	c.UserID, c.Purpose, c.MFAChallengeID, c.UsedAt = value(user), authd.ChallengePurpose(purpose), value(mfa), value(used)
	return &c, nil
}

// UseWebAuthnChallenge implements authd.Queries.
func (q *queries) UseWebAuthnChallenge(ctx context.Context, c *authd.WebAuthnChallenge) error {
	return q.write(ctx, mustAffect("webauthn challenge"), `UPDATE webauthn_challenges SET used_at = $2 WHERE id = $1`,
		c.ID, nullTime(c.UsedAt))
}

// VoidWebAuthnChallenges implements authd.Queries. The flows that call it
// hold the user, which WebAuthnChallenge locks first (ownedRow).
func (q *queries) VoidWebAuthnChallenges(ctx context.Context, userID uuid.UUID, purpose authd.ChallengePurpose,
	at time.Time) error {
	return q.write(ctx, nil, `UPDATE webauthn_challenges SET used_at = $3
		WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL`, userID, string(purpose), at)
}
