package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/authd/authd"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// dbtx is what a pool and a transaction have in common.
type dbtx interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// queries implements authd.Queries on a pool or, with locking set, on a
// transaction whose reads lock the rows they return.
//
// Inside a transaction, writes whose result the flow does not read (the
// inserts and updates of write) are queued and sent together with the next
// statement (a read, an exec, or the COMMIT) in one round trip, as is the
// BEGIN: a refresh then costs two round trips instead of seven.
type queries struct {
	db      dbtx
	locking bool
	pending pgx.Batch
	checks  []func(pgconn.CommandTag) error
	// revocations published in the transaction, whose feed events are
	// inserted just before it commits (insertRevocationEvents).
	revocations []authd.Revocation
}

// write runs a statement whose result the caller does not read: at once
// on the pool, queued inside a transaction. must, if not nil, is how many
// rows it must change (else ENotFound): inside a transaction the server
// checks it (expect), since the COMMIT may travel in the same round trip.
func (q *queries) write(ctx context.Context, must *changes, sql string, args ...any) error {
	if !q.locking {
		tag, err := q.db.Exec(ctx, sql, args...)
		if err != nil {
			return translate(err)
		}
		return must.check(tag.RowsAffected())
	}
	if must != nil {
		sql, args = must.expect(sql, args)
	}
	q.queue(nil, sql, args...)
	return nil
}

// queue queues a statement of the transaction; check, if not nil, verifies
// its command tag once the answer is back (after any COMMIT sent with it:
// only for COMMIT's own answer).
func (q *queries) queue(check func(pgconn.CommandTag) error, sql string, args ...any) {
	q.pending.Queue(sql, args...)
	q.checks = append(q.checks, check)
}

// changes is how many rows a write must change, and what it changes.
type changes struct {
	what    string
	atLeast int64
}

// mustAffect is a write that must change a row.
func mustAffect(what string) *changes { return &changes{what: what, atLeast: 1} }

// check fails with ENotFound when n rows are fewer than c asks for.
func (c *changes) check(n int64) error {
	if c != nil && n < c.atLeast {
		return authd.Errorf(authd.ENotFound, "%s not found", c.what)
	}
	return nil
}

// expect returns the write sql as one statement that fails, on the server,
// when it changes fewer rows than c asks for (authd_expect_rows, migration
// 13), so that the transaction aborts before its COMMIT. sql must be a
// plain INSERT, UPDATE or DELETE without RETURNING.
func (c *changes) expect(sql string, args []any) (string, []any) {
	n := len(args)
	return `WITH changed AS (` + sql + ` RETURNING 1) SELECT authd_expect_rows(count(*), $` + strconv.Itoa(n+1) +
		`, $` + strconv.Itoa(n+2) + `) FROM changed`, append(args[:n:n], c.atLeast, c.what)
}

// flush sends the queued writes. A failure there is reported by whatever
// comes next (a read or the commit); a missing reference is then internal,
// so that no read mistakes it for "not found".
func (q *queries) flush(ctx context.Context) error { return q.send(ctx, nil) }

// statement is one SQL statement with its arguments.
type statement struct {
	sql  string
	args []any
}

// send sends the queued statements and after them, in the same round trip,
// the statements of after; last then reads their results (BatchResults'
// next, in order) once the queued statements have succeeded. Errors of
// after's statements are last's to report.
func (q *queries) send(ctx context.Context, last func(pgx.BatchResults), after ...statement) error {
	if q.pending.Len() == 0 && len(after) == 0 {
		return nil
	}
	batch, checks := q.pending, q.checks
	q.pending, q.checks = pgx.Batch{}, nil
	for _, st := range after {
		batch.Queue(st.sql, st.args...)
	}
	br := q.db.SendBatch(ctx, &batch)
	err := func() error {
		for _, check := range checks {
			tag, err := br.Exec()
			if err != nil {
				return translate(err)
			}
			if check != nil {
				if err := check(tag); err != nil {
					return err
				}
			}
		}
		return nil
	}()
	if authd.ErrorCode(err) == authd.ENotFound {
		err = fmt.Errorf("postgres: a queued write failed: %v", err) // internal, not "not found"
	}
	if err == nil && last != nil {
		last(br)
	}
	if cerr := br.Close(); err == nil && last == nil {
		err = translate(cerr)
	}
	return err
}

// exec, rows and row run a statement after the queued writes: exec and
// row in the same round trip as those, rows after them.
func (q *queries) exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if q.pending.Len() == 0 {
		return q.db.Exec(ctx, sql, args...)
	}
	var tag pgconn.CommandTag
	var execErr error
	if err := q.send(ctx, func(br pgx.BatchResults) { tag, execErr = br.Exec() }, statement{sql, args}); err != nil {
		return tag, err
	}
	return tag, execErr
}

