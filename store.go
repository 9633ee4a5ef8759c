package authd

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// Store keeps the service's data. The postgres and sqlite packages implement
// it and pass the same contract suite (storetest). Stores return *Error with
// ENotFound (no such row, or a reference to a missing row), EConflict (a
// unique value is taken), EInvalid (a value the schema refuses) and
// EUnavailable (the database cannot be reached).
type Store interface {
	Queries

	// InTx runs fn in one transaction, committed when fn returns nil and
	// rolled back otherwise. Inside it, the rows that User, UserByEmail and
	// RefreshToken return stay locked against other writers until it ends, so
	// that read-modify-write flows never interleave. Flows lock a user before
	// the user's other rows, so the reads of a row by its digest
	// (VerificationToken, MFAChallenge, AuthCode, WebAuthnChallenge,
	// RefreshSession) lock its user first: a flow that holds the user and
	// then changes the user's rows (an erasure, a new link voiding the older
	// ones) and one that redeems such a row wait for each other instead of
	// deadlocking.
	InTx(ctx context.Context, fn func(tx Queries) error) error

	// RevokedSessions returns the sessions revoked at or after since, for
	// the revocation set.
	RevokedSessions(ctx context.Context, since time.Time) ([]Revocation, error)
	// RevocationEvents returns, by id, at most limit revocation events with
	// an id above after that have not expired at now.
	RevocationEvents(ctx context.Context, after int64, now time.Time, limit int) ([]RevocationEvent, error)
	// RevocationEventsFrom is RevocationEvents for a reader that has seen
	// event seen: by id, at most limit events, the first being event seen
	// itself, expired or not, when it is still in the table; so that one
	// read both finds the events after a position and tells whether the
	// position is still there.
	RevocationEventsFrom(ctx context.Context, seen int64, now time.Time, limit int) ([]RevocationEvent, error)
	// LastRevocationEventID returns the highest revocation event id in the
	// table (0 when empty).
	LastRevocationEventID(ctx context.Context) (int64, error)

	// Users lists users matching f, newest first.
	Users(ctx context.Context, f UserFilter) ([]*User, error)
	// BcryptCosts returns the costs of the bcrypt password hashes stored
	// (imported accounts not upgraded yet), each once.
	BcryptCosts(ctx context.Context) ([]int, error)
	// Argon2Costs returns the parameters ("m=M,t=T,p=P") of the argon2id
	// password hashes stored, each once.
	Argon2Costs(ctx context.Context) ([]string, error)
	// KeyedRows tells what the database holds that only the keys
	// directory's secrets open.
	KeyedRows(ctx context.Context) (KeyedRows, error)
	// KeyChecks returns the check values recorded (RecordKeyChecks), by name.
	KeyChecks(ctx context.Context) (map[string]KeyCheck, error)
	// RecordKeyChecks records each of checks whose name has none recorded,
	// all in one statement (of two starts racing, one records all of its
	// checks and the other none), and returns the checks recorded after
	// for those names.
	RecordKeyChecks(ctx context.Context, checks []KeyCheck) (map[string]KeyCheck, error)
	// ReplaceKeyCheck records c in place of the check recorded under its
	// name if that one's value is old (none recorded: old ""), and returns
	// the check recorded after: another than c when the record changed
	// meanwhile.
	ReplaceKeyCheck(ctx context.Context, c KeyCheck, old string) (KeyCheck, error)
	// ExpiredLocks returns the ids of at most limit users still marked
	// locked whose timed lock ran out at or before now, the longest run out
	// first.
	ExpiredLocks(ctx context.Context, now time.Time, limit int) ([]uuid.UUID, error)
	// UserData reads every row that refers to the user from one read-only
	// snapshot, so that the parts agree, and hands each row to rows as it
	// reads it, so that no caller ever holds them all (an export can run to
	// millions of rows). It returns ENotFound, before any call, when there
	// is no such user, and the first error a rows function returns,
	// unchanged, after which it reads nothing more.
	UserData(ctx context.Context, userID uuid.UUID, rows UserRows) error
	// Purge deletes what retention allows, in batches; with many instances
	// only one purges at a time (the others report Skipped). It first
	// finishes the erasures left unfinished (FinishErasure).
	Purge(ctx context.Context, r PurgeRequest) (PurgeResult, error)
	// FinishErasure clears the IP address, user agent and device
	// description from the security-log rows of an account whose erasure
	// committed (ErasePersonalData), which leaves that to after the
	// commit: a large account's rows took seconds (SQLite's one writer
	// held throughout) to tens of seconds (PostgreSQL: past a client's
	// timeout the erasure rolled back). SQLite clears them in short
	// batches, each its own write; PostgreSQL in one statement. It
	// returns once none is left, or the error that stopped it (ctx's end):
	// the next Purge finishes the rest.
	FinishErasure(ctx context.Context, userID uuid.UUID) error

	// ClaimMail claims the outbox mail due at now that has waited longest
	// and that no live claim holds, for claim: it gets claimed_until =
	// now+lease, the claim and one more attempt. Two senders never claim the
	// same mail while its lease runs. nil when no mail is due.
	ClaimMail(ctx context.Context, claim uuid.UUID, now time.Time, lease time.Duration) (*OutboxMail, error)
	// CompleteMail removes a delivered (or no longer wanted) mail. The next
	// three change a mail only while claim holds it: ENotFound when it does
	// not (its lease lapsed and another sender claimed it, or it is gone).
	CompleteMail(ctx context.Context, id, claim uuid.UUID) error
	// RetryMail releases a mail whose delivery failed until next.
	RetryMail(ctx context.Context, id, claim uuid.UUID, next time.Time, lastError string) error
	// KillMail marks a mail dead after its last failed attempt.
	KillMail(ctx context.Context, id, claim uuid.UUID, at time.Time, lastError string) error
	// MailQueued reports whether the outbox still holds mail id, under any
	// claim or none, pending or dead.
	MailQueued(ctx context.Context, id uuid.UUID) (bool, error)
	// OutboxStats counts pending and dead mails.
	OutboxStats(ctx context.Context) (OutboxStats, error)
	// Mails lists outbox mails matching f, newest first.
	Mails(ctx context.Context, f MailFilter) ([]*OutboxMail, error)

	// Ready returns nil when the database is reachable and its schema is at
	// the head migration.
	Ready(ctx context.Context) error

	// Close releases the store's connections.
	Close() error
}

