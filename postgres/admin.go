package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/authd/authd"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// BcryptCosts implements authd.Store (a scan of users, made once at start).
func (s *Store) BcryptCosts(ctx context.Context) ([]int, error) {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT substr(password_hash, 5, 2)::int FROM users
		WHERE password_hash ~ '^\$2[aby]\$[0-9]{2}\$'`)
	if err != nil {
		return nil, translate(err)
	}
	costs, err := pgx.CollectRows(rows, pgx.RowTo[int])
	return costs, translate(err)
}

// Argon2Costs implements authd.Store (a scan of users, made once at start).
func (s *Store) Argon2Costs(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT substring(password_hash from '^\$argon2id\$v=19\$([^$]+)\$')
		FROM users WHERE password_hash LIKE '$argon2id$v=19$%$%'`)
	if err != nil {
		return nil, translate(err)
	}
	costs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return costs, translate(err)
}

// KeyedRows implements authd.Store (made once at start).
func (s *Store) KeyedRows(ctx context.Context) (authd.KeyedRows, error) {
	var k authd.KeyedRows
	err := s.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM oauth_clients WHERE secret_digest IS NOT NULL),
		EXISTS (SELECT 1 FROM mfa_factors) OR EXISTS (SELECT 1 FROM mfa_recovery_codes)`).Scan(&k.ConfidentialClients, &k.MFA)
	if err != nil {
		return k, translate(err)
	}
	k.Checks, err = s.KeyChecks(ctx)
	return k, err
}

// KeyChecks implements authd.Store.
func (s *Store) KeyChecks(ctx context.Context) (map[string]authd.KeyCheck, error) {
	rows, err := s.pool.Query(ctx, `SELECT name, check_value, recorded_at FROM key_checks`)
	if err != nil {
		return nil, translate(err)
	}
	checks, err := pgx.CollectRows(rows, pgx.RowToStructByPos[authd.KeyCheck])
	return authd.KeyChecksByName(checks), translate(err)
}

// RecordKeyChecks implements authd.Store: one INSERT, atomic as any
// statement, then a read in a statement of its own, whose snapshot sees
// what another start inserted while the INSERT waited on it.
func (s *Store) RecordKeyChecks(ctx context.Context, checks []authd.KeyCheck) (map[string]authd.KeyCheck, error) {
	var names, values []string
	var times []time.Time
	for _, c := range checks {
		names, values, times = append(names, c.Name), append(values, c.Value), append(times, c.RecordedAt)
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO key_checks (name, check_value, recorded_at)
		SELECT * FROM unnest($1::varchar[], $2::varchar[], $3::timestamptz[]) ON CONFLICT (name) DO NOTHING`,
		names, values, times); err != nil {
		return nil, translate(err)
	}
	rows, err := s.pool.Query(ctx, `SELECT name, check_value, recorded_at FROM key_checks WHERE name = ANY($1)`, names)
	if err != nil {
		return nil, translate(err)
	}
	recorded, err := pgx.CollectRows(rows, pgx.RowToStructByPos[authd.KeyCheck])
	return authd.KeyChecksByName(recorded), translate(err)
}

// ReplaceKeyCheck implements authd.Store.
func (s *Store) ReplaceKeyCheck(ctx context.Context, c authd.KeyCheck, old string) (authd.KeyCheck, error) {
	var err error
	if old == "" {
		_, err = s.pool.Exec(ctx, `INSERT INTO key_checks (name, check_value, recorded_at) VALUES ($1, $2, $3)
			ON CONFLICT (name) DO NOTHING`, c.Name, c.Value, c.RecordedAt)
	} else {
		_, err = s.pool.Exec(ctx, `UPDATE key_checks SET check_value = $2, recorded_at = $3 WHERE name = $1 AND check_value = $4`,
			c.Name, c.Value, c.RecordedAt, old)
	}
	if err != nil {
		return authd.KeyCheck{}, translate(err)
	}
	rows, err := s.pool.Query(ctx, `SELECT name, check_value, recorded_at FROM key_checks WHERE name = $1`, c.Name)
	if err != nil {
		return authd.KeyCheck{}, translate(err)
	}
	c, err = pgx.CollectExactlyOneRow(rows, pgx.RowToStructByPos[authd.KeyCheck])
	return c, translate(err)
}

