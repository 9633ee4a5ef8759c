package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/authd/authd"
	"github.com/google/uuid"
)

// dbtx is what a database handle and a transaction have in common.
type dbtx interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// queries implements authd.Queries on the database or a transaction. SQLite
// locks the whole database for a write transaction (BEGIN IMMEDIATE), so
// reads need no FOR UPDATE.
type queries struct {
	db dbtx
}

var _ authd.Queries = (*queries)(nil)

// userColumns are the columns a user is read from; createdColumns those a
// new user is written to: an account that has just been created has failed
// no second-factor code (failed_code_attempts takes its default), and the
// backfill tests create users on the schema of an older migration.
const (
	createdColumns = `id, email, password_hash, email_verified, account_status, failed_login_attempts,
	account_locked_until, registration_timestamp, last_login_timestamp, last_password_change,
	consent_timestamp, consent_status, created_at, updated_at, lock_reason, last_failed_login_timestamp`
	userColumns = createdColumns + `, failed_code_attempts, codes_locked_until`
)

func (q *queries) CreateUser(ctx context.Context, u *authd.User) error {
	_, err := q.db.ExecContext(ctx, `INSERT INTO users (`+createdColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		u.ID, u.Email, u.PasswordHash, u.EmailVerified, string(u.AccountStatus), u.FailedLoginAttempts,
		timeArg(u.AccountLockedUntil), timeArg(u.RegistrationTimestamp), timeArg(u.LastLoginTimestamp),
		timeArg(u.LastPasswordChange), timeArg(u.ConsentTimestamp), u.ConsentStatus,
		timeArg(u.CreatedAt), timeArg(u.UpdatedAt), nullString(string(u.LockReason)), timeArg(u.LastFailedLogin))
	return translate(err)
}

func (q *queries) User(ctx context.Context, id uuid.UUID) (*authd.User, error) {
	return scanUser(q.db.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE id = ?`, id))
}

func (q *queries) UserByEmail(ctx context.Context, email string) (*authd.User, error) {
	return scanUser(q.db.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE email = ?`, email))
}

