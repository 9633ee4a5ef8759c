package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/authd/authd"
	"github.com/google/uuid"
)

// BcryptCosts implements authd.Store (a scan of users, made once at start).
func (s *Store) BcryptCosts(ctx context.Context) ([]int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT DISTINCT CAST(substr(password_hash, 5, 2) AS INTEGER) FROM users
		WHERE password_hash GLOB '$2[aby]$[0-9][0-9]$*'`)
	if err != nil {
		return nil, translate(err)
	}
	return collect(rows, scanInt)
}

// Argon2Costs implements authd.Store (a scan of users, made once at start).
func (s *Store) Argon2Costs(ctx context.Context) ([]string, error) {
	// After the 15 bytes of "$argon2id$v=19$", up to the next "$".
	rows, err := s.db.QueryContext(ctx, `SELECT DISTINCT substr(password_hash, 16, instr(substr(password_hash, 16), '$') - 1)
		FROM users WHERE password_hash GLOB '$argon2id$v=19$*$*'`)
	if err != nil {
		return nil, translate(err)
	}
	return collect(rows, scanString)
}

// KeyedRows implements authd.Store (made once at start).
func (s *Store) KeyedRows(ctx context.Context) (authd.KeyedRows, error) {
	var k authd.KeyedRows
	err := s.db.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM oauth_clients WHERE secret_digest IS NOT NULL),
		EXISTS (SELECT 1 FROM mfa_factors) OR EXISTS (SELECT 1 FROM mfa_recovery_codes)`).Scan(&k.ConfidentialClients, &k.MFA)
	if err != nil {
		return k, translate(err)
	}
	k.Checks, err = s.KeyChecks(ctx)
	return k, err
}

// KeyChecks implements authd.Store.
func (s *Store) KeyChecks(ctx context.Context) (map[string]authd.KeyCheck, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, check_value, recorded_at FROM key_checks`)
	if err != nil {
		return nil, translate(err)
	}
	checks, err := collect(rows, scanKeyCheck)
	return authd.KeyChecksByName(checks), err
}

// RecordKeyChecks implements authd.Store: one INSERT, atomic as any
// statement.
func (s *Store) RecordKeyChecks(ctx context.Context, checks []authd.KeyCheck) (map[string]authd.KeyCheck, error) {
	if len(checks) == 0 {
		return map[string]authd.KeyCheck{}, nil
	}
	var args []any
	for _, c := range checks {
		args = append(args, c.Name, c.Value, timeArg(c.RecordedAt))
	}
	values := strings.TrimSuffix(strings.Repeat("(?, ?, ?), ", len(checks)), ", ")
	if _, err := s.queries.db.ExecContext(ctx, `INSERT INTO key_checks (name, check_value, recorded_at) VALUES `+values+`
		ON CONFLICT (name) DO NOTHING`, args...); err != nil {
		return nil, translate(err)
	}
	recorded, err := s.KeyChecks(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]authd.KeyCheck{}
	for _, c := range checks {
		if r, ok := recorded[c.Name]; ok {
			out[c.Name] = r
		}
	}
	return out, nil
}

// ReplaceKeyCheck implements authd.Store.
func (s *Store) ReplaceKeyCheck(ctx context.Context, c authd.KeyCheck, old string) (authd.KeyCheck, error) {
	var err error
	if old == "" {
		_, err = s.queries.db.ExecContext(ctx, `INSERT INTO key_checks (name, check_value, recorded_at) VALUES (?, ?, ?)
			ON CONFLICT (name) DO NOTHING`, c.Name, c.Value, timeArg(c.RecordedAt))
	} else {
		_, err = s.queries.db.ExecContext(ctx, `UPDATE key_checks SET check_value = ?, recorded_at = ? WHERE name = ? AND check_value = ?`,
			c.Value, timeArg(c.RecordedAt), c.Name, old)
	}
	if err != nil {
		return authd.KeyCheck{}, translate(err)
	}
	return scanKeyCheck(s.db.QueryRowContext(ctx, `SELECT name, check_value, recorded_at FROM key_checks WHERE name = ?`, c.Name))
}

func scanKeyCheck(row scanner) (c authd.KeyCheck, err error) {
	return c, translate(row.Scan(&c.Name, &c.Value, timeCol{&c.RecordedAt}))
}

// ExpiredLocks implements authd.Store (index ix_users_account_status).
func (s *Store) ExpiredLocks(ctx context.Context, now time.Time, limit int) ([]uuid.UUID, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM users
		WHERE account_status = 'locked' AND account_locked_until <= ? ORDER BY account_locked_until LIMIT ?`, timeArg(now), limit)
	if err != nil {
		return nil, translate(err)
	}
	return collect(rows, scanID)
}