// ExpiredLocks implements authd.Store (index ix_users_account_status).
func (s *Store) ExpiredLocks(ctx context.Context, now time.Time, limit int) ([]uuid.UUID, error) {
	rows, err := s.pool.Query(ctx, `SELECT id FROM users
		WHERE account_status = 'locked' AND account_locked_until <= $1 ORDER BY account_locked_until LIMIT $2`, now, limit)
	if err != nil {
		return nil, translate(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	return ids, translate(err)
}

// Users implements authd.Store (index ix_users_created_at).
func (s *Store) Users(ctx context.Context, f authd.UserFilter) ([]*authd.User, error) {
	sql, args := usersQuery(f)
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, translate(err)
	}
	out, err := pgx.CollectRows(rows, rowTo(scanUser))
	return out, translate(err)
}

// usersQuery is Users' statement for f, and its arguments.
func usersQuery(f authd.UserFilter) (string, []any) {
	var where []string
	var args []any
	if f.Email != "" {
		args = append(args, "%"+likeEscape(strings.ToLower(f.Email))+"%")
		where = append(where, fmt.Sprintf(`email LIKE $%d ESCAPE '\'`, len(args)))
	}
	if f.Status != "" {
		args = append(args, string(f.Status))
		where = append(where, fmt.Sprintf("account_status = $%d", len(args)))
	}
	if f.After != nil {
		args = append(args, f.After.Time, f.After.ID)
		where = append(where, fmt.Sprintf("(created_at, id) < ($%d, $%d)", len(args)-1, len(args)))
	}
	sql := `SELECT ` + userColumns + ` FROM users`
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, listLimit(f.Limit))
	return sql + fmt.Sprintf(" ORDER BY created_at DESC, id DESC LIMIT $%d", len(args)), args
}

// likeEscape makes s match literally in a LIKE pattern.
func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// UserData implements authd.Store in one read-only repeatable-read
// transaction, so that every table is read from one snapshot. Each table is
// one query whose rows are handed on as pgx reads them off the connection.
func (s *Store) UserData(ctx context.Context, userID uuid.UUID, out authd.UserRows) error {
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		u, err := (&queries{db: tx}).User(ctx, userID)
		if err != nil {
			return err
		}
		if out.User != nil {
			if err := out.User(u); err != nil {
				return yielded{err}
			}
		}
		if err := each(ctx, tx, out.ConsentLogs, scanSecurityLog, `SELECT `+securityLogColumns+` FROM security_logs
			WHERE user_id = $1 AND (event_type = 'consent_updated' OR (event_type = 'registration' AND result = 'success'))
			ORDER BY "timestamp", id`, userID); err != nil {
			return err
		}
		if err := each(ctx, tx, out.Sessions, scanSession,
			`SELECT `+sessionColumns+` FROM sessions WHERE user_id = $1 ORDER BY created_at, id`, userID); err != nil {
			return err
		}
		if err := each(ctx, tx, out.Tokens, scanToken,
			`SELECT `+tokenColumns+` FROM jwt_tokens WHERE user_id = $1 ORDER BY issued_at, id`, userID); err != nil {
			return err
		}
		if err := each(ctx, tx, out.VerificationTokens, scanVerification,
			`SELECT `+verificationColumns+` FROM verification_tokens WHERE user_id = $1 ORDER BY created_at, id`, userID); err != nil {
			return err
		}
		if err := each(ctx, tx, out.SecurityLogs, scanSecurityLog,
			`SELECT `+securityLogColumns+` FROM security_logs WHERE user_id = $1 ORDER BY "timestamp", id`, userID); err != nil {
			return err
		}
		if err := each(ctx, tx, out.Mails, scanMail,
			`SELECT `+outboxColumns+` FROM mail_outbox WHERE user_id = $1 ORDER BY created_at, id`, userID); err != nil {
			return err
		}
		if err := each(ctx, tx, out.Factors, scanFactor,
			`SELECT `+factorColumns+` FROM mfa_factors WHERE user_id = $1 ORDER BY created_at, id`, userID); err != nil {
			return err
		}
		if err := each(ctx, tx, out.RecoveryCodes, scanRecoveryCode,
			`SELECT `+recoveryCodeColumns+` FROM mfa_recovery_codes WHERE user_id = $1 ORDER BY created_at, id`, userID); err != nil {
			return err
		}
		if err := each(ctx, tx, out.MFAChallenges, scanChallenge,
			`SELECT `+challengeColumns+` FROM mfa_challenges WHERE user_id = $1 ORDER BY created_at, id`, userID); err != nil {
			return err
		}
		if err := each(ctx, tx, out.Passkeys, scanPasskey,
			`SELECT `+passkeyColumns+` FROM passkeys WHERE user_id = $1 ORDER BY created_at, id`, userID); err != nil {
			return err
		}
		if err := each(ctx, tx, out.WebAuthnChallenges, scanWebAuthnChallenge,
			`SELECT `+webauthnChallengeColumns+` FROM webauthn_challenges WHERE user_id = $1 ORDER BY created_at, id`, userID); err != nil {
			return err
		}
		if err := each(ctx, tx, out.Consents, scanConsent,
			`SELECT `+consentColumns+` FROM oauth_consents WHERE user_id = $1 ORDER BY granted_at, id`, userID); err != nil {
			return err
		}
		if err := each(ctx, tx, out.AuthCodes, scanAuthCode,
			`SELECT `+authCodeColumns+` FROM oauth_codes WHERE user_id = $1 ORDER BY created_at, id`, userID); err != nil {
			return err
		}
		return each(ctx, tx, out.RevocationEvents, scanRevocationEvent,
			`SELECT id, kind, subject_id, reason, expires_at, created_at FROM revocation_events
			WHERE subject_id = $1 OR subject_id IN (SELECT id FROM sessions WHERE user_id = $1) ORDER BY id`, userID)
	})
	var y yielded
	if errors.As(err, &y) {
		return y.err
	}
	return translate(err)
}