// Rotator is implemented by a store that can make the ordinary refresh
// rotation of SPEC 6.4 in one statement: on PostgreSQL that is one round trip
// instead of two and one statement instead of five. The service tries it
// first and, whenever it reports ENotFound, decides in its own transaction,
// so a Rotator recognises the ordinary case only and declines the rest.
type Rotator interface {
	// Rotate rotates the refresh token of the Rotation that rotation makes,
	// called once, when the store holds a database connection (the times it
	// reads are not older than a wait for one): if, at r.Now, it is an
	// unrevoked, unexpired refresh token of a live session of client
	// r.ClientID whose user is neither erased nor locked (under any lock),
	// the token is revoked and rotated at r.Now, the session used at r.Now,
	// r.Child inserted as the token's child in its session and r.Log written
	// for the token's user, the session's id added to its context. It then
	// calls admit with the session and commits only if admit returns nil,
	// returning admit's error otherwise; with admit nil the rotation is one
	// statement that commits on its own. It returns the session as rotated,
	// or ENotFound, having changed nothing, when the case is not ordinary or
	// another transaction holds the rows: it does not wait for them, since
	// r.Now, read before, would stamp the rotation; the service's
	// transaction waits and then reads the clock.
	Rotate(ctx context.Context, rotation func() *Rotation, admit func(*Session) error) (*Session, error)
}

