package sqlite

import (
	"context"
	"encoding/base64"
	"strings"
	"time"

	"github.com/authd/authd"
	"github.com/google/uuid"
)

const passkeyColumns = `id, user_id, name, credential_id, public_key, attestation_type, aaguid, sign_count,
	backup_eligible, backup_state, transports, created_at, last_used_at`

// b64 is how credential ids and public keys are stored: base64url text.
var b64 = base64.RawURLEncoding

// CreatePasskey implements authd.Queries.
func (q *queries) CreatePasskey(ctx context.Context, p *authd.Passkey) error {
	_, err := q.db.ExecContext(ctx, `INSERT INTO passkeys (`+passkeyColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		p.ID, p.UserID, p.Name, b64.EncodeToString(p.CredentialID), b64.EncodeToString(p.PublicKey),
		p.AttestationType, p.AAGUID, int64(p.SignCount), p.BackupEligible, p.BackupState,
		strings.Join(p.Transports, ","), timeArg(p.CreatedAt), timeArg(p.LastUsedAt))
	return translate(err)
}

// Passkeys implements authd.Queries. SQLite's write transactions exclude
// each other, so no lock is needed.
func (q *queries) Passkeys(ctx context.Context, userID uuid.UUID) ([]*authd.Passkey, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT `+passkeyColumns+` FROM passkeys WHERE user_id = ?
		ORDER BY created_at, id`, userID)
	if err != nil {
		return nil, translate(err)
	}
	return collect(rows, scanPasskey)
}

// PasskeyByCredentialID implements authd.Queries.
func (q *queries) PasskeyByCredentialID(ctx context.Context, credentialID []byte) (*authd.Passkey, error) {
	return scanPasskey(q.db.QueryRowContext(ctx, `SELECT `+passkeyColumns+` FROM passkeys WHERE credential_id = ?`,
		b64.EncodeToString(credentialID)))
}

func scanPasskey(row scanner) (*authd.Passkey, error) {
	var p authd.Passkey
	var credID, key, transports string
	var count int64
	if err := row.Scan(&p.ID, &p.UserID, &p.Name, &credID, &key, &p.AttestationType, &p.AAGUID, &count,
		&p.BackupEligible, &p.BackupState, &transports, timeCol{&p.CreatedAt}, timeCol{&p.LastUsedAt}); err != nil {
		return nil, translate(err)
	}
	var err error
	if p.CredentialID, err = b64.DecodeString(credID); err != nil {
		return nil, err
	}
	if p.PublicKey, err = b64.DecodeString(key); err != nil {
		return nil, err
	}
	p.SignCount = uint32(count)
	if transports != "" {
		p.Transports = strings.Split(transports, ",")
	}
	return &p, nil
}

// UpdatePasskey implements authd.Queries.
func (q *queries) UpdatePasskey(ctx context.Context, p *authd.Passkey) error {
	res, err := q.db.ExecContext(ctx, `UPDATE passkeys SET name = ?, sign_count = ?, backup_state = ?,
		last_used_at = ? WHERE id = ?`, p.Name, int64(p.SignCount), p.BackupState, timeArg(p.LastUsedAt), p.ID)
	return affected(res, err, "passkey")
}

// DeletePasskey implements authd.Queries.
func (q *queries) DeletePasskey(ctx context.Context, id uuid.UUID) error {
	res, err := q.db.ExecContext(ctx, `DELETE FROM passkeys WHERE id = ?`, id)
	return affected(res, err, "passkey")
}

// DeleteUserPasskeys implements authd.Queries.
func (q *queries) DeleteUserPasskeys(ctx context.Context, userID uuid.UUID) (int, error) {
	res, err := q.db.ExecContext(ctx, `DELETE FROM passkeys WHERE user_id = ?`, userID)
	if err != nil {
		return 0, translate(err)
	}
	n, err := res.RowsAffected()
	return int(n), translate(err)
}

const webauthnChallengeColumns = `id, challenge, user_id, purpose, mfa_challenge_id, session_data, created_at,
	expires_at, used_at`

// CreateWebAuthnChallenge implements authd.Queries.
func (q *queries) CreateWebAuthnChallenge(ctx context.Context, c *authd.WebAuthnChallenge) error {
	_, err := q.db.ExecContext(ctx, `INSERT INTO webauthn_challenges (`+webauthnChallengeColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, c.ID, c.Challenge, nullUUID(c.UserID), string(c.Purpose),
		nullUUID(c.MFAChallengeID), c.SessionData, timeArg(c.CreatedAt), timeArg(c.ExpiresAt), timeArg(c.UsedAt))
	return translate(err)
}

// WebAuthnChallenge implements authd.Queries.
func (q *queries) WebAuthnChallenge(ctx context.Context, digest string) (*authd.WebAuthnChallenge, error) {
	return scanWebAuthnChallenge(q.db.QueryRowContext(ctx, `SELECT `+webauthnChallengeColumns+` FROM webauthn_challenges
		WHERE challenge = ?`, digest))
}

func scanWebAuthnChallenge(row scanner) (*authd.WebAuthnChallenge, error) {
	var c authd.WebAuthnChallenge
	var user, mfa uuid.NullUUID
	var purpose string
	if err := row.Scan(&c.ID, &c.Challenge, &user, &purpose, &mfa, &c.SessionData, timeCol{&c.CreatedAt},
		timeCol{&c.ExpiresAt}, timeCol{&c.UsedAt}); err != nil {
		return nil, translate(err)
	}
	c.UserID, c.Purpose, c.MFAChallengeID = user.UUID, authd.ChallengePurpose(purpose), mfa.UUID
	return &c, nil
}

// UseWebAuthnChallenge implements authd.Queries.
func (q *queries) UseWebAuthnChallenge(ctx context.Context, c *authd.WebAuthnChallenge) error {
	res, err := q.db.ExecContext(ctx, `UPDATE webauthn_challenges SET used_at = ? WHERE id = ?`, timeArg(c.UsedAt), c.ID)
	return affected(res, err, "webauthn challenge")
}

// VoidWebAuthnChallenges implements authd.Queries.
func (q *queries) VoidWebAuthnChallenges(ctx context.Context, userID uuid.UUID, purpose authd.ChallengePurpose,
	at time.Time) error {
	_, err := q.db.ExecContext(ctx, `UPDATE webauthn_challenges SET used_at = ?
		WHERE user_id = ? AND purpose = ? AND used_at IS NULL`, timeArg(at), userID, string(purpose))
	return translate(err)
}