// Users implements authd.Store.
func (s *Store) Users(ctx context.Context, f authd.UserFilter) ([]*authd.User, error) {
	return s.queries.users(ctx, f)
}

// users is Users on q (a read: it runs at once, outside the lane). By
// status, a page is read in order from ix_users_account_status (migration
// 30: status, created_at, id).
func (q *queries) users(ctx context.Context, f authd.UserFilter) ([]*authd.User, error) {
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
	rows, err := q.db.QueryContext(ctx, query, args...)
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

// UserData implements authd.Store in one read-only transaction: in WAL
// mode its first read fixes the snapshot that every later one sees. Each
// table is one query whose rows are handed on as SQLite steps to them.
func (s *Store) UserData(ctx context.Context, userID uuid.UUID, out authd.UserRows) error {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return translate(err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only
	u, err := (&queries{db: tx}).User(ctx, userID)
	if err != nil {
		return err
	}
	if out.User != nil {
		if err := out.User(u); err != nil {
			return err
		}
	}
	if err := each(ctx, tx, out.ConsentLogs, scanSecurityLog, `SELECT `+securityLogColumns+` FROM security_logs
		WHERE user_id = ? AND (event_type = 'consent_updated' OR (event_type = 'registration' AND result = 'success'))
		ORDER BY "timestamp", id`, userID); err != nil {
		return err
	}
	if err := each(ctx, tx, out.Sessions, scanSession,
		`SELECT `+sessionColumns+` FROM sessions WHERE user_id = ? ORDER BY created_at, id`, userID); err != nil {
		return err
	}
	if err := each(ctx, tx, out.Tokens, scanToken,
		`SELECT `+tokenColumns+` FROM jwt_tokens WHERE user_id = ? ORDER BY issued_at, id`, userID); err != nil {
		return err
	}
	if err := each(ctx, tx, out.VerificationTokens, scanVerification,
		`SELECT `+verificationColumns+` FROM verification_tokens WHERE user_id = ? ORDER BY created_at, id`, userID); err != nil {
		return err
	}
	if err := each(ctx, tx, out.SecurityLogs, scanSecurityLog,
		`SELECT `+securityLogColumns+` FROM security_logs WHERE user_id = ? ORDER BY "timestamp", id`, userID); err != nil {
		return err
	}
	if err := each(ctx, tx, out.Mails, scanMail,
		`SELECT `+outboxColumns+` FROM mail_outbox WHERE user_id = ? ORDER BY created_at, id`, userID); err != nil {
		return err
	}
	if err := each(ctx, tx, out.Factors, scanFactor,
		`SELECT `+factorColumns+` FROM mfa_factors WHERE user_id = ? ORDER BY created_at, id`, userID); err != nil {
		return err
	}
	if err := each(ctx, tx, out.RecoveryCodes, scanRecoveryCode,
		`SELECT `+recoveryCodeColumns+` FROM mfa_recovery_codes WHERE user_id = ? ORDER BY created_at, id`, userID); err != nil {
		return err
	}
	if err := each(ctx, tx, out.MFAChallenges, scanChallenge,
		`SELECT `+challengeColumns+` FROM mfa_challenges WHERE user_id = ? ORDER BY created_at, id`, userID); err != nil {
		return err
	}
	if err := each(ctx, tx, out.Passkeys, scanPasskey,
		`SELECT `+passkeyColumns+` FROM passkeys WHERE user_id = ? ORDER BY created_at, id`, userID); err != nil {
		return err
	}
	if err := each(ctx, tx, out.WebAuthnChallenges, scanWebAuthnChallenge,
		`SELECT `+webauthnChallengeColumns+` FROM webauthn_challenges WHERE user_id = ? ORDER BY created_at, id`, userID); err != nil {
		return err
	}
	if err := each(ctx, tx, out.Consents, scanConsent,
		`SELECT `+consentColumns+` FROM oauth_consents WHERE user_id = ? ORDER BY granted_at, id`, userID); err != nil {
		return err
	}
	if err := each(ctx, tx, out.AuthCodes, scanAuthCode,
		`SELECT `+authCodeColumns+` FROM oauth_codes WHERE user_id = ? ORDER BY created_at, id`, userID); err != nil {
		return err
	}
	return each(ctx, tx, out.RevocationEvents, scanRevocationEvent,
		`SELECT id, kind, subject_id, reason, expires_at, created_at FROM revocation_events
		WHERE subject_id = ?1 OR subject_id IN (SELECT id FROM sessions WHERE user_id = ?1) ORDER BY id`, userID)
}

func scanRevocationEvent(row scanner) (*authd.RevocationEvent, error) {
	var e authd.RevocationEvent
	if err := row.Scan(&e.ID, &e.Kind, &e.Subject, &e.Reason, timeCol{&e.ExpiresAt}, timeCol{&e.CreatedAt}); err != nil {
		return nil, translate(err)
	}
	return &e, nil
}

// each hands yield every row of one query, scanned, as it is stepped to,
// and returns yield's error unchanged; a nil yield skips the query.
func each[T any](ctx context.Context, tx *sql.Tx, yield func(T) error, scan func(scanner) (T, error),
	query string, args ...any) error {
	if yield == nil {
		return nil
	}
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return translate(err)
	}
	defer rows.Close()
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return err
		}
		if err := yield(v); err != nil {
			return err
		}
	}
	return translate(rows.Err())
}