func (q *queries) EmailTaken(ctx context.Context, email string) (bool, error) {
	var taken bool
	err := q.db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE email = ?)`, email).Scan(&taken)
	return taken, translate(err)
}

func (q *queries) UpdateUser(ctx context.Context, u *authd.User) error {
	res, err := q.db.ExecContext(ctx, `UPDATE users SET email = ?, password_hash = ?, email_verified = ?,
		account_status = ?, failed_login_attempts = ?, account_locked_until = ?,
		registration_timestamp = ?, last_login_timestamp = ?, last_password_change = ?,
		consent_timestamp = ?, consent_status = ?, created_at = ?, updated_at = ?, lock_reason = ?,
		last_failed_login_timestamp = ?, failed_code_attempts = ?, codes_locked_until = ?
		WHERE id = ?`,
		u.Email, u.PasswordHash, u.EmailVerified, string(u.AccountStatus), u.FailedLoginAttempts,
		timeArg(u.AccountLockedUntil), timeArg(u.RegistrationTimestamp), timeArg(u.LastLoginTimestamp),
		timeArg(u.LastPasswordChange), timeArg(u.ConsentTimestamp), u.ConsentStatus,
		timeArg(u.CreatedAt), timeArg(u.UpdatedAt), nullString(string(u.LockReason)), timeArg(u.LastFailedLogin),
		u.FailedCodeAttempts, timeArg(u.CodesLockedUntil), u.ID)
	if err != nil {
		return translate(err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return translate(err)
	} else if n == 0 {
		return authd.Errorf(authd.ENotFound, "user not found")
	}
	return nil
}

func scanUser(row scanner) (*authd.User, error) {
	var u authd.User
	var status string
	var lockReason sql.NullString
	err := row.Scan(&u.ID, &u.Email, &u.PasswordHash, &u.EmailVerified, &status, &u.FailedLoginAttempts,
		timeCol{&u.AccountLockedUntil}, timeCol{&u.RegistrationTimestamp}, timeCol{&u.LastLoginTimestamp},
		timeCol{&u.LastPasswordChange}, timeCol{&u.ConsentTimestamp}, &u.ConsentStatus,
		timeCol{&u.CreatedAt}, timeCol{&u.UpdatedAt}, &lockReason, timeCol{&u.LastFailedLogin}, &u.FailedCodeAttempts,
		timeCol{&u.CodesLockedUntil})
	if err != nil {
		return nil, translate(err)
	}
	if u.AccountStatus, err = authd.ParseAccountStatus(status); err != nil {
		return nil, fmt.Errorf("sqlite: user %s: %w", u.ID, err)
	}
	u.LockReason = authd.LockReason(lockReason.String)
	return &u, nil
}

const sessionColumns = `id, user_id, device_info, created_at, last_used_at, expires_at, revoked_at, amr, client_id,
	scopes, browser_digest, signin_factor, signin_passkey_id`

func (q *queries) CreateSession(ctx context.Context, s *authd.Session) error {
	_, err := q.db.ExecContext(ctx, `INSERT INTO sessions (`+sessionColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		s.ID, s.UserID, nullString(s.DeviceInfo), timeArg(s.CreatedAt), timeArg(s.LastUsedAt),
		timeArg(s.ExpiresAt), timeArg(s.RevokedAt), authd.FormatAMR(s.AMR), nullString(s.ClientID),
		nullString(authd.FormatScopes(s.Scopes)), nullString(s.BrowserDigest), nullString(s.SignedInWith.Method),
		nullUUID(s.SignedInWith.PasskeyID))
	return translate(err)
}

func (q *queries) Session(ctx context.Context, id uuid.UUID) (*authd.Session, error) {
	return scanSession(q.db.QueryRowContext(ctx, `SELECT `+sessionColumns+` FROM sessions WHERE id = ?`, id))
}

const tokenColumns = `id, jti, user_id, session_id, parent_id, token_type, token_value,
	issued_at, expires_at, revoked, revoked_at, rotated_at, device_info, created_at`

func (q *queries) CreateToken(ctx context.Context, tokens ...*authd.Token) error {
	var values []string
	var args []any
	for _, t := range tokens {
		values = append(values, "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
		args = append(args, t.ID, t.JTI, t.UserID, t.SessionID, nullUUID(t.ParentID), string(t.TokenType),
			nullString(t.TokenValue), timeArg(t.IssuedAt), timeArg(t.ExpiresAt), t.Revoked, timeArg(t.RevokedAt),
			timeArg(t.RotatedAt), nullString(t.DeviceInfo), timeArg(t.CreatedAt))
	}
	if len(values) == 0 {
		return nil
	}
	_, err := q.db.ExecContext(ctx, `INSERT INTO jwt_tokens (`+tokenColumns+`) VALUES `+strings.Join(values, ", "), args...)
	return translate(err)
}

func (q *queries) TokenByJTI(ctx context.Context, jti string) (*authd.Token, error) {
	return scanToken(q.db.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM jwt_tokens WHERE jti = ?`, jti))
}

