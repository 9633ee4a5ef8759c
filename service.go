package authd

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/authd/authd/internal/pace"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/google/uuid"
	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"
)

// Config is what the flows need to know of the configuration.
type Config struct {
	PublicURL            string // base of the links in mails, without a trailing slash
	AccessTokenTTL       time.Duration
	RefreshTokenTTL      time.Duration
	SessionMaxAge        time.Duration
	RefreshReuseGrace    time.Duration
	RequireVerifiedEmail bool
	LockoutThreshold     int
	LockoutDuration      time.Duration
	MaxSessions          int // active sessions per user; 0: no limit
	// RevocationMaxLag: Authenticate answers EUnavailable while the
	// revocation set has not caught up with the database (LoadRevocations,
	// CatchUpRevocations) for longer than this, since a revocation another
	// instance committed meanwhile could be missing: an instance cut off
	// from the database would otherwise take a token revoked elsewhere
	// (introspection, which reads nothing else). 0: never checked, for a
	// process that does not catch up (commands, tests).
	RevocationMaxLag time.Duration
	// RefreshKey derives each rotated refresh token from its parent (SPEC
	// 6.4); every instance must share it. Empty: a random key of this
	// process, which suits one instance only.
	RefreshKey []byte
	// MFAKey (32 bytes) encrypts TOTP secrets and keys recovery-code
	// digests; every instance must share it. Empty: a random key of this
	// process, which suits tests only: factors die with the process.
	MFAKey []byte
	// TOTPIssuer names authd in authenticator apps (the host of
	// AUTHD_ISSUER); empty: the host of PublicURL.
	TOTPIssuer string
	// WebAuthnRPID is the WebAuthn relying party id (a domain, never an IP
	// address) and WebAuthnOrigins the origins of the pages that use
	// passkeys; empty RP id: passkeys are off. CheckRelyingParty validates
	// them.
	WebAuthnRPID    string
	WebAuthnOrigins []string
	// Audience is the aud of every access token (AUTHD_AUDIENCE). No
	// OpenID client may take it as its id: that client's ID tokens would
	// carry the aud of an access token (see CreateClient).
	Audience string
}

// Passwords checks, hashes and verifies passwords. Hashing is expensive and
// bounded: Hash and Verify return EUnavailable (with RetryAfter) when the
// hashing queue is full.
type Passwords interface {
	// Check returns EWeakPassword, saying why on the field "password" (a
	// flow renames it to its own), for a password outside the policy.
	Check(password, email string) error
	Hash(ctx context.Context, password string) (string, error)
	// Verify reports whether password matches hash, and whether hash should be
	// replaced because the configured cost changed.
	Verify(ctx context.Context, password, hash string) (ok, rehash bool, err error)
	// VerifyDummy spends the time of a Verify, for logins of unknown emails.
	VerifyDummy(ctx context.Context, password string) error
	// Same reports whether two passwords are one as Hash sees them (after
	// its normalisation).
	Same(a, b string) bool
}

// AccessClaims are the claims of an access token that the service relies on.
type AccessClaims struct {
	JTI       string
	UserID    uuid.UUID
	SessionID uuid.UUID
	IssuedAt  time.Time
	ExpiresAt time.Time
	Issuer    string
	Audience  string
	AMR       []string // RFC 8176: pwd, otp, mfa
	// ClientID and Scope: the OpenID Connect client the token was issued to
	// and what it was granted (RFC 9068 client_id and scope); empty for
	// authd's own logins. Such a token is the client's, for resource servers
	// and UserInfo: the account API refuses it (ClientToken).
	ClientID string
	Scope    []string
}

// ClientToken reports whether the token was issued to an OpenID Connect
// client rather than by authd's own login.
func (a *AccessClaims) ClientToken() bool { return a.ClientID != "" }

// AccessTokens issues and checks signed access tokens (JWTs).
type AccessTokens interface {
	Issue(c AccessClaims) (string, error)
	// Verify checks signature, algorithm, key, issuer, audience and times.
	// EInvalidToken for any failure.
	Verify(token string, now time.Time) (*AccessClaims, error)
}

// MailKind says which mail to send.
type MailKind string