// scanSession reads one sessions row of sessionColumns.
func scanSession(row scanner) (*authd.Session, error) {
	var s authd.Session
	var device, client, scopes, browser, factor sql.NullString
	var passkey uuid.NullUUID
	var amr string
	if err := row.Scan(&s.ID, &s.UserID, &device, timeCol{&s.CreatedAt}, timeCol{&s.LastUsedAt},
		timeCol{&s.ExpiresAt}, timeCol{&s.RevokedAt}, &amr, &client, &scopes, &browser, &factor, &passkey); err != nil {
		return nil, translate(err)
	}
	s.DeviceInfo, s.AMR, s.ClientID, s.BrowserDigest = device.String, authd.ParseAMR(amr), client.String, browser.String
	s.SignedInWith = authd.SignInFactor{Method: factor.String, PasskeyID: passkey.UUID}
	s.Scopes = authd.ParseScopes(scopes.String)
	return &s, nil
}

// scanSecurityLog reads one security_logs row of securityLogColumns.
func scanSecurityLog(row scanner) (*authd.SecurityLog, error) {
	var l authd.SecurityLog
	var event, result string
	var user uuid.NullUUID
	var ip, ua, reason, context sql.NullString
	if err := row.Scan(&l.ID, &event, &user, timeCol{&l.Timestamp}, &ip, &ua, &result, &reason, &context); err != nil {
		return nil, translate(err)
	}
	var err error
	if l.EventType, err = authd.ParseEventType(event); err != nil {
		return nil, fmt.Errorf("sqlite: security log %s: %w", l.ID, err)
	}
	if l.Result, err = authd.ParseResult(result); err != nil {
		return nil, fmt.Errorf("sqlite: security log %s: %w", l.ID, err)
	}
	if context.Valid {
		if err := json.Unmarshal([]byte(context.String), &l.AdditionalContext); err != nil {
			return nil, fmt.Errorf("sqlite: security log %s context: %w", l.ID, err)
		}
	}
	l.UserID, l.IPAddress, l.UserAgent, l.FailureReason = user.UUID, ip.String, ua.String, reason.String
	return &l, nil
}

// ErasePersonalData implements authd.Queries.
func (q *queries) ErasePersonalData(ctx context.Context, userID uuid.UUID) error {
	for _, query := range []string{
		`DELETE FROM verification_tokens WHERE user_id = ?`,
		`DELETE FROM mail_outbox WHERE user_id = ?`,
		`DELETE FROM mfa_factors WHERE user_id = ?`,
		`DELETE FROM mfa_recovery_codes WHERE user_id = ?`,
		`DELETE FROM mfa_challenges WHERE user_id = ?`,
		`DELETE FROM passkeys WHERE user_id = ?`,
		`DELETE FROM webauthn_challenges WHERE user_id = ?`,
		`DELETE FROM oauth_consents WHERE user_id = ?`,
		`DELETE FROM oauth_codes WHERE user_id = ?`,
		// The security-log rows are FinishErasure's, after the commit.
		`INSERT OR IGNORE INTO erasures_pending (user_id) VALUES (?)`,
		`UPDATE sessions SET device_info = NULL WHERE user_id = ?`,
		`UPDATE jwt_tokens SET device_info = NULL WHERE user_id = ?`,
	} {
		if _, err := q.db.ExecContext(ctx, query, userID); err != nil {
			return translate(err)
		}
	}
	return nil
}