// Rotation is what Rotator.Rotate writes. Child holds the new refresh
// token's ID, JTI, TokenValue, IssuedAt, ExpiresAt and CreatedAt; the store
// takes its user, session, parent and device from the rotated token and
// caps its expiry at the session's.
type Rotation struct {
	Digest   string // of the refresh token presented
	ClientID string // the client whose session it must be; "" for the JSON API
	Now      time.Time
	Child    *Token
	Log      *SecurityLog
}

// SignInState is what starting a session for a user decides on
// (Queries.SignInState).
type SignInState struct {
	User     *User
	Factors  []*Factor
	Passkeys []*Passkey
	// Excess are the user's active sessions a new one would end, least
	// recently used last.
	Excess []uuid.UUID
}

// Queries are the reads and writes of a Store, inside or outside a
// transaction.
type Queries interface {
	// CreateUser inserts u, with no failed second-factor codes whatever
	// u.FailedCodeAttempts says. EConflict when its email is taken.
	CreateUser(ctx context.Context, u *User) error
	// User returns the user with the id. ENotFound when there is none.
	User(ctx context.Context, id uuid.UUID) (*User, error)
	// UserByEmail returns the user with the (normalised) email. ENotFound when there is none.
	UserByEmail(ctx context.Context, email string) (*User, error)
	// EmailTaken reports whether an account has the (normalised) email. It
	// locks nothing, in a transaction too: a flow that holds one user must
	// not wait for another's row (an address change checking the address
	// it moves to).
	EmailTaken(ctx context.Context, email string) (bool, error)
	// UpdateUser writes every field of u. ENotFound when it no longer exists,
	// EConflict when its new email is taken.
	UpdateUser(ctx context.Context, u *User) error

	// CreateSession inserts s. ENotFound when its user does not exist.
	CreateSession(ctx context.Context, s *Session) error
	// Session returns the session with the id. ENotFound when there is none.
	Session(ctx context.Context, id uuid.UUID) (*Session, error)
	// UpdateSession writes LastUsedAt and RevokedAt of s. ENotFound when it does not exist.
	UpdateSession(ctx context.Context, s *Session) error
	// Sessions returns the user's sessions that are neither revoked nor
	// expired at now, newest first.
	Sessions(ctx context.Context, userID uuid.UUID, now time.Time) ([]*Session, error)
	// RevokeSession ends a session at at: the session and every token of it
	// not yet revoked. ENotFound when there is no such session.
	RevokeSession(ctx context.Context, id uuid.UUID, at time.Time) error
	// RevokeUserSessions ends every unrevoked session of the user but except
	// (uuid.Nil: none excepted), and returns their ids.
	RevokeUserSessions(ctx context.Context, userID, except uuid.UUID, at time.Time) ([]uuid.UUID, error)
	// RevokeSessionsSignedInWith ends, at at, every live session of the user
	// whose SignedInWith is f, but except (uuid.Nil: none), with its
	// tokens, and returns their ids. The zero SignInFactor matches none.
	RevokeSessionsSignedInWith(ctx context.Context, userID uuid.UUID, f SignInFactor, except uuid.UUID,
		at time.Time) ([]uuid.UUID, error)
	// RevokeSessions ends the sessions, each unrevoked, at at: the sessions
	// and every token of them not yet revoked. An error when one is not an
	// unrevoked session. Inside a transaction, with the ids read locked in
	// it (SignInState's Excess), where that error rolls everything back;
	// outside one, the sessions ended before the error stay ended.
	RevokeSessions(ctx context.Context, ids []uuid.UUID, at time.Time) error
	// SignInState returns what starting a session for the user decides on,
	// in one round trip where the store can: the user, their second factors
	// and passkeys, and, with keep ≥ 0, the ids of the user's active
	// sessions (neither revoked nor expired at now) beyond the keep most
	// recently used: the ones a new session ends under AUTHD_MAX_SESSIONS.
	// Inside a transaction all of it stays locked until it ends, the user's
	// row first. ENotFound when there is no such user.
	SignInState(ctx context.Context, userID uuid.UUID, keep int, now time.Time) (*SignInState, error)

	// CreateToken inserts the tokens, in one statement. EConflict when its jti or digest is taken,
	// ENotFound when its user or session does not exist.
	CreateToken(ctx context.Context, tokens ...*Token) error
	// TokenByJTI returns the token with the jti. ENotFound when there is none.
	TokenByJTI(ctx context.Context, jti string) (*Token, error)
	// RefreshToken returns the refresh token whose digest is given. ENotFound
	// when there is none.
	RefreshToken(ctx context.Context, digest string) (*Token, error)
	// RefreshSession returns the refresh token whose digest is given with
	// its session and user, in one round trip where the store can. Inside
	// InTx the token and session are locked against other writers and the
	// user against writers only (it stays shared with other refreshes), in
	// the order user, session, token. ENotFound when there is no such token.
	RefreshSession(ctx context.Context, digest string) (*Token, *Session, *User, error)
	// SaveRotation writes the revocation fields of t and the last use and
	// revocation of s, in one statement where the store can.
	SaveRotation(ctx context.Context, t *Token, s *Session) error

	// CreateVerificationToken inserts v. EConflict when its digest is taken,
	// ENotFound when its user does not exist.
	CreateVerificationToken(ctx context.Context, v *VerificationToken) error
	// VerificationToken returns the verification token whose digest is given.
	// Inside InTx it stays locked until the transaction ends, and so does its
	// user, locked first (see InTx). ENotFound when there is none.
	VerificationToken(ctx context.Context, digest string) (*VerificationToken, error)
	// UseVerificationToken marks v used at v.UsedAt. ENotFound when it does not exist.
	UseVerificationToken(ctx context.Context, v *VerificationToken) error
	// SetVerificationAttempts stores v.Attempts and v.AttemptedAt.
	// ENotFound when v does not exist.
	SetVerificationAttempts(ctx context.Context, v *VerificationToken) error
	// DeleteVerificationTokens deletes the user's unused tokens of the type
	// but those that change the address (NewEmail set), voiding them when
	// a new one is mailed.
	DeleteVerificationTokens(ctx context.Context, userID uuid.UUID, typ VerificationType) error
	// DeleteEmailChanges deletes the user's unused email_verification
	// tokens that change the address (NewEmail set), and no other.
	DeleteEmailChanges(ctx context.Context, userID uuid.UUID) error
	// EmailChangePending reports whether the user has an address change
	// pending at now: an unused token that changes the address (NewEmail
	// set) and has not expired, or a queued or dead email_change mail,
	// which DeleteEmailChanges and WithdrawMails would delete.
	EmailChangePending(ctx context.Context, userID uuid.UUID, now time.Time) (bool, error)

	// CreateSecurityLog appends an audit event. An event about an erased
	// (deleted) user keeps no client — IP address, user agent, the
	// context's device_info — whatever l holds, the user read as an erasure
	// in progress leaves it (SPEC 6.8: a flow that read the user before the
	// erasure committed must not add a row the erasure could not clear).
	// ENotFound when its user does not exist.
	CreateSecurityLog(ctx context.Context, l *SecurityLog) error
	// SecurityLogs returns the events matching f, newest first.
	SecurityLogs(ctx context.Context, f SecurityLogFilter) ([]*SecurityLog, error)

	// ErasePersonalData removes what an erased account leaves behind: its
	// verification tokens, unsent mail, second factors, passkeys, recovery
	// codes and login and WebAuthn challenges are deleted; the IP address, user
	// agent and device description are cleared from its sessions and tokens
	// and from its security-log rows (where the store defers that, by
	// FinishErasure once the transaction committed). Inside a transaction it first locks every
	// session of the user (so that a sign-out holding one finishes first),
	// then the user's row against every other (the lock User takes lets
	// rows that refer to the user be written): a security-log row written
	// after that waits for the transaction to end and keeps no client
	// (CreateSecurityLog), one written before is found and cleared.
	ErasePersonalData(ctx context.Context, userID uuid.UUID) error

	// EnqueueMail adds a mail to the outbox.
	EnqueueMail(ctx context.Context, m *OutboxMail) error
	// WithdrawMails deletes the user's mails of kind, pending or dead
	// (sent mails are not kept), whatever their claim: a sender that holds
	// one finds its claim gone (ExtendMailClaim, ENotFound), and a dead one
	// can no longer be revived.
	WithdrawMails(ctx context.Context, userID uuid.UUID, kind MailKind) error
	// WithdrawMailsTo deletes the user's mails to the address to, of any
	// kind, as WithdrawMails does.
	WithdrawMailsTo(ctx context.Context, userID uuid.UUID, to string) error
	// ReviveMail makes a dead mail pending again, due at now with a fresh
	// count of attempts. ENotFound when there is no such dead mail.
	ReviveMail(ctx context.Context, id uuid.UUID, now time.Time) error
	// ExtendMailClaim moves the lease of a mail to until while claim holds
	// it: ENotFound when it does not (its lease lapsed and another sender
	// claimed it, or it is gone). Inside InTx no other sender can claim the
	// mail until the transaction ends.
	ExtendMailClaim(ctx context.Context, id, claim uuid.UUID, until time.Time) error

	// CreateFactor inserts f. EConflict when the user already has a factor
	// of its kind, ENotFound when the user does not exist.
	CreateFactor(ctx context.Context, f *Factor) error
	// Factors returns the user's factors, confirmed or not, oldest first.
	// Inside InTx they stay locked against other writers until it ends, so
	// that one TOTP code is never accepted twice.
	Factors(ctx context.Context, userID uuid.UUID) ([]*Factor, error)
	// UpdateFactor writes Confirmed, ConfirmedAt, LastUsedAt and LastStep of
	// f. ENotFound when it does not exist.
	UpdateFactor(ctx context.Context, f *Factor) error
	// DeleteFactor deletes a factor. ENotFound when it does not exist.
	DeleteFactor(ctx context.Context, id uuid.UUID) error
	// ReplaceRecoveryCodes deletes every recovery code of the user and
	// inserts codes (none: the user has none left).
	ReplaceRecoveryCodes(ctx context.Context, userID uuid.UUID, codes []*RecoveryCode) error
	// UseRecoveryCode marks the user's unused recovery code with the digest
	// used at at. ENotFound when the user has no such unused code.
	UseRecoveryCode(ctx context.Context, userID uuid.UUID, digest string, at time.Time) error
	// RecoveryCodesLeft counts the user's unused recovery codes.
	RecoveryCodesLeft(ctx context.Context, userID uuid.UUID) (int, error)

	// CreateMFAChallenge inserts c. EConflict when its digest is taken,
	// ENotFound when its user does not exist.
	CreateMFAChallenge(ctx context.Context, c *MFAChallenge) error
	// MFAChallenge returns the challenge whose digest is given, locked
	// inside InTx after its user (see InTx). ENotFound when there is none.
	MFAChallenge(ctx context.Context, digest string) (*MFAChallenge, error)
	// UpdateMFAChallenge writes Failures and UsedAt of c. ENotFound when it
	// does not exist.
	UpdateMFAChallenge(ctx context.Context, c *MFAChallenge) error
	// VoidOpenMFAChallenges sets Failures to mark (MFAChallengeVoided,
	// MFAChallengeOutdated or MFAChallengeEnded) on the user's login challenges not yet passed
	// (UsedAt zero), whatever their expiry; the other marks leave the
	// ones already MFAChallengeVoided as they are (a new password's mark
	// says more).
	VoidOpenMFAChallenges(ctx context.Context, userID uuid.UUID, mark int) error
	// OpenChallengeSince reports whether a login challenge of the user
	// began at or after since, was not passed (UsedAt zero), not voided by
	// a new password (MFAChallengeVoided; one a new factor voided still
	// proved the password) and has not expired at now: someone gave the
	// right password and not (yet) the second factor.
	OpenChallengeSince(ctx context.Context, userID uuid.UUID, since, now time.Time) (bool, error)

	// CreatePasskey inserts p. EConflict when its credential id is taken,
	// ENotFound when its user does not exist.
	CreatePasskey(ctx context.Context, p *Passkey) error
	// Passkeys returns the user's passkeys, oldest first. Inside InTx they
	// stay locked against other writers until it ends.
	Passkeys(ctx context.Context, userID uuid.UUID) ([]*Passkey, error)
	// PasskeyByCredentialID returns the passkey with the credential id,
	// locked inside InTx. ENotFound when there is none.
	PasskeyByCredentialID(ctx context.Context, credentialID []byte) (*Passkey, error)
	// UpdatePasskey writes Name, SignCount, BackupState and LastUsedAt of p.
	// ENotFound when it does not exist.
	UpdatePasskey(ctx context.Context, p *Passkey) error
	// DeletePasskey deletes a passkey. ENotFound when it does not exist.
	DeletePasskey(ctx context.Context, id uuid.UUID) error
	// DeleteUserPasskeys deletes every passkey of the user and returns how
	// many there were.
	DeleteUserPasskeys(ctx context.Context, userID uuid.UUID) (int, error)

	// CreateWebAuthnChallenge inserts c. EConflict when its digest is taken,
	// ENotFound when its user or login challenge does not exist.
	CreateWebAuthnChallenge(ctx context.Context, c *WebAuthnChallenge) error
	// WebAuthnChallenge returns the ceremony whose challenge digest is
	// given, locked inside InTx after its user if it has one (see InTx).
	// ENotFound when there is none.
	WebAuthnChallenge(ctx context.Context, digest string) (*WebAuthnChallenge, error)
	// UseWebAuthnChallenge writes UsedAt of c. ENotFound when it does not
	// exist.
	UseWebAuthnChallenge(ctx context.Context, c *WebAuthnChallenge) error
	// VoidWebAuthnChallenges sets UsedAt to at on the user's ceremonies of
	// purpose not yet used (expired ones too), so that none finishes.
	VoidWebAuthnChallenges(ctx context.Context, userID uuid.UUID, purpose ChallengePurpose, at time.Time) error

	// CreateClient inserts c. EConflict when its id is taken.
	CreateClient(ctx context.Context, c *OAuthClient) error
	// OAuthClient returns the client with the id. ENotFound when there is none.
	OAuthClient(ctx context.Context, id string) (*OAuthClient, error)
	// SharedClient is OAuthClient that, inside InTx, holds the client
	// against deletion and change until the transaction ends, without
	// excluding other transactions that hold it so (a shared lock).
	SharedClient(ctx context.Context, id string) (*OAuthClient, error)
	// OAuthClients returns every client, oldest first.
	OAuthClients(ctx context.Context) ([]*OAuthClient, error)
	// UpdateClient writes every field of c but ID and CreatedAt. ENotFound
	// when it does not exist.
	UpdateClient(ctx context.Context, c *OAuthClient) error
	// DeleteClient deletes a client with its consents, pending requests and
	// codes. ENotFound when it does not exist.
	DeleteClient(ctx context.Context, id string) error

	// SaveConsent inserts c, or replaces the scopes and time of the user's
	// consent to its client. ENotFound when the user or client does not exist.
	SaveConsent(ctx context.Context, c *Consent) error
	// Consent returns the user's consent to the client. ENotFound when there is none.
	Consent(ctx context.Context, userID uuid.UUID, clientID string) (*Consent, error)
	// DeleteConsent withdraws the user's consent to the client. ENotFound
	// when there is none.
	DeleteConsent(ctx context.Context, userID uuid.UUID, clientID string) error

	// CreateAuthRequest inserts r. ENotFound when its client does not exist.
	CreateAuthRequest(ctx context.Context, r *AuthRequest) error
	// AuthRequest returns the request with the id. ENotFound when there is none.
	AuthRequest(ctx context.Context, id uuid.UUID) (*AuthRequest, error)
	// DeleteAuthRequest deletes a finished request. ENotFound when it does not exist.
	DeleteAuthRequest(ctx context.Context, id uuid.UUID) error

	// CreateAuthCode inserts c. EConflict when its digest is taken,
	// ENotFound when its client, user or session does not exist.
	CreateAuthCode(ctx context.Context, c *AuthCode) error
	// AuthCode returns the code whose digest is given, locked inside InTx
	// so that two redemptions never both see it unused, after its user (see
	// InTx). ENotFound when there is none.
	AuthCode(ctx context.Context, digest string) (*AuthCode, error)
	// UpdateAuthCode writes UsedAt and IssuedSessionID of c. ENotFound when
	// it does not exist.
	UpdateAuthCode(ctx context.Context, c *AuthCode) error

	// BrowserSession returns the session whose browser cookie has the
	// digest. ENotFound when there is none.
	BrowserSession(ctx context.Context, digest string) (*Session, error)
	// SetBrowserDigest makes a session a browser sign-in whose cookie has
	// the digest. ENotFound when the session does not exist, EConflict when
	// the digest is taken.
	SetBrowserDigest(ctx context.Context, id uuid.UUID, digest string) error
	// RevokeClientSessions ends, at at, every unrevoked session the client
	// started for the user (uuid.Nil: for every user) and returns their ids.
	RevokeClientSessions(ctx context.Context, clientID string, userID uuid.UUID, at time.Time) ([]uuid.UUID, error)
	// Consents returns the user's consents, newest first.
	Consents(ctx context.Context, userID uuid.UUID) ([]*Consent, error)

	// PublishRevocation records rev's feed events (rev.Events) and tells
	// every instance of rev when the transaction commits (PostgreSQL
	// NOTIFY). Inside InTx the events get their ids in commit order.
	PublishRevocation(ctx context.Context, rev Revocation) error
}