func scanRevocationEvent(row pgx.Row) (*authd.RevocationEvent, error) {
	var e authd.RevocationEvent
	if err := row.Scan(&e.ID, &e.Kind, &e.Subject, &e.Reason, &e.ExpiresAt, &e.CreatedAt); err != nil {
		return nil, translate(err)
	}
	return &e, nil
}

// yielded carries the error of a caller's function through the
// transaction, so that it comes back unchanged rather than translated.
type yielded struct{ err error }

func (y yielded) Error() string { return y.err.Error() }

// each hands yield every row of one query, scanned, as it arrives; a nil
// yield skips the query.
func each[T any](ctx context.Context, tx pgx.Tx, yield func(T) error, scan func(pgx.Row) (T, error),
	sql string, args ...any) error {
	if yield == nil {
		return nil
	}
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return err
		}
		if err := yield(v); err != nil {
			return yielded{err}
		}
	}
	return rows.Err()
}

// scanSecurityLog reads one security_logs row of securityLogColumns.
func scanSecurityLog(row pgx.Row) (*authd.SecurityLog, error) {
	var l authd.SecurityLog
	var event, result string
	var user *uuid.UUID
	var ip, ua, reason *string
	if err := row.Scan(&l.ID, &event, &user, &l.Timestamp, &ip, &ua, &result, &reason, &l.AdditionalContext); err != nil {
		return nil, translate(err)
	}
	var err error
	if l.EventType, err = authd.ParseEventType(event); err != nil {
		return nil, fmt.Errorf("postgres: security log %s: %w", l.ID, err)
	}
	if l.Result, err = authd.ParseResult(result); err != nil {
		return nil, fmt.Errorf("postgres: security log %s: %w", l.ID, err)
	}
	l.UserID, l.IPAddress, l.UserAgent, l.FailureReason = value(user), value(ip), value(ua), value(reason)
	return &l, nil
}

