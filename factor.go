package authd

import (
	"strings"
	"time"

	"github.com/google/uuid"
)

// FactorKind is mfa_factors.kind: a second factor a user can enrol.
type FactorKind string

// The kinds of second factor.
const FactorTOTP FactorKind = "totp"

// Factor is a second factor of a user (table mfa_factors). Secret holds the
// TOTP secret encrypted under the MFA key, never in the clear.
type Factor struct {
	ID          uuid.UUID
	UserID      uuid.UUID
	Kind        FactorKind
	Secret      string // base64 of nonce || AES-256-GCM ciphertext
	Confirmed   bool   // false while the enrolment awaits its first code
	CreatedAt   time.Time
	ConfirmedAt time.Time // zero: not confirmed
	LastUsedAt  time.Time // zero: never used
	LastStep    int64     // the last accepted TOTP time step; codes up to it are refused
}

// RecoveryCode is one single-use recovery code (table mfa_recovery_codes),
// stored as its keyed digest.
type RecoveryCode struct {
	ID        uuid.UUID
	UserID    uuid.UUID
	Digest    string
	CreatedAt time.Time
	UsedAt    time.Time // zero: unused
}

// MFAChallenge is the second step of a login (table mfa_challenges): the
// password was right, and the mfa_token whose digest is Token lets its
// holder finish the login with a second factor.
type MFAChallenge struct {
	ID         uuid.UUID
	Token      string // digest of the mfa_token
	UserID     uuid.UUID
	DeviceInfo string // of the login, for the session it will start
	CreatedAt  time.Time
	ExpiresAt  time.Time
	Failures   int       // wrong codes given with it
	UsedAt     time.Time // zero: not redeemed
}

// MFAChallengeTTL is how long an mfa_token can be redeemed, and
// MaxMFAFailures how many wrong codes it survives. TOTPEnrolmentTTL is how
// long a TOTP enrolment waits for its first code.
const (
	MFAChallengeTTL  = 5 * time.Minute
	MaxMFAFailures   = 5
	TOTPEnrolmentTTL = 10 * time.Minute
)

// As a challenge's Failures, MFAChallengeVoided marks one a new password
// voided, MFAChallengeOutdated one a second factor added since voided, and
// MFAChallengeEnded one an ending of all the account's sessions voided (a
// logout-all, an administrator's lock or revocation, an address move), which ends the
// sign-ins still waiting for their second factor too
// (Queries.VoidOpenMFAChallenges): past MaxMFAFailures, so each is dead as
// any other, and told apart when someone presents it.
const (
	MFAChallengeVoided   = MaxMFAFailures + 1
	MFAChallengeOutdated = MaxMFAFailures + 2
	MFAChallengeEnded    = MaxMFAFailures + 3
)

// Usable reports whether the challenge can still be redeemed at now.
func (c *MFAChallenge) Usable(now time.Time) bool {
	return c.UsedAt.IsZero() && now.Before(c.ExpiresAt) && c.Failures < MaxMFAFailures
}

// The authentication methods of RFC 8176 that authd's logins use.
const (
	AMRPassword = "pwd"
	AMROTP      = "otp"
	AMRMFA      = "mfa"
	AMRHardware = "hwk" // a device-bound passkey: its key cannot leave the authenticator
	AMRSoftware = "swk" // a synced (backup-eligible) passkey: its key can leave the device
)

// FormatAMR is how a session's amr is stored: the methods separated by
// spaces.
func FormatAMR(amr []string) string {
	if len(amr) == 0 {
		return AMRPassword // every login starts with a password
	}
	return strings.Join(amr, " ")
}

// ParseAMR reads a stored amr.
func ParseAMR(s string) []string { return strings.Fields(s) }

// Passkey is a WebAuthn credential of a user (table passkeys). Neither the
// credential id nor the public key is secret, but neither is shown to
// anyone: the user sees the name, dates and whether it is synced.
type Passkey struct {
	ID              uuid.UUID
	UserID          uuid.UUID
	Name            string
	CredentialID    []byte
	PublicKey       []byte // COSE_Key
	AttestationType string
	AAGUID          uuid.UUID
	SignCount       uint32
	BackupEligible  bool     // a synced passkey, whose key can leave the device
	BackupState     bool     // backed up now
	Transports      []string // usb, nfc, ble, internal, hybrid …
	CreatedAt       time.Time
	LastUsedAt      time.Time // zero: never used
}

// ChallengePurpose is webauthn_challenges.purpose: which ceremony a
// challenge belongs to.
type ChallengePurpose string

// The WebAuthn ceremonies.
const (
	PurposeRegister ChallengePurpose = "register" // adding a passkey (bearer)
	PurposeLogin    ChallengePurpose = "login"    // passwordless sign-in
	PurposeMFA      ChallengePurpose = "mfa"      // the second factor after a password
	PurposeStepUp   ChallengePurpose = "step_up"  // proving the factor again (bearer)
)

// WebAuthnChallenge is a WebAuthn ceremony in flight (table
// webauthn_challenges), so that any instance can finish it. Challenge is
// the SHA-256 hex of the raw challenge; SessionData is the library's
// session, stored as it was returned.
type WebAuthnChallenge struct {
	ID             uuid.UUID
	Challenge      string
	UserID         uuid.UUID // Nil: a passwordless sign-in, whose user the credential names
	Purpose        ChallengePurpose
	MFAChallengeID uuid.UUID // with PurposeMFA: the login challenge it finishes
	SessionData    string
	CreatedAt      time.Time
	ExpiresAt      time.Time
	UsedAt         time.Time // zero: not used
}

// closedFor tells why ch cannot finish a ceremony of purpose at now: used,
// expired, or of another ceremony; "" when it can.
func (ch *WebAuthnChallenge) closedFor(purpose ChallengePurpose, now time.Time) string {
	switch {
	case !ch.UsedAt.IsZero():
		return "passkey challenge used"
	case !now.Before(ch.ExpiresAt):
		return "passkey challenge expired"
	case ch.Purpose != purpose:
		return challengeOfAnotherCeremony
	}
	return ""
}

const challengeOfAnotherCeremony = "passkey challenge of another ceremony"

// WebAuthnChallengeTTL is how long a WebAuthn ceremony can be finished.
const WebAuthnChallengeTTL = 5 * time.Minute