func (q *queries) RefreshToken(ctx context.Context, digest string) (*authd.Token, error) {
	return scanToken(q.db.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM jwt_tokens
		WHERE token_value = ? AND token_type = 'refresh'`, digest))
}

func scanToken(row scanner) (*authd.Token, error) {
	var t authd.Token
	var typ string
	var parent uuid.NullUUID
	var digest, device sql.NullString
	err := row.Scan(&t.ID, &t.JTI, &t.UserID, &t.SessionID, &parent, &typ, &digest,
		timeCol{&t.IssuedAt}, timeCol{&t.ExpiresAt}, &t.Revoked, timeCol{&t.RevokedAt},
		timeCol{&t.RotatedAt}, &device, timeCol{&t.CreatedAt})
	if err != nil {
		return nil, translate(err)
	}
	if t.TokenType, err = authd.ParseTokenType(typ); err != nil {
		return nil, fmt.Errorf("sqlite: token %s: %w", t.ID, err)
	}
	t.ParentID, t.TokenValue, t.DeviceInfo = parent.UUID, digest.String, device.String
	return &t, nil
}

const verificationColumns = `id, token, user_id, token_type, created_at, expires_at, used, used_at, new_email, attempts,
	attempted_at`

func (q *queries) CreateVerificationToken(ctx context.Context, v *authd.VerificationToken) error {
	_, err := q.db.ExecContext(ctx, `INSERT INTO verification_tokens (`+verificationColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		v.ID, v.Token, v.UserID, string(v.TokenType), timeArg(v.CreatedAt), timeArg(v.ExpiresAt),
		v.Used, timeArg(v.UsedAt), nullString(v.NewEmail), v.Attempts, timeArg(v.AttemptedAt))
	return translate(err)
}

func (q *queries) VerificationToken(ctx context.Context, digest string) (*authd.VerificationToken, error) {
	return scanVerification(q.db.QueryRowContext(ctx, `SELECT `+verificationColumns+` FROM verification_tokens
		WHERE token = ?`, digest))
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// collect scans every row of rows, which it closes.
func collect[T any](rows *sql.Rows, scan func(scanner) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, translate(rows.Err())
}

// scanInt and scanID read a row of one column.
func scanInt(row scanner) (n int, err error)       { return n, translate(row.Scan(&n)) }
func scanString(row scanner) (s string, err error) { return s, translate(row.Scan(&s)) }
func scanID(row scanner) (id uuid.UUID, err error) { return id, translate(row.Scan(&id)) }

func scanVerification(row scanner) (*authd.VerificationToken, error) {
	var v authd.VerificationToken
	var typ string
	var newEmail sql.NullString
	err := row.Scan(&v.ID, &v.Token, &v.UserID, &typ, timeCol{&v.CreatedAt}, timeCol{&v.ExpiresAt},
		&v.Used, timeCol{&v.UsedAt}, &newEmail, &v.Attempts, timeCol{&v.AttemptedAt})
	if err != nil {
		return nil, translate(err)
	}
	v.NewEmail = newEmail.String
	if v.TokenType, err = authd.ParseVerificationType(typ); err != nil {
		return nil, fmt.Errorf("sqlite: verification token %s: %w", v.ID, err)
	}
	return &v, nil
}

const securityLogColumns = `id, event_type, user_id, "timestamp", ip_address, user_agent, result,
	failure_reason, additional_context`

func (q *queries) CreateSecurityLog(ctx context.Context, l *authd.SecurityLog) error {
	var context any
	if l.AdditionalContext != nil {
		b, err := json.Marshal(l.AdditionalContext)
		if err != nil {
			return authd.WrapError(authd.EInvalid, err, "security log context is not JSON")
		}
		context = string(b)
	}
	// A row about an erased user keeps no client (IP address, user agent,
	// device), as the erasure left its older rows (SPEC 6.8); writes are
	// serialised, so the user is read as the last commit left it.
	_, err := q.db.ExecContext(ctx, `INSERT INTO security_logs (`+securityLogColumns+`)
		SELECT ?1, ?2, ?3, ?4, CASE WHEN gone.id IS NULL THEN ?5 END, CASE WHEN gone.id IS NULL THEN ?6 END, ?7, ?8,
			CASE WHEN gone.id IS NULL THEN ?9 ELSE json_remove(?9, '$.device_info') END
		FROM (SELECT 1) LEFT JOIN users gone ON gone.id = ?3 AND gone.account_status = 'deleted'`,
		l.ID, string(l.EventType), nullUUID(l.UserID), timeArg(l.Timestamp), nullString(l.IPAddress),
		nullString(l.UserAgent), string(l.Result), nullString(l.FailureReason), context)
	return translate(err)
}

func (q *queries) SecurityLogs(ctx context.Context, f authd.SecurityLogFilter) ([]*authd.SecurityLog, error) {
	var where []string
	var args []any
	if f.UserID != uuid.Nil {
		where, args = append(where, "user_id = ?"), append(args, f.UserID)
	}
	if f.EventType != "" {
		where, args = append(where, "event_type = ?"), append(args, string(f.EventType))
	}
	if f.Result != "" {
		where, args = append(where, "result = ?"), append(args, string(f.Result))
	}
	if !f.Since.IsZero() {
		where, args = append(where, `"timestamp" >= ?`), append(args, timeArg(f.Since))
	}
	// A cursor before until bounds the page by itself: with both, SQLite
	// started its walk back along the timestamp index at until and read
	// every row down to the cursor (a probe, a million rows deep: 121 ms
	// a page, 0.1 ms from the cursor). Before as stored, to the
	// microsecond: a cursor within until's microsecond leaves until the
	// bound.
	if !f.Until.IsZero() && (f.After == nil || timeText(f.After.Time) >= timeText(f.Until)) {
		where, args = append(where, `"timestamp" < ?`), append(args, timeArg(f.Until))
	}
	if f.After != nil {
		where, args = append(where, `("timestamp", id) < (?, ?)`), append(args, timeArg(f.After.Time), f.After.ID)
	}
	query := `SELECT ` + securityLogColumns + ` FROM security_logs`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += ` ORDER BY "timestamp" DESC, id DESC LIMIT ?`
	args = append(args, listLimit(f.Limit))
	rows, err := q.db.QueryContext(ctx, fmt.Sprintf(pendingErasuresHidden, query), args...)
	if err != nil {
		return nil, translate(err)
	}
	return collect(rows, scanSecurityLog)
}

// pendingErasuresHidden wraps a page of security-log rows (%s, in order):
// the rows about an account whose erasure is pending are shown without
// their client, as FinishErasure will leave them (as PostgreSQL's).
const pendingErasuresHidden = `SELECT l.id, l.event_type, l.user_id, l."timestamp",
	CASE WHEN p.user_id IS NULL THEN l.ip_address END, CASE WHEN p.user_id IS NULL THEN l.user_agent END,
	l.result, l.failure_reason,
	CASE WHEN p.user_id IS NULL THEN l.additional_context ELSE json_remove(l.additional_context, '$.device_info') END
	FROM (%s) l LEFT JOIN erasures_pending p ON p.user_id = l.user_id
	ORDER BY l."timestamp" DESC, l.id DESC`

// listLimit bounds a page size to (0, MaxListLimit+1]: the service asks
// for one row more than it shows, to know whether there is a next page.
func listLimit(n int) int {
	if n <= 0 {
		return authd.DefaultListLimit
	}
	return min(n, authd.MaxListLimit+1)
}

// timeLayout is how timestamps are stored: UTC, fixed width, microseconds
// (PostgreSQL's precision), so that text order is time order.
const timeLayout = "2006-01-02T15:04:05.000000Z"

// timeArg formats t for a TIMESTAMP column; the zero time is NULL.
func timeArg(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return timeText(t)
}

// timeText formats t as stored, for comparisons.
func timeText(t time.Time) string { return t.UTC().Format(timeLayout) }

// timeCol scans a TIMESTAMP column into *t; NULL becomes the zero time. The
// driver hands over text, or a time.Time when it recognised the text itself.
type timeCol struct{ t *time.Time }

func (c timeCol) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*c.t = time.Time{}
		return nil
	case time.Time:
		*c.t = v.UTC()
		return nil
	case string:
		return c.parse(v)
	case []byte:
		return c.parse(string(v))
	}
	return fmt.Errorf("sqlite: cannot scan %T into a timestamp", src)
}

func (c timeCol) parse(s string) error {
	for _, layout := range []string{timeLayout, time.RFC3339Nano, "2006-01-02 15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			*c.t = t.UTC()
			return nil
		}
	}
	return fmt.Errorf("sqlite: %q is not a timestamp", s)
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullUUID(id uuid.UUID) any {
	if id == uuid.Nil {
		return nil
	}
	return id.String()
}

func (q *queries) UpdateSession(ctx context.Context, s *authd.Session) error {
	res, err := q.db.ExecContext(ctx, `UPDATE sessions SET last_used_at = ?, revoked_at = ? WHERE id = ?`,
		timeArg(s.LastUsedAt), timeArg(s.RevokedAt), s.ID)
	return affected(res, err, "session")
}

func (q *queries) Sessions(ctx context.Context, userID uuid.UUID, now time.Time) ([]*authd.Session, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT `+sessionColumns+` FROM sessions
		WHERE user_id = ? AND revoked_at IS NULL AND expires_at > ?
		ORDER BY created_at DESC, id DESC`, userID, timeArg(now))
	if err != nil {
		return nil, translate(err)
	}
	defer rows.Close()
	var out []*authd.Session
	for rows.Next() {
		s, err := scanSession(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, translate(rows.Err())
}

func (q *queries) RevokeSession(ctx context.Context, id uuid.UUID, at time.Time) error {
	res, err := q.db.ExecContext(ctx, `UPDATE sessions SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?`,
		timeArg(at), id)
	if err := affected(res, err, "session"); err != nil {
		return err
	}
	_, err = q.db.ExecContext(ctx, `UPDATE jwt_tokens SET revoked = 1, revoked_at = ?
		WHERE session_id = ? AND NOT revoked`, timeArg(at), id)
	return translate(err)
}

func (q *queries) RevokeUserSessions(ctx context.Context, userID, except uuid.UUID, at time.Time) ([]uuid.UUID, error) {
	return q.revokeSessions(ctx, at, `UPDATE sessions SET revoked_at = ?1
		WHERE user_id = ?2 AND id <> ?3 AND revoked_at IS NULL AND expires_at > ?1
		RETURNING id`, timeArg(at), userID, except)
}

func (q *queries) RevokeSessionsSignedInWith(ctx context.Context, userID uuid.UUID, f authd.SignInFactor, except uuid.UUID,
	at time.Time) ([]uuid.UUID, error) {
	return q.revokeSessions(ctx, at, `UPDATE sessions SET revoked_at = ?1
		WHERE user_id = ?2 AND id <> ?3 AND revoked_at IS NULL AND expires_at > ?1
			AND signin_factor = ?4 AND signin_passkey_id IS ?5
		RETURNING id`, timeArg(at), userID, except, nullString(f.Method), nullUUID(f.PasskeyID))
}

// excessSessions reads SignInState's Excess (ix_sessions_user_id_live).
func (q *queries) excessSessions(ctx context.Context, userID uuid.UUID, keep int, now time.Time) ([]uuid.UUID, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT id FROM sessions WHERE user_id = ? AND revoked_at IS NULL AND expires_at > ?
		ORDER BY last_used_at DESC, id DESC LIMIT -1 OFFSET ?`, userID, timeArg(now), keep)
	if err != nil {
		return nil, translate(err)
	}
	return scanIDs(rows)
}

// RevokeSessions implements authd.Queries: the ids travel as one JSON
// array.
func (q *queries) RevokeSessions(ctx context.Context, ids []uuid.UUID, at time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	list, err := json.Marshal(ids)
	if err != nil {
		return err
	}
	ended, err := q.revokeSessions(ctx, at, `UPDATE sessions SET revoked_at = ?1
		WHERE id IN (SELECT value FROM json_each(?2)) AND revoked_at IS NULL RETURNING id`, timeArg(at), string(list))
	if err != nil {
		return err
	}
	if len(ended) != len(ids) {
		return fmt.Errorf("sqlite: %d of the %d sessions to end were not unrevoked", len(ids)-len(ended), len(ids))
	}
	return nil
}

// SignInState reads the user, their factors, passkeys and excess sessions
// one after another: SQLite runs in-process, and its write transactions
// exclude each other, so no lock is needed.
func (q *queries) SignInState(ctx context.Context, userID uuid.UUID, keep int, now time.Time) (*authd.SignInState, error) {
	var st authd.SignInState
	var err error
	if st.User, err = q.User(ctx, userID); err != nil {
		return nil, err
	}
	if st.Factors, err = q.Factors(ctx, userID); err != nil {
		return nil, err
	}
	if st.Passkeys, err = q.Passkeys(ctx, userID); err != nil {
		return nil, err
	}
	if keep >= 0 {
		if st.Excess, err = q.excessSessions(ctx, userID, keep, now); err != nil {
			return nil, err
		}
	}
	return &st, nil
}

// revokeSessions runs update, which revokes sessions at at and returns their
// ids, and revokes those sessions' tokens.
func (q *queries) revokeSessions(ctx context.Context, at time.Time, update string, args ...any) ([]uuid.UUID, error) {
	db := q.db
	if l, ok := q.db.(laneDB); ok {
		// Outside a transaction: hold the lane while the rows step the
		// UPDATE and the tokens' UPDATEs run (on the handle itself, since
		// the lane is taken).
		if err := l.lane.enter(ctx); err != nil {
			return nil, err
		}
		defer l.lane.leave()
		db = l.db
	}
	rows, err := db.QueryContext(ctx, update, args...)
	if err != nil {
		return nil, translate(err)
	}
	ids, err := scanIDs(rows)
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		if _, err := db.ExecContext(ctx, `UPDATE jwt_tokens SET revoked = 1, revoked_at = ?
			WHERE session_id = ? AND NOT revoked`, timeArg(at), id); err != nil {
			return nil, translate(err)
		}
	}
	return ids, nil
}

// RefreshSession reads a refresh token with its session and user. SQLite
// runs in-process, so three queries cost little, and its write
// transactions exclude each other, so no lock is needed.
func (q *queries) RefreshSession(ctx context.Context, digest string) (*authd.Token, *authd.Session, *authd.User, error) {
	t, err := q.RefreshToken(ctx, digest)
	if err != nil {
		return nil, nil, nil, err
	}
	s, err := q.Session(ctx, t.SessionID)
	if err != nil {
		return nil, nil, nil, err
	}
	u, err := q.User(ctx, t.UserID)
	if err != nil {
		return nil, nil, nil, err
	}
	return t, s, u, nil
}

// SaveRotation writes the token's revocation fields and the session's
// last use and revocation.
func (q *queries) SaveRotation(ctx context.Context, t *authd.Token, s *authd.Session) error {
	if err := q.updateToken(ctx, t); err != nil {
		return err
	}
	return q.UpdateSession(ctx, s)
}

// updateToken writes the token's revocation fields.
func (q *queries) updateToken(ctx context.Context, t *authd.Token) error {
	res, err := q.db.ExecContext(ctx, `UPDATE jwt_tokens SET revoked = ?, revoked_at = ?, rotated_at = ? WHERE id = ?`,
		t.Revoked, timeArg(t.RevokedAt), timeArg(t.RotatedAt), t.ID)
	return affected(res, err, "token")
}

func (q *queries) UseVerificationToken(ctx context.Context, v *authd.VerificationToken) error {
	res, err := q.db.ExecContext(ctx, `UPDATE verification_tokens SET used = ?, used_at = ? WHERE id = ?`,
		v.Used, timeArg(v.UsedAt), v.ID)
	return affected(res, err, "verification token")
}

func (q *queries) SetVerificationAttempts(ctx context.Context, v *authd.VerificationToken) error {
	res, err := q.db.ExecContext(ctx, `UPDATE verification_tokens SET attempts = ?, attempted_at = ? WHERE id = ?`,
		v.Attempts, timeArg(v.AttemptedAt), v.ID)
	return affected(res, err, "verification token")
}

func (q *queries) DeleteVerificationTokens(ctx context.Context, userID uuid.UUID, typ authd.VerificationType) error {
	_, err := q.db.ExecContext(ctx, `DELETE FROM verification_tokens
		WHERE user_id = ? AND token_type = ? AND new_email IS NULL AND NOT used`,
		userID, string(typ))
	return translate(err)
}

func (q *queries) DeleteEmailChanges(ctx context.Context, userID uuid.UUID) error {
	_, err := q.db.ExecContext(ctx, `DELETE FROM verification_tokens
		WHERE user_id = ? AND token_type = 'email_verification' AND new_email IS NOT NULL AND NOT used`, userID)
	return translate(err)
}

func (q *queries) EmailChangePending(ctx context.Context, userID uuid.UUID, now time.Time) (bool, error) {
	var pending bool
	err := q.db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM verification_tokens
			WHERE user_id = ?1 AND token_type = 'email_verification' AND new_email IS NOT NULL AND NOT used
			AND expires_at > ?2)
		OR EXISTS (SELECT 1 FROM mail_outbox WHERE user_id = ?1 AND kind = 'email_change')`, userID, timeArg(now)).Scan(&pending)
	return pending, translate(err)
}

// PublishRevocation records rev's feed events; other than that there is no
// one to tell: an SQLite database serves one instance, which applies its own
// revocations. One writer at a time means ids commit in order.
func (q *queries) PublishRevocation(ctx context.Context, rev authd.Revocation) error {
	for _, e := range rev.Events() {
		if _, err := q.db.ExecContext(ctx, `INSERT INTO revocation_events (kind, subject_id, reason, expires_at, created_at)
			VALUES (?, ?, ?, ?, ?)`, string(e.Kind), e.Subject, e.Reason, timeArg(e.ExpiresAt), timeArg(e.CreatedAt)); err != nil {
			return translate(err)
		}
	}
	return nil
}

func affected(res sql.Result, err error, what string) error {
	if err != nil {
		return translate(err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return translate(err)
	}
	if n == 0 {
		return authd.Errorf(authd.ENotFound, "%s not found", what)
	}
	return nil
}

// scanIDs reads rows of one id each, and closes them.
func scanIDs(rows *sql.Rows) ([]uuid.UUID, error) {
	defer rows.Close()
	var ids []uuid.UUID
	for rows.Next() {
		var id uuid.UUID
		if err := rows.Scan(&id); err != nil {
			return nil, translate(err)
		}
		ids = append(ids, id)
	}
	return ids, translate(rows.Err())
}