func (q *queries) rows(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := q.flush(ctx); err != nil {
		return nil, err
	}
	return q.db.Query(ctx, sql, args...)
}

func (q *queries) row(ctx context.Context, sql string, args ...any) pgx.Row {
	if q.pending.Len() == 0 {
		return q.db.QueryRow(ctx, sql, args...)
	}
	return &batchRow{q: q, ctx: ctx, sql: sql, args: args}
}

// batchRow is a read sent, when scanned, in one round trip with the writes
// queued before it.
type batchRow struct {
	q    *queries
	ctx  context.Context
	sql  string
	args []any
}

func (r *batchRow) Scan(dest ...any) error {
	var scanErr error
	if err := r.q.send(r.ctx, func(br pgx.BatchResults) { scanErr = br.QueryRow().Scan(dest...) }, statement{r.sql, r.args}); err != nil {
		return err
	}
	return scanErr
}

var _ authd.Queries = (*queries)(nil)

// forUpdate is appended to the reads that lock inside a transaction.
func (q *queries) forUpdate() string {
	if q.locking {
		return " FOR UPDATE"
	}
	return ""
}

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
	_, err := q.exec(ctx, `INSERT INTO users (`+createdColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
		u.ID, u.Email, u.PasswordHash, u.EmailVerified, string(u.AccountStatus), u.FailedLoginAttempts,
		nullTime(u.AccountLockedUntil), u.RegistrationTimestamp, nullTime(u.LastLoginTimestamp),
		u.LastPasswordChange, u.ConsentTimestamp, u.ConsentStatus, u.CreatedAt, u.UpdatedAt,
		nullString(string(u.LockReason)), nullTime(u.LastFailedLogin))
	return translate(err)
}

// User implements authd.Queries: see userLock for the lock.
func (q *queries) User(ctx context.Context, id uuid.UUID) (*authd.User, error) {
	st := q.user(id)
	return scanUser(q.row(ctx, st.sql, st.args...))
}

// userLock is the lock a transaction takes on the user's row it reads: FOR
// NO KEY UPDATE, not FOR UPDATE. It lets other transactions take the
// key-share lock that their rows' foreign keys to the user (and audit rows,
// userLogQuery) take. A logout, which locks its session and then writes its
// audit row, so never waits for a flow that holds the user and waits for
// that session (a sign-in that ends it, a password change that ends every
// other one): that order was a deadlock. Flows that change the user still
// exclude each other and a sign-in (refresh's FOR SHARE too).
//
// An UPDATE that changes a key column (id, or email: its index is unique)
// takes the stronger lock itself. Erasure does, and it must hold audit
// rows back anyway: ErasePersonalData locks the row FOR UPDATE once the
// sessions are ended, before it clears anything. An address change
// (authd's changeEmail) does too, and ends the sessions before it updates
// the user, or the deadlock above returns.
func (q *queries) userLock() string {
	if q.locking {
		return " FOR NO KEY UPDATE"
	}
	return ""
}

// ownedRow reads the row of table whose column key is value, with columns.
// Inside a transaction it locks the row's user first (as userLock does;
// a row with no user, a passwordless sign-in's ceremony, locks none),
// then the row: the order of the flows that hold the user and then change
// or delete the user's rows (an erasure; a new link that voids the older
// ones; an administrator's lock), so that each waits for the other instead
// of deadlocking with it (TestOwnedRowsLockTheirUserFirst). The subquery
// locks the user as the row's scan meets it, before the row itself is
// locked.
func (q *queries) ownedRow(ctx context.Context, table, key, columns string, value any) pgx.Row {
	if !q.locking {
		return q.row(ctx, `SELECT `+columns+` FROM `+table+` WHERE `+key+` = $1`, value)
	}
	return q.row(ctx, `SELECT `+columns+` FROM `+table+` r WHERE r.`+key+` = $1
		AND (r.user_id IS NULL OR EXISTS (SELECT FROM users u WHERE u.id = r.user_id FOR NO KEY UPDATE))
		FOR UPDATE`, value)
}

// user reads a user, locked inside a transaction (userLock).
func (q *queries) user(id uuid.UUID) statement {
	return statement{`SELECT ` + userColumns + ` FROM users WHERE id = $1` + q.userLock(), []any{id}}
}

// UserByEmail implements authd.Queries: see userLock for the lock.
func (q *queries) UserByEmail(ctx context.Context, email string) (*authd.User, error) {
	return scanUser(q.row(ctx, `SELECT `+userColumns+` FROM users WHERE email = $1`+q.userLock(), email))
}