// FinishErasure implements authd.Store. Clearing an account's
// security-log rows in the erasure's transaction held the one writer for
// all of them: a probe saw every other write wait 3.6 s behind an account
// of 80,000 rows and 8.6 s behind one of 542,000 (past laneWait, 503s).
// The transaction named the account in erasures_pending instead; here its
// rows are taken in the order of ix_security_logs_user_id, ("timestamp",
// id), erasureBatch at a time: the batch's last key is read outside the
// lane, then the batch's rows still holding a client are cleared by key
// range in one short write, and the writes queued meanwhile go before the
// next. Rows logged since the commit keep no client (CreateSecurityLog),
// so the last batch, unbounded, ends the account's rows; then its
// erasures_pending row goes. Each step may be repeated: one cut short is
// run again from the start by the next Purge.
func (s *Store) FinishErasure(ctx context.Context, userID uuid.UUID) error {
	at, id := "", "" // before every row
	for {
		var lastAt, lastID string
		// As stored: the driver would read a TIMESTAMP column's text as a
		// time, and a whole second's would come back shorter ("…:01Z", not
		// "…:01.000000Z"), after every row of that second.
		err := s.db.QueryRowContext(ctx, `SELECT CAST("timestamp" AS TEXT), id FROM security_logs
			WHERE user_id = ?1 AND ("timestamp", id) > (?2, ?3) ORDER BY "timestamp", id LIMIT 1 OFFSET ?4`,
			userID, at, id, erasureBatch-1).Scan(&lastAt, &lastID)
		if errors.Is(err, sql.ErrNoRows) {
			break
		}
		if err != nil {
			return translate(err)
		}
		if _, err := s.queries.db.ExecContext(ctx, clearErasedLogs+` AND ("timestamp", id) <= (?4, ?5)`,
			userID, at, id, lastAt, lastID); err != nil {
			return translate(err)
		}
		at, id = lastAt, lastID
	}
	if _, err := s.queries.db.ExecContext(ctx, clearErasedLogs, userID, at, id); err != nil {
		return translate(err)
	}
	_, err := s.queries.db.ExecContext(ctx, `DELETE FROM erasures_pending WHERE user_id = ?`, userID)
	return translate(err)
}

// clearErasedLogs clears the client from the rows of user ?1 after the key
// (?2, ?3) that hold one.
const clearErasedLogs = `UPDATE security_logs SET ip_address = NULL, user_agent = NULL,
	additional_context = json_remove(additional_context, '$.device_info')
	WHERE user_id = ?1 AND ("timestamp", id) > (?2, ?3)
		AND (ip_address IS NOT NULL OR user_agent IS NOT NULL OR additional_context -> '$.device_info' IS NOT NULL)`

// erasureBatch bounds the security-log rows one write of FinishErasure
// clears: BenchmarkFinishErasure, 100,000 rows among 100,000, held the
// lane 5.2 ms a batch, 85,000 rows a second in all.
const erasureBatch = 500