// FinishErasure implements authd.Store. Clearing an account's
// security-log rows in the erasure's transaction stopped no other writer,
// but took 10-11 s for 500,000 rows and 28.5 s for 1,500,000 (a probe at
// stop 51): past a client's timeout the request ended and the erasure
// rolled back, every time. The transaction named the account in
// erasures_pending instead; here one statement clears its rows that still
// hold a client, and the erasures_pending row goes in the same
// transaction. Rows logged since the commit keep no client (userLogQuery).
// One cut short (the erasure's time budget, a stop) leaves nothing done
// and the account named, for the next Purge. In one statement, not in
// batches: the seed's ix_security_logs_user_id is on user_id alone, which
// orders a user's rows by nothing a batch could resume from, so each
// batch would read again every row the ones before it cleared.
func (s *Store) FinishErasure(ctx context.Context, userID uuid.UUID) error {
	return s.inTx(ctx, func(q *queries) error { return q.finishErasure(ctx, userID) })
}

// finishErasure is FinishErasure's transaction.
func (q *queries) finishErasure(ctx context.Context, userID uuid.UUID) error {
	if err := q.write(ctx, nil, `UPDATE security_logs SET ip_address = NULL, user_agent = NULL,
		additional_context = additional_context - 'device_info'
		WHERE user_id = $1 AND (ip_address IS NOT NULL OR user_agent IS NOT NULL
			OR additional_context ? 'device_info')`, userID); err != nil {
		return err
	}
	return q.write(ctx, nil, `DELETE FROM erasures_pending WHERE user_id = $1`, userID)
}