func (q *queries) EmailTaken(ctx context.Context, email string) (bool, error) {
	var taken bool
	err := q.row(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE email = $1)`, email).Scan(&taken)
	return taken, translate(err)
}

func (q *queries) UpdateUser(ctx context.Context, u *authd.User) error {
	return q.write(ctx, mustAffect("user"), `UPDATE users SET email = $2, password_hash = $3, email_verified = $4,
		account_status = $5, failed_login_attempts = $6, account_locked_until = $7,
		registration_timestamp = $8, last_login_timestamp = $9, last_password_change = $10,
		consent_timestamp = $11, consent_status = $12, created_at = $13, updated_at = $14,
		lock_reason = $15, last_failed_login_timestamp = $16, failed_code_attempts = $17,
		codes_locked_until = $18
		WHERE id = $1`,
		u.ID, u.Email, u.PasswordHash, u.EmailVerified, string(u.AccountStatus), u.FailedLoginAttempts,
		nullTime(u.AccountLockedUntil), u.RegistrationTimestamp, nullTime(u.LastLoginTimestamp),
		u.LastPasswordChange, u.ConsentTimestamp, u.ConsentStatus, u.CreatedAt, u.UpdatedAt,
		nullString(string(u.LockReason)), nullTime(u.LastFailedLogin), u.FailedCodeAttempts,
		nullTime(u.CodesLockedUntil))
}

// userScan receives a users row.
type userScan struct {
	u                      authd.User
	status                 string
	lockedUntil, lastLogin *time.Time
	lockReason             *string
	lastFailed             *time.Time
	codesLocked            *time.Time
}

func (s *userScan) dest() []any {
	u := &s.u
	return []any{&u.ID, &u.Email, &u.PasswordHash, &u.EmailVerified, &s.status, &u.FailedLoginAttempts,
		&s.lockedUntil, &u.RegistrationTimestamp, &s.lastLogin, &u.LastPasswordChange,
		&u.ConsentTimestamp, &u.ConsentStatus, &u.CreatedAt, &u.UpdatedAt, &s.lockReason, &s.lastFailed,
		&u.FailedCodeAttempts, &s.codesLocked}
}

func (s *userScan) user() (*authd.User, error) {
	var err error
	if s.u.AccountStatus, err = authd.ParseAccountStatus(s.status); err != nil {
		return nil, fmt.Errorf("postgres: user %s: %w", s.u.ID, err)
	}
	s.u.AccountLockedUntil, s.u.LastLoginTimestamp = value(s.lockedUntil), value(s.lastLogin)
	s.u.LockReason, s.u.LastFailedLogin = authd.LockReason(value(s.lockReason)), value(s.lastFailed)
	s.u.CodesLockedUntil = value(s.codesLocked)
	return &s.u, nil
}

func scanUser(row pgx.Row) (*authd.User, error) {
	var s userScan
	if err := row.Scan(s.dest()...); err != nil {
		return nil, translate(err)
	}
	return s.user()
}

const sessionColumns = `id, user_id, device_info, created_at, last_used_at, expires_at, revoked_at, amr, client_id,
	scopes, browser_digest, signin_factor, signin_passkey_id`

func (q *queries) CreateSession(ctx context.Context, s *authd.Session) error {
	return q.write(ctx, nil, `INSERT INTO sessions (`+sessionColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
		s.ID, s.UserID, nullString(s.DeviceInfo), s.CreatedAt, s.LastUsedAt, s.ExpiresAt, nullTime(s.RevokedAt),
		authd.FormatAMR(s.AMR), nullString(s.ClientID), nullString(authd.FormatScopes(s.Scopes)),
		nullString(s.BrowserDigest), nullString(s.SignedInWith.Method), nullUUID(s.SignedInWith.PasskeyID))
}

func (q *queries) Session(ctx context.Context, id uuid.UUID) (*authd.Session, error) {
	return scanSession(q.row(ctx, `SELECT `+sessionColumns+` FROM sessions WHERE id = $1`+q.forUpdate(), id))
}

// sessionScan receives a sessions row.
type sessionScan struct {
	s         authd.Session
	device    *string
	revokedAt *time.Time
	amr       string
	client    *string
	scopes    *string
	browser   *string
	factor    *string
	passkey   *uuid.UUID
}

func (s *sessionScan) dest() []any {
	return []any{&s.s.ID, &s.s.UserID, &s.device, &s.s.CreatedAt, &s.s.LastUsedAt, &s.s.ExpiresAt, &s.revokedAt, &s.amr,
		&s.client, &s.scopes, &s.browser, &s.factor, &s.passkey}
}

func (s *sessionScan) session() *authd.Session {
	s.s.DeviceInfo, s.s.RevokedAt, s.s.AMR = value(s.device), value(s.revokedAt), authd.ParseAMR(s.amr)
	s.s.ClientID, s.s.BrowserDigest = value(s.client), value(s.browser)
	s.s.SignedInWith = authd.SignInFactor{Method: value(s.factor), PasskeyID: value(s.passkey)}
	s.s.Scopes = authd.ParseScopes(value(s.scopes))
	return &s.s
}

func scanSession(row pgx.Row) (*authd.Session, error) {
	var s sessionScan
	if err := row.Scan(s.dest()...); err != nil {
		return nil, translate(err)
	}
	return s.session(), nil
}

const tokenColumns = `id, jti, user_id, session_id, parent_id, token_type, token_value,
	issued_at, expires_at, revoked, revoked_at, rotated_at, device_info, created_at`

func (q *queries) CreateToken(ctx context.Context, tokens ...*authd.Token) error {
	var values []string
	var args []any
	for _, t := range tokens {
		n := len(args)
		values = append(values, fmt.Sprintf("($%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d)",
			n+1, n+2, n+3, n+4, n+5, n+6, n+7, n+8, n+9, n+10, n+11, n+12, n+13, n+14))
		args = append(args, t.ID, t.JTI, t.UserID, t.SessionID, nullUUID(t.ParentID), string(t.TokenType),
			nullString(t.TokenValue), t.IssuedAt, t.ExpiresAt, t.Revoked, nullTime(t.RevokedAt), nullTime(t.RotatedAt),
			nullString(t.DeviceInfo), t.CreatedAt)
	}
	if len(values) == 0 {
		return nil
	}
	return q.write(ctx, nil, `INSERT INTO jwt_tokens (`+tokenColumns+`) VALUES `+strings.Join(values, ", "), args...)
}

func (q *queries) TokenByJTI(ctx context.Context, jti string) (*authd.Token, error) {
	return scanToken(q.row(ctx, `SELECT `+tokenColumns+` FROM jwt_tokens WHERE jti = $1`, jti))
}

func (q *queries) RefreshToken(ctx context.Context, digest string) (*authd.Token, error) {
	return scanToken(q.row(ctx, `SELECT `+tokenColumns+` FROM jwt_tokens
		WHERE token_value = $1 AND token_type = 'refresh'`+q.forUpdate(), digest))
}

// tokenScan receives a jwt_tokens row.
type tokenScan struct {
	t                    authd.Token
	typ                  string
	parent               *uuid.UUID
	digest, device       *string
	revokedAt, rotatedAt *time.Time
}

func (s *tokenScan) dest() []any {
	t := &s.t
	return []any{&t.ID, &t.JTI, &t.UserID, &t.SessionID, &s.parent, &s.typ, &s.digest,
		&t.IssuedAt, &t.ExpiresAt, &t.Revoked, &s.revokedAt, &s.rotatedAt, &s.device, &t.CreatedAt}
}

func (s *tokenScan) token() (*authd.Token, error) {
	var err error
	if s.t.TokenType, err = authd.ParseTokenType(s.typ); err != nil {
		return nil, fmt.Errorf("postgres: token %s: %w", s.t.ID, err)
	}
	s.t.ParentID, s.t.TokenValue, s.t.DeviceInfo = value(s.parent), value(s.digest), value(s.device)
	s.t.RevokedAt, s.t.RotatedAt = value(s.revokedAt), value(s.rotatedAt)
	return &s.t, nil
}

func scanToken(row pgx.Row) (*authd.Token, error) {
	var s tokenScan
	if err := row.Scan(s.dest()...); err != nil {
		return nil, translate(err)
	}
	return s.token()
}

// qualify prefixes each column of a column list with a table alias.
func qualify(alias, columns string) string {
	parts := strings.Split(columns, ",")
	for i, p := range parts {
		parts[i] = alias + "." + strings.TrimSpace(p)
	}
	return strings.Join(parts, ", ")
}

// refreshSessionQuery is RefreshSession's read, built once: every refresh
// runs it.
var refreshSessionQuery = `SELECT ` + qualify("t", tokenColumns) + `, ` + qualify("s", sessionColumns) + `, ` +
	qualify("u", userColumns) + `
	FROM jwt_tokens t JOIN sessions s ON s.id = t.session_id JOIN users u ON u.id = t.user_id
	WHERE t.token_value = $1 AND t.token_type = 'refresh'`

// refreshSessionLockingQuery share-locks the user, then locks the session
// and the token: the order of the flows that change a user and then end
// their sessions (a lock, an erasure, a password change, a login evicting
// a session) and of a logout (session, then its tokens), so a refresh
// waits for them instead of deadlocking with them
// (TestRefreshReadWaitsForOtherFlows). The share lock lets the sessions of
// one user rotate side by side, and makes the user read the one that a
// writer it waited for left.
var refreshSessionLockingQuery = refreshSessionQuery + " FOR SHARE OF u FOR UPDATE OF s, t"

// RefreshSession reads a refresh token with its session and user in one
// round trip; inside a transaction it locks them (see
// refreshSessionLockingQuery).
func (q *queries) RefreshSession(ctx context.Context, digest string) (*authd.Token, *authd.Session, *authd.User, error) {
	query := refreshSessionQuery
	if q.locking {
		query = refreshSessionLockingQuery
	}
	var ts tokenScan
	var ss sessionScan
	var us userScan
	dest := append(append(ts.dest(), ss.dest()...), us.dest()...)
	err := q.row(ctx, query, digest).Scan(dest...)
	if err != nil {
		return nil, nil, nil, translate(err)
	}
	t, err := ts.token()
	if err != nil {
		return nil, nil, nil, err
	}
	u, err := us.user()
	if err != nil {
		return nil, nil, nil, err
	}
	return t, ss.session(), u, nil
}

// SaveRotation writes the token's revocation fields and the session's
// last use and revocation in one statement.
// The server checks that both rows changed (authd_expect_rows), as for
// every checked write.
func (q *queries) SaveRotation(ctx context.Context, t *authd.Token, s *authd.Session) error {
	return q.write(ctx, nil, `WITH token AS (
			UPDATE jwt_tokens SET revoked = $2, revoked_at = $3, rotated_at = $4 WHERE id = $1 RETURNING id),
		session AS (
			UPDATE sessions SET last_used_at = $6, revoked_at = $7 WHERE id = $5 AND EXISTS (SELECT 1 FROM token) RETURNING 1)
		SELECT authd_expect_rows(count(*), 1, 'token or session') FROM session`,
		t.ID, t.Revoked, nullTime(t.RevokedAt), nullTime(t.RotatedAt), s.ID, s.LastUsedAt, nullTime(s.RevokedAt))
}

const verificationColumns = `id, token, user_id, token_type, created_at, expires_at, used, used_at, new_email, attempts,
	attempted_at`

func (q *queries) CreateVerificationToken(ctx context.Context, v *authd.VerificationToken) error {
	return q.write(ctx, nil, `INSERT INTO verification_tokens (`+verificationColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		v.ID, v.Token, v.UserID, string(v.TokenType), v.CreatedAt, v.ExpiresAt, v.Used, nullTime(v.UsedAt),
		nullString(v.NewEmail), v.Attempts, nullTime(v.AttemptedAt))
}

// VerificationToken implements authd.Queries: see ownedRow for the locks.
func (q *queries) VerificationToken(ctx context.Context, digest string) (*authd.VerificationToken, error) {
	return scanVerification(q.ownedRow(ctx, "verification_tokens", "token", verificationColumns, digest))
}

func scanVerification(row pgx.Row) (*authd.VerificationToken, error) {
	var v authd.VerificationToken
	var typ string
	var usedAt, attemptedAt *time.Time
	var newEmail *string
	err := row.Scan(&v.ID, &v.Token, &v.UserID, &typ, &v.CreatedAt, &v.ExpiresAt, &v.Used, &usedAt, &newEmail,
		&v.Attempts, &attemptedAt)
	if err != nil {
		return nil, translate(err)
	}
	if v.TokenType, err = authd.ParseVerificationType(typ); err != nil {
		return nil, fmt.Errorf("postgres: verification token %s: %w", v.ID, err)
	}
	v.UsedAt, v.NewEmail, v.AttemptedAt = value(usedAt), value(newEmail), value(attemptedAt)
	return &v, nil
}

const securityLogColumns = `id, event_type, user_id, "timestamp", ip_address, user_agent, result,
	failure_reason, additional_context`

// userLogQuery writes a security-log row about a user, keeping no client
// (IP address, user agent, device) when the user is erased: the erasure
// clears the rows it finds, and a flow that read the user before it
// committed must not add one after (SPEC 6.8). The key-share lock, which
// the row's foreign key takes anyway, waits for an erasure in progress and
// then reads the user as it left it.
const userLogQuery = `INSERT INTO security_logs (` + securityLogColumns + `)
	SELECT $1, $2::event_type, u.id, $4,
		CASE WHEN u.account_status = 'deleted' THEN NULL ELSE $5::varchar END,
		CASE WHEN u.account_status = 'deleted' THEN NULL ELSE $6::varchar END,
		$7::event_result, $8,
		CASE WHEN u.account_status = 'deleted' THEN $9::jsonb - 'device_info' ELSE $9::jsonb END
	FROM users u WHERE u.id = $3 FOR KEY SHARE`

// CreateSecurityLog implements authd.Queries: see userLogQuery.
func (q *queries) CreateSecurityLog(ctx context.Context, l *authd.SecurityLog) error {
	args := []any{l.ID, string(l.EventType), nullUUID(l.UserID), l.Timestamp, nullString(l.IPAddress),
		nullString(l.UserAgent), string(l.Result), nullString(l.FailureReason), l.AdditionalContext}
	if l.UserID == uuid.Nil {
		return q.write(ctx, nil, `INSERT INTO security_logs (`+securityLogColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, args...)
	}
	return q.write(ctx, mustAffect("user"), userLogQuery, args...)
}

// SecurityLogs implements authd.Queries. A filter by event can read
// ix_security_logs_event_type, which holds the time and the id after the
// event, a page in order (migration 27); the planner weighs that against a
// bitmap read and sort of the matches and against walking
// ix_security_logs_timestamp back, by their costs.
func (q *queries) SecurityLogs(ctx context.Context, f authd.SecurityLogFilter) ([]*authd.SecurityLog, error) {
	sql, args := securityLogsQuery(f)
	rows, err := q.rows(ctx, sql, args...)
	if err != nil {
		return nil, translate(err)
	}
	return collectSecurityLogs(rows)
}

// securityLogsQuery is SecurityLogs' statement for f, and its arguments.
func securityLogsQuery(f authd.SecurityLogFilter) (string, []any) {
	var where []string
	var args []any
	arg := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if f.UserID != uuid.Nil {
		arg("user_id = $%d", f.UserID)
	}
	if f.EventType != "" {
		arg("event_type = $%d", string(f.EventType))
	}
	if f.Result != "" {
		arg("result = $%d", string(f.Result))
	}
	if !f.Since.IsZero() {
		arg(`"timestamp" >= $%d`, f.Since)
	}
	if !f.Until.IsZero() {
		arg(`"timestamp" < $%d`, f.Until)
	}
	if f.After != nil {
		args = append(args, f.After.Time, f.After.ID)
		where = append(where, fmt.Sprintf(`("timestamp", id) < ($%d, $%d)`, len(args)-1, len(args)))
	}
	sql := `SELECT ` + securityLogColumns + ` FROM security_logs`
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, listLimit(f.Limit))
	sql += fmt.Sprintf(` ORDER BY "timestamp" DESC, id DESC LIMIT $%d`, len(args))
	return fmt.Sprintf(pendingErasuresHidden, sql), args
}

// pendingErasuresHidden wraps a page of security-log rows (%s, in order):
// the rows about an account whose erasure is pending are shown without
// their client, as FinishErasure will leave them, not for up to an hour
// until the next retention run finishes a large one. On the page's rows
// alone, after its limit, and in its order: the page's plan is unchanged
// and needs no sort (a join, hashed, lost the order).
const pendingErasuresHidden = `SELECT l.id, l.event_type, l.user_id, l."timestamp",
	CASE WHEN NOT e.pending THEN l.ip_address END, CASE WHEN NOT e.pending THEN l.user_agent END,
	l.result, l.failure_reason,
	CASE WHEN e.pending THEN l.additional_context - 'device_info' ELSE l.additional_context END
	FROM (%s) l, LATERAL (SELECT EXISTS (SELECT 1 FROM erasures_pending p WHERE p.user_id = l.user_id) AS pending) e
	ORDER BY l."timestamp" DESC, l.id DESC`

func collectSecurityLogs(rows pgx.Rows) ([]*authd.SecurityLog, error) {
	defer rows.Close()
	var out []*authd.SecurityLog
	for rows.Next() {
		l, err := scanSecurityLog(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, translate(rows.Err())
}

// listLimit bounds a page size to (0, MaxListLimit+1]: the service asks
// for one row more than it shows, to know whether there is a next page.
func listLimit(n int) int {
	if n <= 0 {
		return authd.DefaultListLimit
	}
	return min(n, authd.MaxListLimit+1)
}

// value returns *p, or the zero value (which the domain reads as NULL) for nil.
func value[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nullUUID(id uuid.UUID) *uuid.UUID {
	if id == uuid.Nil {
		return nil
	}
	return &id
}

func (q *queries) UpdateSession(ctx context.Context, s *authd.Session) error {
	return q.write(ctx, mustAffect("session"), `UPDATE sessions SET last_used_at = $2, revoked_at = $3 WHERE id = $1`,
		s.ID, s.LastUsedAt, nullTime(s.RevokedAt))
}

func (q *queries) Sessions(ctx context.Context, userID uuid.UUID, now time.Time) ([]*authd.Session, error) {
	rows, err := q.rows(ctx, `SELECT `+sessionColumns+` FROM sessions
		WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2
		ORDER BY created_at DESC, id DESC`, userID, now)
	if err != nil {
		return nil, translate(err)
	}
	defer rows.Close()
	var out []*authd.Session
	for rows.Next() {
		var s sessionScan
		if err := rows.Scan(s.dest()...); err != nil {
			return nil, translate(err)
		}
		out = append(out, s.session())
	}
	return out, translate(rows.Err())
}

func (q *queries) RevokeSession(ctx context.Context, id uuid.UUID, at time.Time) error {
	tag, err := q.exec(ctx, `UPDATE sessions SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1`, id, at)
	if err := affected(tag, err, "session"); err != nil {
		return err
	}
	_, err = q.exec(ctx, `UPDATE jwt_tokens SET revoked = true, revoked_at = $2
		WHERE session_id = $1 AND NOT revoked`, id, at)
	return translate(err)
}

func (q *queries) RevokeUserSessions(ctx context.Context, userID, except uuid.UUID, at time.Time) ([]uuid.UUID, error) {
	return q.revokeSessions(ctx, at, `UPDATE sessions SET revoked_at = $1
		WHERE user_id = $2 AND id <> $3 AND revoked_at IS NULL AND expires_at > $1
		RETURNING id`, at, userID, except)
}

func (q *queries) RevokeSessionsSignedInWith(ctx context.Context, userID uuid.UUID, f authd.SignInFactor, except uuid.UUID,
	at time.Time) ([]uuid.UUID, error) {
	return q.revokeSessions(ctx, at, `UPDATE sessions SET revoked_at = $1
		WHERE user_id = $2 AND id <> $3 AND revoked_at IS NULL AND expires_at > $1
			AND signin_factor = $4 AND signin_passkey_id IS NOT DISTINCT FROM $5
		RETURNING id`, at, userID, except, nullString(f.Method), nullUUID(f.PasskeyID))
}

// excessSessions reads SignInState's Excess (ix_sessions_user_id_live).
// The rows are chosen in a subquery so that only they are locked: FOR UPDATE
// on the ordered read itself would lock the kept sessions too, which
// OFFSET skips after locking them, and a logout of one of them would then
// wait for the login, and the login's eviction for it.
func (q *queries) excessSessions(userID uuid.UUID, keep int, now time.Time) statement {
	return statement{`SELECT id FROM sessions WHERE id IN (
			SELECT id FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2
			ORDER BY last_used_at DESC, id DESC OFFSET $3)
		AND revoked_at IS NULL ORDER BY last_used_at DESC, id DESC` + q.forUpdate(), []any{userID, now, keep}}
}

// RevokeSessions implements authd.Queries: two writes, queued in a
// transaction.
func (q *queries) RevokeSessions(ctx context.Context, ids []uuid.UUID, at time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	endAll := &changes{what: "unrevoked session", atLeast: int64(len(ids))}
	if err := q.write(ctx, endAll, `UPDATE sessions SET revoked_at = $2 WHERE id = ANY($1) AND revoked_at IS NULL`,
		ids, at); err != nil {
		return err
	}
	return q.write(ctx, nil, `UPDATE jwt_tokens SET revoked = true, revoked_at = $2
		WHERE session_id = ANY($1) AND NOT revoked`, ids, at)
}

// SignInState implements authd.Queries: the four reads travel in one
// round trip, with the writes queued before them (the BEGIN). The user's
// row is locked as User locks it (userLock).
func (q *queries) SignInState(ctx context.Context, userID uuid.UUID, keep int, now time.Time) (*authd.SignInState, error) {
	reads := []statement{q.user(userID), q.factors(userID), q.passkeys(userID)}
	if keep >= 0 {
		reads = append(reads, q.excessSessions(userID, keep, now))
	}
	var st authd.SignInState
	var readErr error
	err := q.send(ctx, func(br pgx.BatchResults) {
		if st.User, readErr = scanUser(br.QueryRow()); readErr != nil {
			return
		}
		if st.Factors, readErr = collect(br, rowTo(scanFactor)); readErr != nil {
			return
		}
		if st.Passkeys, readErr = collect(br, rowTo(scanPasskey)); readErr != nil || keep < 0 {
			return
		}
		st.Excess, readErr = collect(br, pgx.RowTo[uuid.UUID])
	}, reads...)
	if err != nil {
		return nil, err
	}
	if readErr != nil {
		return nil, readErr
	}
	return &st, nil
}

// collect reads the next result of br as rows, each by scan.
func collect[T any](br pgx.BatchResults, scan pgx.RowToFunc[T]) ([]T, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, translate(err)
	}
	out, err := pgx.CollectRows(rows, scan)
	return out, translate(err)
}

// revokeSessions runs update, which revokes sessions at at and returns their
// ids, and revokes those sessions' tokens.
func (q *queries) revokeSessions(ctx context.Context, at time.Time, update string, args ...any) ([]uuid.UUID, error) {
	rows, err := q.rows(ctx, update, args...)
	if err != nil {
		return nil, translate(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil || len(ids) == 0 {
		return ids, translate(err)
	}
	_, err = q.exec(ctx, `UPDATE jwt_tokens SET revoked = true, revoked_at = $2
		WHERE session_id = ANY($1) AND NOT revoked`, ids, at)
	return ids, translate(err)
}

func (q *queries) UseVerificationToken(ctx context.Context, v *authd.VerificationToken) error {
	return q.write(ctx, mustAffect("verification token"), `UPDATE verification_tokens SET used = $2, used_at = $3 WHERE id = $1`,
		v.ID, v.Used, nullTime(v.UsedAt))
}

func (q *queries) SetVerificationAttempts(ctx context.Context, v *authd.VerificationToken) error {
	return q.write(ctx, mustAffect("verification token"), `UPDATE verification_tokens SET attempts = $2, attempted_at = $3 WHERE id = $1`,
		v.ID, v.Attempts, nullTime(v.AttemptedAt))
}

func (q *queries) DeleteVerificationTokens(ctx context.Context, userID uuid.UUID, typ authd.VerificationType) error {
	return q.write(ctx, nil, `DELETE FROM verification_tokens
		WHERE user_id = $1 AND token_type = $2 AND new_email IS NULL AND NOT used`,
		userID, string(typ))
}

func (q *queries) DeleteEmailChanges(ctx context.Context, userID uuid.UUID) error {
	return q.write(ctx, nil, `DELETE FROM verification_tokens
		WHERE user_id = $1 AND token_type = 'email_verification' AND new_email IS NOT NULL AND NOT used`, userID)
}

func (q *queries) EmailChangePending(ctx context.Context, userID uuid.UUID, now time.Time) (bool, error) {
	var pending bool
	err := q.row(ctx, `SELECT EXISTS (SELECT 1 FROM verification_tokens
			WHERE user_id = $1 AND token_type = 'email_verification' AND new_email IS NOT NULL AND NOT used
			AND expires_at > $2)
		OR EXISTS (SELECT 1 FROM mail_outbox WHERE user_id = $1 AND kind = 'email_change')`, userID, now).Scan(&pending)
	return pending, translate(err)
}

// errPublishOutsideTx is PublishRevocation called on the store, not in
// InTx.
var errPublishOutsideTx = &authd.Error{Code: authd.EInternal,
	Message: "postgres: PublishRevocation must run in a transaction (InTx), which orders the feed's event ids"}

// revocationChannel is the NOTIFY channel revocations travel on.
const revocationChannel = "authd_revocations"

// maxNotifySessions keeps a NOTIFY payload well under PostgreSQL's 8000 bytes.
const maxNotifySessions = 100

// PublishRevocation sends rev on revocationChannel; PostgreSQL delivers it
// to every listener when the transaction commits, and never if it rolls back.
//
// Its feed events are inserted just before the transaction commits
// (insertRevocationEvents). Outside a transaction it is an error: the
// advisory lock that makes event ids commit in order lasts a transaction,
// and a revocation must commit with the change it announces.
func (q *queries) PublishRevocation(ctx context.Context, rev authd.Revocation) error {
	if !q.locking {
		return errPublishOutsideTx
	}
	q.revocations = append(q.revocations, rev)
	for {
		part := rev
		if len(rev.SessionIDs) > maxNotifySessions {
			part.SessionIDs = rev.SessionIDs[:maxNotifySessions]
		}
		payload, err := json.Marshal(part)
		if err != nil {
			return err
		}
		if err := q.write(ctx, nil, `SELECT pg_notify($1, $2)`, revocationChannel, string(payload)); err != nil {
			return err
		}
		if len(rev.SessionIDs) <= maxNotifySessions {
			return nil
		}
		rev.SessionIDs = rev.SessionIDs[maxNotifySessions:]
	}
}

func affected(tag pgconn.CommandTag, err error, what string) error {
	if err != nil {
		return translate(err)
	}
	if tag.RowsAffected() == 0 {
		return authd.Errorf(authd.ENotFound, "%s not found", what)
	}
	return nil
}

// rowTo adapts a row scanner to pgx.CollectRows.
func rowTo[T any](scan func(pgx.Row) (T, error)) pgx.RowToFunc[T] {
	return func(row pgx.CollectableRow) (T, error) { return scan(row) }
}