// SecurityLogFilter selects security-log rows; zero fields match anything.
type SecurityLogFilter struct {
	UserID    uuid.UUID
	EventType EventType
	Result    Result
	Since     time.Time // at or after
	Until     time.Time // before
	After     *Cursor   // continue after this row (newest-first order)
	Limit     int       // at most this many rows; 0 means DefaultListLimit
}

// UserFilter selects users; zero fields match anything.
type UserFilter struct {
	Email  string // a case-insensitive part of the address
	Status AccountStatus
	After  *Cursor // continue after this row (newest-first order)
	Limit  int     // 0 means DefaultListLimit
}

// MailFilter selects outbox mails.
type MailFilter struct {
	Dead  bool    // dead mails; otherwise the pending ones
	After *Cursor // continue after this row (newest-first order)
	Limit int     // 0 means DefaultListLimit
}

// Cursor is a position in a newest-first list: the time and id of the last
// row of the previous page.
type Cursor struct {
	Time time.Time `json:"t"`
	ID   uuid.UUID `json:"id"`
}

// String encodes the cursor as the opaque text clients pass back.
func (c Cursor) String() string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

// ParseCursor decodes a cursor that String made. EInvalid otherwise.
func ParseCursor(s string) (*Cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	var c Cursor
	if err != nil || len(b) > 200 || json.Unmarshal(b, &c) != nil || c.ID == uuid.Nil || c.Time.IsZero() ||
		!writableYear(c.Time) {
		return nil, invalidField("cursor", "is not a cursor this service returned")
	}
	return &c, nil
}