// The mails of the flows.
const (
	MailVerifyEmail     MailKind = "verify_email"
	MailPasswordReset   MailKind = "password_reset"
	MailRegisterNotice  MailKind = "register_notice" // someone tried to register with this address
	MailAccountLocked   MailKind = "account_locked"
	MailPasswordChanged MailKind = "password_changed"
	MailMFAReset        MailKind = "mfa_reset"      // an administrator removed the second factors
	MailFactorChanged   MailKind = "factor_changed" // the user added or removed a second factor
	// MailEmailChange carries the link that moves an account to the
	// address it is sent to.
	MailEmailChange MailKind = "email_change"
	// MailEmailChangeTaken tells an address that has an account that
	// someone asked to move another account to it.
	MailEmailChangeTaken MailKind = "email_change_taken"
	// MailEmailChangeNotice tells an account's address that it is to be
	// replaced by NewEmail, or was (Done).
	MailEmailChangeNotice MailKind = "email_change_notice"
)

// Mail is one message to one address. Link carries the one-time link of
// verification and reset mails; it is secret and never logged, except by the
// development mailer.
type Mail struct {
	Kind MailKind
	To   string
	// UserID is the account the mail is about (uuid.Nil once it is gone),
	// which a mailer that keeps copies (MailArchive) files them under.
	UserID uuid.UUID
	Link   string
	Until  time.Time // with MailAccountLocked: when the lock ends
	// At is when what the mail tells of happened (when it was queued).
	At time.Time
	// Removed is what an administrator's reset took (with MailMFAReset).
	Removed MFARemoval
	// Change is what the user changed (with MailFactorChanged).
	Change FactorChange
	// AfterCodes says wrong second-factor codes, given past the password
	// or in a signed-in session, set the lock (with MailAccountLocked).
	AfterCodes bool
	// NewEmail is the address that replaces the one the mail goes to, and
	// Done says it has (with MailEmailChangeNotice); Voided, instead, that
	// its link ran out of password attempts and the change is off.
	NewEmail string
	Done     bool
	Voided   bool
	// ByAdministrator, with Done: support moved the account (NewEmail is
	// then "").
	ByAdministrator bool
}

// FactorChange is what a user changed of their second factors, for the
// notice mailed whatever the address's mail budget: a factor an intruder
// adds outlives a password reset, so the owner must hear of it.
type FactorChange string

// The changes a notice tells of.
const (
	ChangeTOTPEnabled    FactorChange = "totp_enabled"
	ChangeTOTPDisabled   FactorChange = "totp_disabled"
	ChangePasskeyAdded   FactorChange = "passkey_added"
	ChangePasskeyRemoved FactorChange = "passkey_removed"
	ChangeCodesReplaced  FactorChange = "recovery_codes_replaced"
)

// MFARemoval is what an administrator's MFA reset removed, for the notice:
// counts only, never a secret or a factor's name.
type MFARemoval struct {
	TOTP          bool // a confirmed authenticator app
	Passkeys      int
	RecoveryCodes int // unused ones
}

// IsZero reports whether nothing was removed.
func (r MFARemoval) IsZero() bool { return r == MFARemoval{} }

// Mailer delivers mail; the outbox sender calls it. A failure is retried
// (MaxMailAttempts), unless it wraps ErrUndeliverable.
type Mailer interface {
	Send(ctx context.Context, m Mail) error
}

// ErrUndeliverable is wrapped by a Mailer's error when the mail can never
// be delivered: the relay refused its recipient for good (the mailbox or
// domain does not exist). The outbox marks it dead at once instead of
// trying it again for hours.
var ErrUndeliverable = errors.New("the recipient's address cannot receive mail")

// RateLimiter counts events per key in fixed windows.
type RateLimiter interface {
	// Allow counts one event for key and returns 0 when it is within limit
	// per window, or how long until the window resets.
	Allow(ctx context.Context, key string, limit int, window time.Duration) (retryAfter time.Duration, err error)
	// AllowUnder is Allow that counts the event only while the window
	// holds fewer than limit, in one step with the check: past it the
	// count is left as it is (Allow's refusals raise it).
	AllowUnder(ctx context.Context, key string, limit int, window time.Duration) (retryAfter time.Duration, err error)
	// Refund takes back one event Allow counted for key, for a request that
	// did nothing after all (it met an outage): the window keeps its end,
	// and a window ended or a count at zero stays as it is.
	Refund(ctx context.Context, key string) error
}