// finishErasures runs FinishErasure for every account erasures_pending
// names: erasures a crash, a stop or their time budget cut short. Each
// waits for a row lock purgeLockWait at most, as the purge's batches do:
// one that gives up stays pending for the next run (deferred), and one
// that fails stops no other: it returns their errors joined. No time
// bound beyond that: its one statement would never finish past one.
func (s *Store) finishErasures(ctx context.Context) (deferred bool, err error) {
	rows, err := s.pool.Query(ctx, `SELECT user_id FROM erasures_pending ORDER BY user_id`)
	if err != nil {
		return false, translate(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return false, translate(err)
	}
	var errs []error
	for _, id := range ids {
		err := s.inTx(ctx, func(q *queries) error {
			if err := q.write(ctx, nil, `SELECT set_config('lock_timeout', $1, true)`, purgeLockWait); err != nil {
				return err
			}
			return q.finishErasure(ctx, id)
		})
		switch {
		case lockWaited(err):
			deferred = true
		case err != nil:
			errs = append(errs, fmt.Errorf("finishing the erasure of %s: %w", id, err))
		}
	}
	return deferred, errors.Join(errs...)
}

// ErasePersonalData implements authd.Queries.
func (q *queries) ErasePersonalData(ctx context.Context, userID uuid.UUID) error {
	for _, sql := range []string{
		// Every session of the user, ended, expired or live, locked first:
		// a sign-out that holds one (an expired session is not among those
		// the erasure ended) finishes before the lock below, which its audit
		// row would otherwise wait for while the erasure waits for its
		// session.
		`UPDATE sessions SET device_info = NULL WHERE user_id = $1`,
		// The erasure read the user FOR NO KEY UPDATE (userLock), which
		// lets other transactions write rows that refer to the user. From
		// here on they wait for it to end, and an audit row then reads the
		// user as erased (userLogQuery); the ones written before have
		// committed once it holds the lock (their key-share locks held it
		// up), so the statements below find and clear them.
		`SELECT FROM users WHERE id = $1 FOR UPDATE`,
		`DELETE FROM verification_tokens WHERE user_id = $1`,
		`DELETE FROM mail_outbox WHERE user_id = $1`,
		`DELETE FROM mfa_factors WHERE user_id = $1`,
		`DELETE FROM mfa_recovery_codes WHERE user_id = $1`,
		`DELETE FROM mfa_challenges WHERE user_id = $1`,
		`DELETE FROM passkeys WHERE user_id = $1`,
		`DELETE FROM webauthn_challenges WHERE user_id = $1`,
		`DELETE FROM oauth_consents WHERE user_id = $1`,
		`DELETE FROM oauth_codes WHERE user_id = $1`,
		// The security-log rows are FinishErasure's, after the commit.
		`INSERT INTO erasures_pending (user_id) VALUES ($1) ON CONFLICT DO NOTHING`,
		`UPDATE jwt_tokens SET device_info = NULL WHERE user_id = $1`,
	} {
		if err := q.write(ctx, nil, sql, userID); err != nil {
			return err
		}
	}
	return nil
}

// purgeLockID is the advisory lock that keeps instances from purging at once.
const purgeLockID = 0x61757468647075 // "authdpu"

// purgeUnlockTimeout bounds the release of purgeLockID after a purge,
// whatever its context says: a stop waits for it, and a connection that
// does not answer is closed instead, which releases the lock.
const purgeUnlockTimeout = 2 * time.Second

// erasedAccountGone, closed with ")", picks the tombstones retention
// deletes: accounts erased (and unchanged) before $1 that no security-log
// row or session from $1 on names (older rows go in the same purge, before
// them, and so do the sessions the sessions step deletes: a dry run, which
// deletes nothing, closes it with sessionPurgedDry to count the same). The
// id, the registration time and the last password change are all that is
// left of them; every relying party's sub stays unknown, as any other.
const erasedAccountGone = `account_status = 'deleted' AND updated_at < $1
	AND NOT EXISTS (SELECT 1 FROM security_logs l WHERE l.user_id = users.id AND l."timestamp" >= $1)
	AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.user_id = users.id
		AND s.expires_at >= $1 AND (s.revoked_at IS NULL OR s.revoked_at >= $1)`

// erasureFinished follows erasedAccountGone's ")" in a purge: an account
// whose erasure the purge could not finish (finishErasures) keeps its
// tombstone, and the purges' errors name it, until its rows are cleared.
// Deleting it would drop the pending row with it (ON DELETE CASCADE). A
// dry run counts as if every erasure pending finished.
const erasureFinished = ` AND NOT EXISTS (SELECT 1 FROM erasures_pending p WHERE p.user_id = users.id)`

// sessionPurgedDry closes erasedAccountGone in a dry run, which deletes
// no session first: a session the sessions step would delete (ended
// before $2, the expired rows' cut-off, or not a browser sign-in's, and its
// tokens all expired before it) names the account no more than a deleted
// one.
const sessionPurgedDry = ` AND NOT (COALESCE(s.expires_at < $2 OR s.revoked_at < $2 OR (s.browser_digest IS NULL AND s.last_used_at < $2), false)
		AND NOT EXISTS (SELECT 1 FROM jwt_tokens t WHERE t.session_id = s.id AND t.expires_at >= $2)))`

// purgeLockWait bounds each wait of a purge batch for a row lock.
const purgeLockWait = "500ms"

// defaultPurgeBatch is a purge's rows per statement when its request asks
// no number.
const defaultPurgeBatch = 1000

// purgeBatch runs one batch's delete in a transaction of its own, whose
// lock_timeout (SET LOCAL: it ends with the transaction, never left on the
// pooled connection) bounds its waits for row locks. SKIP LOCKED passes
// over the rows a flow holds, but not the rows a delete cascades to (a
// session's tokens and codes): a batch that waits for one gives up after
// purgeLockWait and leaves the step's rest to the next run, before
// PostgreSQL would look for a deadlock (deadlock_timeout, 1 s by default)
// and perhaps abort the flow.
func purgeBatch(ctx context.Context, conn *pgxpool.Conn, query string, args ...any) (n int64, err error) {
	err = inPurgeTx(ctx, conn, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, query, args...)
		n = tag.RowsAffected()
		return err
	})
	return n, err
}

// purgeSessionsAfter is purgeBatch for the sessions step, whose scans the
// batches before slowed down: each batch's anti-join restarted from the
// first session and the first token, over the rows already deleted (and
// then a scan of the whole table deleted its picks), so that the step's
// time grew with the square of its rows (a probe: 150,000 sessions in
// 170 s). It deletes, in id order, up to batch ended sessions after the id
// after (uuid.Nil: from the first), both scans bounded by it, looked up by
// key, and returns how many and the last id deleted, where the next batch
// begins.
func purgeSessionsAfter(ctx context.Context, conn *pgxpool.Conn, at time.Time, batch int,
	after uuid.UUID) (n int64, last uuid.UUID, err error) {
	last = after
	err = inPurgeTx(ctx, conn, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `WITH d AS (DELETE FROM sessions WHERE id = ANY(ARRAY(SELECT id FROM sessions
			WHERE id > $3 AND `+sessionsEnded+` AND t.session_id > $3) ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED))
			RETURNING id)
			SELECT count(*), COALESCE((SELECT id FROM d ORDER BY id DESC LIMIT 1), $3) FROM d`,
			at, batch, after).Scan(&n, &last)
	})
	return n, last, err
}

