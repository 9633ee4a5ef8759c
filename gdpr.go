package authd

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// Export hands every personal datum held on the token's user (SPEC §6.8)
// to rows, table by table as the store reads them from one snapshot, after
// logging data_exported, which the export itself includes. Returns
// EInvalidToken, ERateLimited (10 an hour), EUnavailable, or the first error a rows function returns.
func (s *Service) Export(ctx context.Context, c Client, a *AccessClaims, rows UserRows) error {
	if err := s.limit(ctx, "export:"+a.UserID.String(), exportsPerUser, time.Hour); err != nil {
		return err
	}
	if _, err := s.Me(ctx, a); err != nil {
		return err
	}
	if err := s.logEvent(ctx, s.audit(s.now(), c, EventDataExported, ResultSuccess, a.UserID, "", nil)); err != nil {
		return err
	}
	if yield := rows.SecurityLogs; yield != nil {
		rows.SecurityLogs = func(l *SecurityLog) error { return yield(subjectView(l)) }
	}
	// Erased between the check above and the snapshot, which reads the
	// user first: the token is refused, as it would be a moment later.
	yieldUser := rows.User
	rows.User = func(u *User) error {
		if u.IsDeleted() {
			return errInvalidToken
		}
		if yieldUser == nil {
			return nil
		}
		return yieldUser(u)
	}
	return s.store.UserData(ctx, a.UserID, rows)
}

// exportsPerUser bounds the exports of one user an hour: each reads every
// row the user has.
const exportsPerUser = 10

// DeleteMe erases the token's account after checking its password and,
// when the user has a second factor, proof. Returns EInvalidCredentials
// (wrong password or code), EMFARequired (no code for a user with a second
// factor), EInvalid, EAccountLocked, ERateLimited, EInvalidToken,
// EUnavailable.
func (s *Service) DeleteMe(ctx context.Context, c Client, a *AccessClaims, password string, proof StepUp) error {
	ctx, cancel := s.detach(ctx) // the checks finish whatever the client does
	defer cancel()
	checked, err := s.reauthenticateStepUp(ctx, c, a, password, "password", proof, EventAccountDeleted)
	if err != nil {
		return err
	}
	var address string
	var spent bool
	err = s.inTx(ctx, func(tx *txn) error {
		u, now, err := s.recheck(ctx, tx, c, a, checked, proof, EventAccountDeleted)
		if err != nil {
			return err
		}
		address = u.Email
		spent, err = s.erase(ctx, tx, u, now, "user")
		return err
	})
	return s.afterErasure(ctx, a.UserID, address, spent, err)
}

// afterErasure finishes, once the erasure that err reports has committed,
// what is left of it outside its transaction, and returns err: the
// mailer's copies (forgetMail) and the security-log rows a store clears
// after the commit (Store.FinishErasure, for erasureBudget at most,
// whatever the client does; the next retention run, within the hour,
// finishes the rest). A failure of either is logged rather than returned:
// the erasure stands, and a retry would find no account. An erasure that
// met an outage gives back the mail its notice spent (spent, as erase
// reports), as every flow that mails does (refundMail).
func (s *Service) afterErasure(ctx context.Context, user uuid.UUID, address string, spent bool, err error) error {
	if err != nil {
		if spent {
			s.refundMail(ctx, err, address)
		}
		return err
	}
	ctx, cancel := s.detach(ctx)
	defer cancel()
	s.forgetMail(ctx, user, address)
	finish, stop := context.WithTimeout(ctx, erasureBudget)
	defer stop()
	if err := s.store.FinishErasure(finish, user); err != nil {
		s.logger.Warn("an erased account's security-log rows are left to the next retention run",
			"user_id", user, "err", err)
	}
	return nil
}

// erasureBudget bounds the time an erasure's answer waits for
// FinishErasure: well within the server's write timeout (30 s) after the
// checks. SQLite clears some 85,000 rows a second in its batches
// (BenchmarkFinishErasure, beside no other writer), 500 rows a write of 5
// ms: with the lane to itself, an account of up to some 800,000 rows
// before the answer; under load each batch queues behind the writes
// waiting, and fewer. PostgreSQL clears them in one statement, some
// 45,000 rows a second (500,000 in 10-11 s at stop 51's probe): up to
// some 400,000 before the answer; a larger account's statement is cut
// short, and the retention run clears them whole.
const erasureBudget = 10 * time.Second

// Tombstone is the address an erased account keeps: unique, and saying
// nothing about the person, so that the old address can register again.
func Tombstone(id uuid.UUID) string { return "deleted-" + id.String() + "@invalid" }