// writableYear reports whether t falls in the years 1 to 9999 in UTC: the
// years RFC 3339 (so an audit row's JSON) can write, and in which SQLite,
// which compares times as text, orders them as PostgreSQL does. Times from
// outside (filters, cursors, a lock's end) are refused past them.
func writableYear(t time.Time) bool {
	y := t.UTC().Year()
	return y >= 1 && y <= 9999
}

// UserRows receives the rows that refer to a user, for the GDPR export.
// Store.UserData calls the functions in the order of the fields, each table
// oldest first; a nil function skips its table.
type UserRows struct {
	User func(*User) error
	// ConsentLogs are the security-log rows that record a consent: the
	// successful registration and every consent_updated.
	ConsentLogs        func(*SecurityLog) error
	Sessions           func(*Session) error
	Tokens             func(*Token) error
	VerificationTokens func(*VerificationToken) error
	SecurityLogs       func(*SecurityLog) error
	Mails              func(*OutboxMail) error
	// Factors come without their Secret.
	Factors       func(*Factor) error
	RecoveryCodes func(*RecoveryCode) error
	MFAChallenges func(*MFAChallenge) error
	// Passkeys come with their public keys and credential ids, which the
	// export leaves out.
	Passkeys           func(*Passkey) error
	WebAuthnChallenges func(*WebAuthnChallenge) error
	Consents           func(*Consent) error
	// AuthCodes come with their Digest; the export leaves it out.
	AuthCodes func(*AuthCode) error
	// RevocationEvents are the feed's notices that the user's sessions, or
	// one of them, ended (kept until the tokens they affect expire).
	RevocationEvents func(*RevocationEvent) error
}