// inPurgeTx runs a purge batch's statements in a transaction of its own
// whose lock_timeout is purgeLockWait (see purgeBatch).
func inPurgeTx(ctx context.Context, conn *pgxpool.Conn, batch func(pgx.Tx) error) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, `SELECT set_config('lock_timeout', $1, true)`, purgeLockWait); err != nil {
		return err
	}
	if err := batch(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// lockWaited reports whether err is a statement's lock_timeout, or a
// deadlock PostgreSQL ended it for.
func lockWaited(err error) bool {
	var pgErr *pgconn.PgError
	return LockTimedOut(err) || errors.As(err, &pgErr) && pgErr.Code == "40P01"
}

// sessionsEnded, closed with ")", picks the sessions purge deletes: ended
// before $1, or not a browser sign-in's (whose session lives on its cookie),
// and with no token left: a session that refreshes ends, idle, with its
// last refresh token, and goes with it. (That token was issued when the
// session was last used, so only one unused since before $1 is looked at:
// the live ones cost the purge no probe of their tokens.) A dry run, which deletes no token
// first, closes it with " AND t.expires_at >= $1)" to count those whose
// tokens the tokens step would delete.
const sessionsEnded = `(expires_at < $1 OR revoked_at < $1 OR (browser_digest IS NULL AND last_used_at < $1)) AND NOT EXISTS
	(SELECT 1 FROM jwt_tokens t WHERE t.session_id = sessions.id`

// lockPurge takes the purge's advisory lock on conn, for the session, or
// reports it held by another (skipped); unlock releases it.
func lockPurge(ctx context.Context, conn *pgxpool.Conn) (skipped bool, unlock func(), err error) {
	var locked bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, purgeLockID).Scan(&locked); err != nil {
		return false, nil, translate(err)
	}
	if !locked {
		return true, nil, nil
	}
	return false, func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), purgeUnlockTimeout)
		defer cancel()
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, purgeLockID); err != nil {
			// Not back to the pool while it may hold the lock: its end
			// releases it.
			conn.Conn().Close(ctx) //nolint:errcheck // closed either way
		}
	}, nil
}