// erase is the erasure of SPEC §6.8, for the user (by "user" or "admin"):
// every session and token revoked, verification tokens and unsent mail
// deleted, the email replaced by a tombstone, hash and consent cleared,
// IP, user agent and device cleared from its rows, account_deleted logged
// (with no IP or user agent), and a notice mailed to the old address.
// spent reports whether the notice counted toward the address's mail
// budget (one never verified: see below), for a refund should the
// transaction fail (afterErasure).
func (s *Service) erase(ctx context.Context, tx *txn, u *User, now time.Time, by string) (spent bool, err error) {
	if u.IsDeleted() {
		return false, errNoUser
	}
	if _, err := s.endUserSessions(ctx, tx, u.ID, uuid.Nil, now, string(EventAccountDeleted)); err != nil {
		return false, err
	}
	if err := tx.ErasePersonalData(ctx, u.ID); err != nil {
		return false, err
	}
	notice := &User{ID: u.ID, Email: u.Email}
	// The notice of an address never verified spends its mail budget, past
	// which it is not sent: with verification off, whoever registers
	// someone's address can sign in, erase the account and register it
	// again, and each erasure mailed that address. A verified address's
	// notice goes regardless (no forgot-password flood silences it).
	spent = !u.EmailVerified && s.noticeAllowed(ctx, u.Email)
	mailNotice := u.EmailVerified || spent
	u.Email = Tombstone(u.ID)
	u.PasswordHash = ""
	u.EmailVerified = false
	u.AccountStatus = StatusDeleted
	u.clearFailures()
	u.LastFailedLogin, u.CodesLockedUntil = time.Time{}, time.Time{}
	u.AccountLockedUntil, u.LockReason = time.Time{}, ""
	u.LastLoginTimestamp = time.Time{}
	u.ConsentStatus, u.ConsentTimestamp = false, now
	u.UpdatedAt = now
	if err := tx.UpdateUser(ctx, u); err != nil {
		return spent, err
	}
	if mailNotice {
		if err := tx.enqueue(ctx, now, MailAccountDeleted, notice, time.Time{}); err != nil {
			return spent, err
		}
	}
	return spent, tx.CreateSecurityLog(ctx, NewSecurityLog(now, EventAccountDeleted, ResultSuccess, u.ID, "", "", "",
		map[string]any{"by": by, "notice_mailed": mailNotice}))
}

// Page is one page of a newest-first list.
type Page[T any] struct {
	Items []T
	Next  *Cursor // nil on the last page
}

// page cuts rows fetched with limit+1 into a page and its next cursor.
func page[T any](rows []T, limit int, cursor func(T) Cursor) Page[T] {
	if len(rows) <= limit {
		return Page[T]{Items: rows}
	}
	rows = rows[:limit]
	next := cursor(rows[len(rows)-1])
	return Page[T]{Items: rows, Next: &next}
}

// ListLimit bounds a requested page size to [1, MaxListLimit], 0 meaning
// DefaultListLimit. EInvalid for a negative or too large one.
func ListLimit(n int) (int, error) {
	switch {
	case n == 0:
		return DefaultListLimit, nil
	case n < 0 || n > MaxListLimit:
		return 0, invalidField("limit", "must be from 1 to 200")
	}
	return n, nil
}

func logCursor(l *SecurityLog) Cursor { return Cursor{Time: l.Timestamp, ID: l.ID} }

// securityLogs lists security events matching f, newest first, one page,
// reading in one of slots (listRead).
func (s *Service) securityLogs(ctx context.Context, slots chan struct{}, f SecurityLogFilter) (Page[*SecurityLog], error) {
	limit, err := ListLimit(f.Limit)
	if err != nil {
		return Page[*SecurityLog]{}, err
	}
	f.Limit = limit + 1
	rows, err := listRead(ctx, slots, f, s.store.SecurityLogs)
	if err != nil {
		return Page[*SecurityLog]{}, err
	}
	return page(rows, limit, logCursor), nil
}

// MySecurityLog lists the token's user's own events, newest first.
func (s *Service) MySecurityLog(ctx context.Context, a *AccessClaims, after *Cursor, limit int) (Page[*SecurityLog], error) {
	p, err := s.securityLogs(ctx, nil, SecurityLogFilter{UserID: a.UserID, After: after, Limit: limit})
	for i, l := range p.Items {
		p.Items[i] = subjectView(l)
	}
	return p, err
}

// reasonAdminUnlock is the reason of the account_unlocked row an
// administrator's unlock writes.
const reasonAdminUnlock = "unlocked by an administrator"

// subjectView is a security-log row as the user it is about may read it.
// An administrator's IP address and browser are the administrator's, not
// the user's: admin actions keep them on a row of their own (logAdmin),
// but rows written before that carry them under the user — admin_action
// rows, and the account_unlocked row of an administrator's unlock.
func subjectView(l *SecurityLog) *SecurityLog {
	byAdmin := l.EventType == EventAdminAction ||
		(l.EventType == EventAccountUnlocked && l.FailureReason == reasonAdminUnlock)
	if !byAdmin || (l.IPAddress == "" && l.UserAgent == "") {
		return l
	}
	v := *l
	v.IPAddress, v.UserAgent = "", ""
	return &v
}