// Client is who made a request, for the audit log and the rate limits.
type Client struct {
	IP        string
	UserAgent string
}

// Service runs the flows. Each flow writes its security-log row in the same
// transaction as its effect.
type Service struct {
	cfg         Config
	store       Store
	clock       Clock
	passwords   Passwords
	tokens      AccessTokens
	mailer      Mailer
	archive     MailArchive // nil: no copies kept
	limiter     RateLimiter // nil: no rate limits
	lockouts    Lockouts    // nil: emails without an account never lock
	refreshKey  []byte
	mfaKey      []byte
	revocations *RevocationSet
	rev         revocationSync     // keeps revocations current (revocation.go)
	webauthn    *webauthn.WebAuthn // nil: passkeys off
	logger      *slog.Logger
	hooks       Hooks
	wake        chan struct{} // tells the outbox sender that mail is waiting
	mailPace    pace.Pace     // how long a mail request that mails takes (mailRequest)
	// How long a login refused for a wrong password takes, from past its
	// limits to its answer, for an account and for an address without one
	// (Login).
	accountFails, unknownFails pace.Pace
	// overBudget remembers the refresh tokens refused for their session's
	// budget, to refuse them again without the database (refresh.go).
	overBudget overBudget
	sleep      func(ctx context.Context, d time.Duration)
	// halt ends when endFlows is called (EndFlows).
	halt     context.Context
	endFlows context.CancelFunc
	// listings holds a slot for each administrator's listing reading now
	// (listRead).
	listings chan struct{}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// together runs work and answers, when work says its answer is padded,
// once deadline (as it stood before work began: what a run teaches must
// not shape its own answer; at most maxPadding) has passed since it began.
// work also names the pace its run teaches, nil for none. Callers detach
// ctx first: a client that half-closes must not cut the padding short.
func (s *Service) together(ctx context.Context, deadline time.Duration, work func() (pad bool, teach *pace.Pace, err error)) error {
	start, deadline := time.Now(), min(deadline, maxPadding)
	pad, teach, err := work()
	took := time.Since(start)
	if teach != nil {
		teach.Learn(took)
	}
	if pad && took < deadline {
		s.sleep(ctx, deadline-took)
	}
	return err
}

// maxPadding bounds how long an answer waits for its deadline: work that
// queued behind a burst of writes must not make every later answer wait
// as long, past the server's write timeout.
const maxPadding = 500 * time.Millisecond

// failDeadline is when a refused login answers (Login): the later of the
// deadlines of accounts' and of unknown addresses' wrong passwords.
func (s *Service) failDeadline() time.Duration {
	return max(s.accountFails.Deadline(), s.unknownFails.Deadline())
}

// Hooks are told what the service does, for metrics. Either may be nil.
type Hooks struct {
	Event func(EventType, Result)   // each security event, once committed
	Mail  func(MailKind, MailEvent) // each delivery attempt
}

// Deps are the adapters a Service runs on. Limiter may be nil (limits off),
// and Lockouts (emails without an account never lock).
type Deps struct {
	Store     Store
	Clock     Clock
	Passwords Passwords
	Tokens    AccessTokens
	Mailer    Mailer
	// Archive holds copies of mails sent before, which erasure and
	// retention reach (SPEC §7): the development mailer's files, also once
	// a real mailer sends instead. nil: the Mailer, if it is one.
	Archive  MailArchive
	Limiter  RateLimiter
	Lockouts Lockouts
	Logger   *slog.Logger
	Hooks    Hooks
	// Sleep pads answers that must not be told apart by their timing,
	// ending early with ctx (nobody waits for the answer then); nil is a
	// timer (tests record instead).
	Sleep func(ctx context.Context, d time.Duration)
}

// NewService returns a Service. Call LoadRevocations before serving.
func NewService(cfg Config, d Deps) *Service {
	if d.Clock == nil {
		d.Clock = SystemClock{}
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Sleep == nil {
		d.Sleep = sleep
	}
	if a, ok := d.Mailer.(MailArchive); ok && d.Archive == nil {
		d.Archive = a
	}
	key := cfg.RefreshKey
	if len(key) == 0 {
		key = make([]byte, 32)
		rand.Read(key) // never fails (crypto/rand)
	}
	mfaKey := cfg.MFAKey
	if len(mfaKey) != 32 {
		mfaKey = make([]byte, 32)
		rand.Read(mfaKey) // never fails (crypto/rand)
	}
	var rp *webauthn.WebAuthn
	if cfg.WebAuthnRPID != "" {
		var err error
		if rp, err = newRelyingParty(cfg.WebAuthnRPID, cfg.WebAuthnOrigins); err != nil {
			// Configuration checks CheckRelyingParty first; here it can
			// only be a test's mistake.
			d.Logger.Error("passkeys are off: invalid WebAuthn relying party", "err", err)
		}
	}
	s := &Service{
		webauthn: rp, cfg: cfg, store: d.Store, clock: d.Clock, passwords: d.Passwords, tokens: d.Tokens,
		mailer: d.Mailer, archive: d.Archive, limiter: d.Limiter, lockouts: d.Lockouts, refreshKey: key, mfaKey: mfaKey,
		logger: d.Logger, hooks: d.Hooks, sleep: d.Sleep,
		revocations: NewRevocationSet(revocationLifetime(cfg.AccessTokenTTL)),
		rev:         revocationSync{epoch: time.Now(), load: make(chan struct{}, 1)}, wake: make(chan struct{}, 1),
		listings: make(chan struct{}, adminListingsAtOnce),
	}
	s.halt, s.endFlows = context.WithCancel(context.Background())
	s.mailPace.Set(firstMailPace, firstMailPace/4) // until requests that mail say how long they take
	// Until wrong passwords say how long they take.
	s.accountFails.Set(firstFailPace, firstFailPace/4)
	s.unknownFails.Set(firstFailPace, firstFailPace/4)
	return s
}

// firstMailPace is what a mail request that mails is taken to last before
// one has: generous, so that the first answers after a start are padded
// too; requests that mail bring it to their own time.
const firstMailPace = 20 * time.Millisecond

// firstFailPace is, in the same way, what a login refused for a wrong
// password is taken to last before one has been (a check of the default
// argon2id cost takes about that); refusals bring it to their own time.
const firstFailPace = 20 * time.Millisecond

// Revocations is the in-memory revocation set the service checks tokens against.
func (s *Service) Revocations() *RevocationSet { return s.revocations }

// VerificationRequired reports whether logins wait for the address to be
// verified (Config.RequireVerifiedEmail).
func (s *Service) VerificationRequired() bool { return s.cfg.RequireVerifiedEmail }

// detachedFlowTimeout bounds a flow detach has freed from its client.
const detachedFlowTimeout = 30 * time.Second

// detach frees ctx from the client's cancellation (keeping its values),
// within detachedFlowTimeout and until EndFlows. Every flow that checks a password, a code or
// a passkey, every flow padded to a deadline (resend, forgot) and the
// refresh (see refresh) calls it first, at the top of its public method, so
// that the whole flow — the check, the failure's count and row, the
// padding, a rehash, the step-up's re-check in its transaction, a rotation
// — finishes whatever the client does: an HTTP server cancels a request's
// context when the client half-closes its connection, while the answer can
// still be read, so a flow that gave up then would skip the count (no
// lockout) and answer sooner or later by outcome (a timing oracle).
func (s *Service) detach(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), detachedFlowTimeout)
	stop := context.AfterFunc(s.halt, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// EndFlows ends the flows detach freed from their clients, and at once
// those that start after it: at a stop's deadline, so that they give
// their database connections back (their transactions roll back) and the
// database can close.
func (s *Service) EndFlows() { s.endFlows() }

func (s *Service) now() time.Time { return s.clock.Now().UTC().Truncate(time.Microsecond) }

// NormalizeEmail validates an address (RFC 5322 addr-spec, no display
// name, at most 254 bytes: SMTP's bound, RFC 5321, where SPEC 6.2 says
// characters) and returns its form in Unicode NFC,
// lower-cased, under which it is stored and looked up: addresses that are
// the same text (ü written as one character or as u and a combining
// diaeresis) or differ only in case are one account. Addresses under the
// reserved .invalid domain are refused: erasure's tombstones live there.
func NormalizeEmail(s string) (string, error) {
	s, err := LookupEmail(s)
	if err != nil {
		return "", err
	}
	// No mail reaches .invalid (RFC 6761 §6.4), and erasure gives accounts
	// addresses there (Tombstone): one registered in its place first would
	// make the erasure of the account whose id it names fail for good.
	if reservedDomain(s) {
		return "", invalidField("email", "must be an address that can receive mail (.invalid is reserved, RFC 6761)")
	}
	return s, nil
}

// reservedDomain reports whether the address email (lower-cased) is under
// the .invalid top-level domain, which no mail reaches (RFC 6761 §6.4):
// erasure's tombstones and the accounts migration 18 moved aside.
func reservedDomain(email string) bool {
	domain := email[strings.LastIndexByte(email, '@')+1:]
	return domain == "invalid" || strings.HasSuffix(domain, ".invalid")
}

// newAddress is email as an account may newly take it: normalised
// (NormalizeEmail) and held to checkNewAddress.
func newAddress(email string) (string, error) {
	email, err := NormalizeEmail(email)
	if err == nil {
		err = checkNewAddress(email)
	}
	return email, err
}

// errSameAddress refuses a move to the account's own address; field names
// the address in the request.
func errSameAddress(field string) error {
	return invalidField(field, "is already the account's address")
}

// idnaLookup maps a domain as relays do (UTS #46, nontransitional, as
// idna.Lookup), its DNS form held to DNS's lengths.
var idnaLookup = idna.New(idna.MapForLookup(), idna.BidiRule(), idna.VerifyDNSLength(true))

// checkNewAddress holds an address an account is registered under to what
// mail can reach and what reads as itself: in Unicode NFKC (no fullwidth
// or other compatibility letters, which a relay would map to another
// address), nothing that shows nothing (hiddenFormat: "a\u200b@example.org"
// reads as another account's address), a local part of at most 64 bytes
// (RFC 5321 §4.5.3.1), a domain of DNS labels (ASCII ones: letters, digits
// and inner hyphens, at most 63 bytes; IDN labels as UTS #46 maps them,
// at most 63 bytes in their xn-- form), no address literal
// ([127.0.0.1]), no all-digit top-level label, and no xn-- label (an
// internationalised domain is taken as it reads). email is normalised
// (NormalizeEmail). Only registration applies it: accounts made before it
// still sign in, reset and verify.
func checkNewAddress(email string) error {
	local, domain, _ := strings.Cut(email, "@")
	ok := len(local) <= 64 && norm.NFKC.IsNormalString(email) && !hiddenFormat([]rune(email))
	labels := strings.Split(domain, ".")
	for _, l := range labels {
		ascii := !strings.ContainsFunc(l, func(r rune) bool { return r > unicode.MaxASCII })
		ok = ok && l != "" && (!ascii || len(l) <= 63) && !strings.HasPrefix(l, "-") && !strings.HasSuffix(l, "-") &&
			!strings.ContainsFunc(l, func(r rune) bool {
				return r <= unicode.MaxASCII && !('a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '-')
			})
	}
	if tld := labels[len(labels)-1]; !ok || strings.Trim(tld, "0123456789") == "" {
		return invalidField("email", "must be an address that can receive mail: a local part of at most 64 bytes, "+
			"a domain of DNS names, nothing invisible, no fullwidth or other compatibility letters")
	}
	// One mailbox, two spellings: bücher.example is xn--bcher-kva.example
	// on the wire. Accounts take the one people write, so that an address
	// cannot hold a second account under the other. Likewise the
	// ideographic full stop, which IDNA (UTS #46) reads as a dot: its
	// fullwidth and halfwidth forms are not NFKC, refused above.
	if strings.ContainsRune(domain, '\u3002') {
		return invalidField("email", "must separate a domain's labels with . (not 。)")
	}
	for _, l := range labels {
		if strings.HasPrefix(l, "xn--") {
			return invalidField("email", "must write an internationalised domain as it reads (bücher.example), not in its xn-- form")
		}
	}
	// Relays write a Unicode domain in its DNS form (UTS #46), which drops
	// or maps some code points: 例\uFE00.example is 例.example on the
	// wire, ᾳ.example is αι.example. A domain is taken only as the mapping
	// gives it back, or one mailbox would hold endless accounts (and mail
	// budgets).
	if strings.ContainsFunc(domain, func(r rune) bool { return r > unicode.MaxASCII }) {
		wire, err := idnaLookup.ToASCII(domain)
		back, mapped := "", ""
		if err == nil {
			back, err = idnaLookup.ToUnicode(wire)
		}
		if err == nil { // held as accounts hold addresses: UTS #46 upper-cases Cherokee
			mapped, err = NormalizeEmail(local + "@" + back)
		}
		if err != nil {
			return invalidField("email", "must have a domain that internationalised domain names allow "+
				"(DNS labels of at most 63 bytes in their xn-- form)")
		}
		if mapped != email {
			return invalidField("email", "must write its domain as mail relays read it: "+mapped[strings.LastIndexByte(mapped, '@')+1:])
		}
	}
	return nil
}

// LookupEmail is NormalizeEmail for administrators' tools, which look
// accounts up by the addresses they hold: erasure's tombstones and the
// accounts migration 18 moved aside are under .invalid.
func LookupEmail(s string) (string, error) {
	invalid := invalidField("email", "must be an email address such as name@example.org")
	tooLong := invalidField("email", fmt.Sprintf("must be at most %d bytes long", MaxEmailLength))
	// Bounded before any work on it; the bound is checked exactly on the
	// stored form, which a decomposed address exceeds (ü: 3 bytes, not 2).
	if len(s) > 4*MaxEmailLength {
		return "", tooLong
	}
	if !utf8.ValidString(s) {
		return "", invalid
	}
	s = norm.NFC.String(s)
	if s == "" || strings.ContainsAny(s, " \t\r\n<>\"") {
		return "", invalid
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s {
		return "", invalid
	}
	local, domain, ok := strings.Cut(s, "@")
	if !ok || local == "" || domain == "" || strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") {
		return "", invalid
	}
	s = norm.NFC.String(strings.ToLower(s))
	if len(s) > MaxEmailLength {
		return "", tooLong
	}
	return s, nil
}

// opaqueTokenBytes is the randomness of refresh, verification and reset tokens.
const opaqueTokenBytes = 32

// newOpaqueToken returns a random token for the client and the digest under
// which it is stored.
func newOpaqueToken() (raw, digest string) { return newOpaqueTokenOf(opaqueTokenBytes) }

// changeTokenBytes is the randomness of a link that moves an account to a
// new address: a byte more than the other links', so that a release that
// knows no address change (an older instance, in a rolling upgrade)
// refuses it as malformed rather than redeem it as a verification of the
// old address.
const changeTokenBytes = opaqueTokenBytes + 1

// newOpaqueTokenOf is newOpaqueToken with n bytes of randomness.
func newOpaqueTokenOf(n int) (raw, digest string) {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand)
	raw = base64.RawURLEncoding.EncodeToString(b)
	return raw, Digest(raw)
}

// Digest is the SHA-256 hex digest under which an opaque token is stored.
// The tokens carry 256 bits of randomness, so a plain hash suffices: there is
// nothing to brute-force.
func Digest(raw string) string {
	sum := sha256.Sum256([]byte(raw))
	return hex.EncodeToString(sum[:])
}

// opaqueDigest returns the digest of a token a client presented, or
// EInvalidToken when it cannot be one of ours (so that junk costs nothing).
func opaqueDigest(raw string) (string, error) {
	return digestOf(raw, opaqueTokenBytes)
}

// linkDigest is opaqueDigest for the tokens of mailed links, which may be
// address changes' (changeTokenBytes).
func linkDigest(raw string) (string, error) {
	if IsChangeLink(raw) {
		return digestOf(raw, changeTokenBytes)
	}
	return digestOf(raw, opaqueTokenBytes)
}

// IsChangeLink reports whether raw has the shape of a link's token that
// moves an account to a new address (changeTokenBytes), whether or not it
// is, or ever was, one: a page can then speak of a dead one as such.
func IsChangeLink(raw string) bool {
	return len(raw) == base64.RawURLEncoding.EncodedLen(changeTokenBytes)
}

// digestOf returns the digest of raw, a token of n random bytes, or
// EInvalidToken when it cannot be one.
func digestOf(raw string, n int) (string, error) {
	if len(raw) != base64.RawURLEncoding.EncodedLen(n) {
		return "", errInvalidToken
	}
	if _, err := base64.RawURLEncoding.DecodeString(raw); err != nil {
		return "", errInvalidToken
	}
	return Digest(raw), nil
}

var errInvalidToken = &Error{Code: EInvalidToken, Message: "The token is invalid, expired or revoked."}

// limit applies one rate limit; with limits off it allows everything.
func (s *Service) limit(ctx context.Context, key string, n int, window time.Duration) error {
	if s.limiter == nil {
		return nil
	}
	wait, err := s.limiter.Allow(ctx, key, n, window)
	if err != nil {
		// A broken limiter must not lock everyone out; log and let it pass.
		s.logger.WarnContext(ctx, "rate limiter failed", "err", err)
		return nil
	}
	if wait > 0 {
		return rateLimited(wait)
	}
	return nil
}

// rateLimited is the refusal of a request over a rate limit for wait.
func rateLimited(wait time.Duration) *Error {
	return &Error{Code: ERateLimited, Message: "Too many requests; try again later.", RetryAfter: wait}
}

// The rate limits of SPEC §6.7.
const (
	ipLimit        = 30 // requests per minute per client IP on each limited endpoint
	loginPerEmail  = 10 // login attempts per minute per email
	mailsPerEmail  = 3  // mails per hour per address
	reauthPerUser  = 10 // password checks per minute per user outside login
	ipLimitWindow  = time.Minute
	mailLimitRange = time.Hour
)

// labelledMAC is HMAC-SHA-256 under key of label and parts, each part after
// a NUL: every use has its own label, so that no digest of one kind stands
// for another, and the NULs keep parts from running into each other. These
// are the bytes the digests stored since v1 were made of.
func labelledMAC(key []byte, label string, parts ...string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(label))
	for _, p := range parts {
		m.Write([]byte{0})
		m.Write([]byte(p))
	}
	return m.Sum(nil)
}

// emailKey names an address in the rate-limit store by a keyed digest
// (HMAC-SHA-256 under the shared refresh key, with its own label), so that a
// shared store (Redis) never holds addresses, nor digests that a dictionary
// of addresses could reverse.
func (s *Service) emailKey(email string) string {
	return hex.EncodeToString(labelledMAC(s.refreshKey, "authd rate-limit email v1", email)[:16])
}

// limitEmail applies a per-email limit.
func (s *Service) limitEmail(ctx context.Context, kind, email string, n int, window time.Duration) error {
	return s.limit(ctx, s.emailLimitKey(kind, email), n, window)
}

// emailLimitKey is the rate-limit key of one kind of per-email limit.
func (s *Service) emailLimitKey(kind, email string) string { return kind + ":" + s.emailKey(email) }

// spendMail counts one mail to email against the address's mail limit and
// returns ERateLimited past it (refundMail gives it back). Every mail a
// request can make authd send counts, whether or not the address has an
// account, so that no one can flood a mailbox and the count says nothing
// about existence (SPEC 6.7); a notice, as noticeAllowed says.
func (s *Service) spendMail(ctx context.Context, email string) error {
	return s.limitEmail(ctx, "mail", email, mailsPerEmail, mailLimitRange)
}

// noticeAllowed is spendMail for a mail the address's owner did not ask
// for and that carries no way in: the notice of a registration at the
// address or of a lock, an address change's mail to its new address, an
// erasure's notice to an address never verified. Such a mail counts toward
// the same limit but never takes its last mail of the hour, which is kept
// for a link the owner asks for (forgot, resend): otherwise anyone could
// spend the address's mails every hour with registrations at it, moves to
// it or failed logins, and its owner would never get a reset link. A
// notice refused is not counted (AllowUnder: not counted and given back,
// a forgot between the two would find the last mail taken); reports
// whether the notice counted and may go out.
func (s *Service) noticeAllowed(ctx context.Context, email string) bool {
	if s.limiter == nil {
		return true
	}
	wait, err := s.limiter.AllowUnder(ctx, s.emailLimitKey("mail", email), mailsPerEmail-1, mailLimitRange)
	if err != nil {
		// A broken limiter must not lock everyone out (limit).
		s.logger.WarnContext(ctx, "rate limiter failed", "err", err)
		return true
	}
	return wait == 0
}

// refundMail takes back the mail spendMail (or noticeAllowed) counted to
// email when err, the flow's outcome, is an outage (EUnavailable): its
// transaction queued
// nothing, and a user whose client retries a reset through a minute's
// outage must not find the address's mails spent for the hour. Not when
// the flow's time ran out (its context ended): then it may have ended
// while COMMIT was on its way, which the server may have run, and a
// refund there would be a mail past the budget for each (the flows that
// mail detach from their client, so that no client can end them so). A
// connection lost at COMMIT is the same doubt, rare and no one's to cause:
// a mail past the budget then, once. The other limits keep their counts:
// they bound work, which an outage's requests did too (a hash, a round
// trip).
func (s *Service) refundMail(ctx context.Context, err error, email string) {
	s.refundEmailLimit(ctx, err, "mail", email)
}

// refundEmailLimit is refundMail for the per-email limit of kind.
func (s *Service) refundEmailLimit(ctx context.Context, err error, kind, email string) {
	if s.limiter == nil || ErrorCode(err) != EUnavailable ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return
	}
	if err := s.limiter.Refund(ctx, s.emailLimitKey(kind, email)); err != nil {
		s.logger.WarnContext(ctx, "rate limiter failed", "err", err)
	}
}