// PurgeRequest says what retention deletes.
type PurgeRequest struct {
	LogsBefore    time.Time // security logs older than this; erased accounts unchanged since then, once no log row or session names them
	ExpiredBefore time.Time // tokens, verification tokens and sessions that ended before this
	Now           time.Time // revocation events expired by now, but the newest (the feed's head: LastRevocationEventID) unless created before LogsBefore
	Batch         int       // rows per statement (at most: a store may take fewer; 0: the store's number), so that no lock is held long
	DryRun        bool      // count only
}

// PurgeResult counts what retention deleted (or would delete).
type PurgeResult struct {
	SecurityLogs       int  `json:"security_logs"`
	Tokens             int  `json:"jwt_tokens"`
	VerificationTokens int  `json:"verification_tokens"`
	MFAChallenges      int  `json:"mfa_challenges"`
	WebAuthnChallenges int  `json:"webauthn_challenges"`
	AuthRequests       int  `json:"oauth_auth_requests"`
	AuthCodes          int  `json:"oauth_codes"`
	Sessions           int  `json:"sessions"`
	RevocationEvents   int  `json:"revocation_events"`
	DeadMails          int  `json:"dead_mails"`
	ErasedAccounts     int  `json:"erased_accounts"`   // tombstones with nothing left about them
	Skipped            bool `json:"skipped,omitempty"` // another instance was purging
	// Deferred names the tables where rows due for deletion were left
	// because a flow held them (or a row their deletion cascades to):
	// the next run deletes them.
	Deferred []string `json:"deferred,omitempty"`
}