// finishErasures runs FinishErasure for every account erasures_pending
// names: erasures a crash, a stop or their time budget cut short. One that
// fails stops no other: it returns their errors joined.
func (s *Store) finishErasures(ctx context.Context) error {
	rows, err := s.db.QueryContext(ctx, `SELECT user_id FROM erasures_pending`)
	if err != nil {
		return translate(err)
	}
	ids, err := collect(rows, func(row scanner) (uuid.UUID, error) {
		var id uuid.UUID
		return id, translate(row.Scan(&id))
	})
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range ids {
		if err := s.FinishErasure(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("finishing the erasure of %s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

// erasedAccountGone, closed with ")" (sessionPurgedDry in a dry run), picks
// the tombstones retention deletes (as PostgreSQL's).
const erasedAccountGone = `account_status = 'deleted' AND updated_at < ?1
	AND NOT EXISTS (SELECT 1 FROM security_logs l WHERE l.user_id = users.id AND l."timestamp" >= ?1)
	AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.user_id = users.id
		AND s.expires_at >= ?1 AND (s.revoked_at IS NULL OR s.revoked_at >= ?1)`

// erasureFinished follows erasedAccountGone's ")" in a purge (as
// PostgreSQL's): an account whose erasure is pending keeps its tombstone.
const erasureFinished = ` AND NOT EXISTS (SELECT 1 FROM erasures_pending p WHERE p.user_id = users.id)`

// sessionPurgedDry closes erasedAccountGone in a dry run, which deletes
// no session first: a session the sessions step would delete (ended
// before ?2, the expired rows' cut-off, or not a browser sign-in's, and its
// tokens all expired before it) names the account no more than a deleted
// one.
const sessionPurgedDry = ` AND NOT (COALESCE(s.expires_at < ?2 OR s.revoked_at < ?2 OR (s.browser_digest IS NULL AND s.last_used_at < ?2), false)
		AND NOT EXISTS (SELECT 1 FROM jwt_tokens t WHERE t.session_id = s.id AND t.expires_at >= ?2)))`

// sessionsEnded, closed with ")", picks the sessions purge deletes: ended
// before ?1, or not a browser sign-in's (whose session lives on its cookie),
// and with no token left: a session that refreshes ends, idle, with its
// last refresh token, and goes with it. (That token was issued when the
// session was last used, so only one unused since before ?1 is looked at:
// the live ones cost the purge no probe of their tokens.) A dry run, which deletes no token
// first, closes it with " AND t.expires_at >= ?1)" to count those whose
// tokens the tokens step would delete.
const sessionsEnded = `(expires_at < ?1 OR revoked_at < ?1 OR (browser_digest IS NULL AND last_used_at < ?1)) AND NOT EXISTS
	(SELECT 1 FROM jwt_tokens t WHERE t.session_id = sessions.id`

// Purge implements authd.Store. An SQLite database serves one instance, so
// there is no one to coordinate with; each batch is its own short write.
func (s *Store) Purge(ctx context.Context, r authd.PurgeRequest) (authd.PurgeResult, error) {
	var res authd.PurgeResult
	// The erasures pending are finished once the security_logs step has
	// run or failed (as PostgreSQL's); their error stops no other step.
	var unfinished error
	erasuresDone := r.DryRun // a dry run finishes none
	finishErasures := func() {
		if !erasuresDone {
			erasuresDone, unfinished = true, s.finishErasures(ctx)
		}
	}
	// The feed's head as the run begins stays, expired or not, unless
	// older than the logs' retention (as PostgreSQL's).
	var head int64
	if err := s.db.QueryRowContext(ctx, `SELECT coalesce(max(id), 0) FROM revocation_events`).Scan(&head); err != nil {
		finishErasures()
		return res, errors.Join(translate(err), unfinished)
	}
	steps := []struct {
		n     *int
		table string
		where string
		at    string
		more  []any // ?2, …, where the where takes more; a batch's size follows
	}{
		{&res.SecurityLogs, "security_logs", `"timestamp" < ?1`, timeText(r.LogsBefore), nil},
		{&res.VerificationTokens, "verification_tokens", "expires_at < ?1", timeText(r.ExpiredBefore), nil},
		{&res.MFAChallenges, "mfa_challenges", "expires_at < ?1", timeText(r.ExpiredBefore), nil},
		{&res.WebAuthnChallenges, "webauthn_challenges", "expires_at < ?1", timeText(r.ExpiredBefore), nil},
		{&res.AuthRequests, "oauth_auth_requests", "expires_at < ?1", timeText(r.ExpiredBefore), nil},
		{&res.AuthCodes, "oauth_codes", "expires_at < ?1", timeText(r.ExpiredBefore), nil},
		// A session goes once its tokens have (as PostgreSQL's).
		{&res.Tokens, "jwt_tokens", "expires_at < ?1", timeText(r.ExpiredBefore), nil},
		{&res.Sessions, "sessions", sessionsEnded + ")", timeText(r.ExpiredBefore), nil},
		{&res.RevocationEvents, "revocation_events", "expires_at < ?1 AND (id < ?2 OR created_at < ?3)", timeText(r.Now),
			[]any{head, timeText(r.LogsBefore)}},
		// Mail that could not be delivered keeps its address until then.
		{&res.DeadMails, "mail_outbox", "dead_at < ?1", timeText(r.LogsBefore), nil},
		// An erased account's tombstone, once nothing is left about it.
		{&res.ErasedAccounts, "users", erasedAccountGone + ")" + erasureFinished, timeText(r.LogsBefore), nil},
	}
	for _, st := range steps {
		args := append([]any{st.at}, st.more...)
		if r.DryRun {
			where := st.where
			switch st.n {
			case &res.Sessions:
				// A dry run deletes no token first: it counts the
				// sessions whose tokens the step before would delete.
				where = sessionsEnded + " AND t.expires_at >= ?1)"
			case &res.ErasedAccounts:
				// Nor any session: those the sessions step would
				// delete do not keep an account.
				where, args = erasedAccountGone+sessionPurgedDry, append(args, timeText(r.ExpiredBefore))
			}
			if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM `+st.table+` WHERE `+where, args...).Scan(st.n); err != nil {
				return res, translate(err)
			}
			continue
		}
		batch := purgeBatch // when none is asked
		if st.n == &res.Tokens {
			batch = tokenPurgeBatch
		}
		if r.Batch > 0 {
			batch = min(r.Batch, batch)
		}
		after := "" // below every id
		for {
			var picked, n int
			var err error
			if st.n == &res.Sessions {
				picked, n, after, err = s.queries.purgeSessionsAfter(ctx, st.at, batch, after)
			} else {
				n, err = s.queries.deleteBatch(ctx, `DELETE FROM `+st.table+` WHERE id IN (SELECT id FROM `+st.table+
					` WHERE `+st.where+` LIMIT ?`+strconv.Itoa(len(args)+1)+`)`, append(args, batch)...)
				picked = n
			}
			if err != nil {
				finishErasures()
				return res, errors.Join(err, unfinished)
			}
			*st.n += n
			if picked < batch {
				break
			}
		}
		if st.n == &res.SecurityLogs {
			finishErasures()
		}
	}
	return res, unfinished
}

// purgeBatch bounds the rows one retention statement deletes, below the
// request's: each statement holds the writer lane, and every other write
// (a login's, a refresh's) waits behind it. The lane is first come, first
// served, so the writes that queued during a batch go before the next one;
// a batch's time is what they wait. BenchmarkPurgeLogs: 1,000 rows held
// it 8–9 ms (on a 500 MB probe database 17–65 ms warm, 170 ms cold; a
// probe under load saw 260 ms), 100 rows 0.75 ms (50 no less: a commit's
// cost); BenchmarkPurgeSessions: 100 ended sessions scattered among live
// ones, a page each, 11–12 ms (200: 31–33 ms, 50: 5–6 ms).
const purgeBatch = 100

// tokenPurgeBatch is purgeBatch for jwt_tokens, whose expired rows lie
// scattered among the live ones in the table and each of its eight
// indexes. BenchmarkPurgeTokens (400 among 50,000): 100 rows held the lane
// 45 ms (a probe at 600,000 tokens: 30-100 ms warm, 1.3 s cold), 25 rows
// 12 ms, for the same time in all (190 and 196 ms).
const tokenPurgeBatch = 25

// deleteBatch runs one batch's DELETE and returns how many rows it deleted.
func (q *queries) deleteBatch(ctx context.Context, query string, args ...any) (int, error) {
	out, err := q.db.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, translate(err)
	}
	n, err := out.RowsAffected()
	return int(n), translate(err)
}

// purgeSessionsAfter is a batch of the sessions step: it picks, in id
// order after the id after, up to batch ended sessions (a read, outside
// the lane), and deletes by key those of them still ended (the lane holds
// up to batch key lookups, not the live sessions between them). It
// returns how many it picked and deleted, and the last id picked, where
// the next batch begins: each batch's scan starts where the one before
// stopped, not at the first session, so that the live sessions among the
// ended are read once in the step rather than once a batch (the step's
// time grew with the square of its rows, as PostgreSQL's did). A session
// that ends behind the scan meanwhile waits for the next run.
func (q *queries) purgeSessionsAfter(ctx context.Context, at string, batch int, after string) (picked, n int, last string, err error) {
	var ids string // a JSON array
	var lastPicked sql.NullString
	if err := q.db.QueryRowContext(ctx, `SELECT json_group_array(id), count(*), max(id) FROM (SELECT id FROM sessions
		WHERE id > ?2 AND `+sessionsEnded+`) ORDER BY id LIMIT ?3)`, at, after, batch).Scan(&ids, &picked, &lastPicked); err != nil {
		return 0, 0, after, translate(err)
	}
	if picked == 0 {
		return 0, 0, after, nil
	}
	n, err = q.deleteBatch(ctx, `DELETE FROM sessions WHERE id IN (SELECT value FROM json_each(?2)) AND `+sessionsEnded+`)`, at, ids)
	return picked, n, lastPicked.String, err
}