// limitIP applies the per-IP limit of an endpoint.
func (s *Service) limitIP(ctx context.Context, endpoint string, c Client) error {
	return s.limit(ctx, "ip:"+endpoint+":"+clientKey(c), ipLimit, ipLimitWindow)
}

// clientKey is what the per-IP limits count a client under: its IPv4
// address, or the /64 network of its IPv6 address, since one host commonly
// holds a whole /64 and could otherwise take a fresh address per request.
func clientKey(c Client) string {
	ip, err := netip.ParseAddr(c.IP)
	if err != nil {
		return c.IP
	}
	ip = ip.Unmap()
	if ip.Is4() {
		return ip.String()
	}
	return netip.PrefixFrom(ip.WithZone(""), 64).Masked().String()
}

// audit builds a security-log row for the request's client.
func (s *Service) audit(now time.Time, c Client, event EventType, result Result, user uuid.UUID,
	reason string, context map[string]any) *SecurityLog {
	return NewSecurityLog(now, event, result, user, c.IP, c.UserAgent, reason, context)
}

// link returns a page link carrying a one-time token.
func (s *Service) link(page, token string) string {
	return s.cfg.PublicURL + "/" + page + "?token=" + token
}

// renameField names field to, instead of from, in err's field errors (err
// itself an *Error: a wrapper, which may decide how a transaction ends, is
// never dropped): a rule written for one request's field applied to
// another's. err is left as it is (it may be shared); a renamed copy is
// returned.
func renameField(err error, from, to string) error {
	e, ok := err.(*Error)
	if !ok || !slices.ContainsFunc(e.Fields, func(f FieldError) bool { return f.Field == from }) {
		return err
	}
	renamed := *e
	renamed.Fields = slices.Clone(e.Fields)
	for i := range renamed.Fields {
		if renamed.Fields[i].Field == from {
			renamed.Fields[i].Field = to
		}
	}
	return &renamed
}

// checkPassword applies the password policy and names field in the error.
func (s *Service) checkPassword(field, password, email string) error {
	return renameField(s.passwords.Check(password, email), "password", field)
}