// List sizes (SPEC §5).
const (
	DefaultListLimit = 50
	MaxListLimit     = 200
)

// KeyedRows is what rows only the keys directory's secrets open: the
// confidential clients, whose secrets are digested under the refresh-token
// key, and whether any TOTP factor (sealed) or recovery code (digested)
// was made under the MFA key. A directory that lost a key such rows need —
// mistyped, not mounted — must not get a new one made in its place.
type KeyedRows struct {
	ConfidentialClients int
	MFA                 bool
	// Checks are the check values recorded of the secrets, by name: the
	// rows were made under keys with these checks (RecordKeyChecks).
	Checks map[string]KeyCheck
}

// KeyCheck is the check value of one of the keys directory's secrets
// (token.Secret.Check): a digest that tells the secret apart from any
// other without telling anything of it. A database records the check of
// each secret its rows are made under, so that an instance holding another
// key (a foreign or newly made keys directory) is refused at start.
type KeyCheck struct {
	Name       string // the secret's file name
	Value      string
	RecordedAt time.Time
}

// KeyChecksByName indexes checks by name, for stores' KeyChecks.
func KeyChecksByName(checks []KeyCheck) map[string]KeyCheck {
	m := make(map[string]KeyCheck, len(checks))
	for _, c := range checks {
		m[c.Name] = c
	}
	return m
}