// Purge implements authd.Store. It holds a session-level advisory lock on
// one connection for the whole purge, and deletes in batches so that no
// statement locks many rows for long. A dry run, which deletes nothing,
// takes no lock: it counts while another instance purges.
func (s *Store) Purge(ctx context.Context, r authd.PurgeRequest) (authd.PurgeResult, error) {
	var res authd.PurgeResult
	batch := r.Batch
	if batch <= 0 { // none asked: the store's
		batch = defaultPurgeBatch
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return res, translate(err)
	}
	defer conn.Release()
	if !r.DryRun {
		skipped, unlock, err := lockPurge(ctx, conn)
		if err != nil || skipped {
			return authd.PurgeResult{Skipped: skipped}, err
		}
		defer unlock() // at Purge's end
	}
	// The erasures pending are finished once the security_logs step has
	// run (the rows past retention are gone: they need no clearing), or
	// failed: a step that fails every run must not keep them pending.
	// Their error stops no other step.
	var unfinished error
	erasuresDone := r.DryRun // a dry run finishes none
	finishErasures := func() {
		if erasuresDone {
			return
		}
		erasuresDone = true
		deferred, err := s.finishErasures(ctx)
		if deferred {
			res.Deferred = append(res.Deferred, "erasures_pending")
		}
		unfinished = err
	}
	// The feed's head as the run begins: the newest event stays, expired
	// or not, so that a client past the events retention deleted is told
	// from one that followed a database since restored or recreated
	// (authd.Service.ResumeRevocationEvents); events committed meanwhile
	// come after it. Not past the logs' retention, though: an erasure's
	// event names the account, and a quiet deployment's head would keep
	// it for good (the table then empties, and clients start over once).
	var head int64
	if err := conn.QueryRow(ctx, `SELECT coalesce(max(id), 0) FROM revocation_events`).Scan(&head); err != nil {
		finishErasures()
		return res, errors.Join(translate(err), unfinished)
	}
	steps := []struct {
		n     *int
		table string
		where string
		at    time.Time
		more  []any // $2, …, where the where takes more; a batch's size follows
	}{
		{&res.SecurityLogs, "security_logs", `"timestamp" < $1`, r.LogsBefore, nil},
		{&res.VerificationTokens, "verification_tokens", "expires_at < $1", r.ExpiredBefore, nil},
		{&res.MFAChallenges, "mfa_challenges", "expires_at < $1", r.ExpiredBefore, nil},
		{&res.WebAuthnChallenges, "webauthn_challenges", "expires_at < $1", r.ExpiredBefore, nil},
		{&res.AuthRequests, "oauth_auth_requests", "expires_at < $1", r.ExpiredBefore, nil},
		{&res.AuthCodes, "oauth_codes", "expires_at < $1", r.ExpiredBefore, nil},
		// A session goes once its tokens have: the expired ones just
		// above, the others when they expire. Its delete then cascades to
		// no token (ON DELETE CASCADE), so every token deleted is counted, and
		// a token a flow held through the step above keeps its session
		// for the next run, as it is kept itself.
		{&res.Tokens, "jwt_tokens", "expires_at < $1", r.ExpiredBefore, nil},
		{&res.Sessions, "sessions", sessionsEnded + ")", r.ExpiredBefore, nil},
		{&res.RevocationEvents, "revocation_events", "expires_at < $1 AND (id < $2 OR created_at < $3)", r.Now,
			[]any{head, r.LogsBefore}},
		// Mail that could not be delivered keeps its address until then.
		{&res.DeadMails, "mail_outbox", "dead_at < $1", r.LogsBefore, nil},
		// An erased account's tombstone, once nothing is left about it.
		{&res.ErasedAccounts, "users", erasedAccountGone + ")" + erasureFinished, r.LogsBefore, nil},
	}
	for _, st := range steps {
		args := append([]any{st.at}, st.more...)
		if r.DryRun {
			where := st.where
			switch st.n {
			case &res.Sessions:
				// A dry run deletes no token first: it counts the
				// sessions whose tokens the step before would delete.
				where = sessionsEnded + " AND t.expires_at >= $1)"
			case &res.ErasedAccounts:
				// Nor any session: those the sessions step would
				// delete do not keep an account.
				where, args = erasedAccountGone+sessionPurgedDry, append(args, r.ExpiredBefore)
			}
			if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+st.table+` WHERE `+where, args...).Scan(st.n); err != nil {
				return res, translate(err)
			}
			continue
		}
		var last uuid.UUID // the sessions step's: where its next batch begins
		for {
			// A row a flow holds is left to the next run: waiting for
			// it could deadlock with a flow that locks the same rows in
			// another order (a new password voiding a user's challenges).
			var n int64
			var err error
			if st.n == &res.Sessions {
				n, last, err = purgeSessionsAfter(ctx, conn, st.at, batch, last)
			} else {
				n, err = purgeBatch(ctx, conn, `DELETE FROM `+st.table+` WHERE id IN (SELECT id FROM `+st.table+
					` WHERE `+st.where+` LIMIT $`+strconv.Itoa(len(args)+1)+` FOR UPDATE SKIP LOCKED)`, append(args, batch)...)
			}
			if lockWaited(err) {
				break // the batch rolled back; the next run takes it
			}
			if err != nil {
				finishErasures()
				return res, errors.Join(translate(err), unfinished)
			}
			*st.n += int(n)
			if n < int64(batch) {
				break
			}
		}
		// Rows SKIP LOCKED passed over, or a batch that gave up, are left:
		// say so. Its cut-off is in the past, so no row becomes due meanwhile.
		var left bool
		if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+st.table+` WHERE `+st.where+`)`, args...).Scan(&left); err != nil {
			finishErasures()
			return res, errors.Join(translate(err), unfinished)
		}
		if left {
			res.Deferred = append(res.Deferred, st.table)
		}
		if st.n == &res.SecurityLogs {
			finishErasures()
		}
	}
	return res, unfinished
}
