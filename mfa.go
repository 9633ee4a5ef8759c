package authd

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// TOTP parameters (RFC 6238): what every authenticator app assumes.
const (
	totpPeriod = 30 // seconds per step
	totpSkew   = 1  // steps accepted either side of now, for clock drift
)

var totpOptions = totp.ValidateOpts{Period: totpPeriod, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

// RecoveryCodeCount is how many recovery codes a user gets at a time.
const RecoveryCodeCount = 10

// The second-factor methods of POST /v1/auth/mfa/verify.
const (
	MethodTOTP         = "totp"
	MethodRecoveryCode = "recovery_code"
)

// MFARequired is the answer to a right password for an account with a
// second factor: no session exists yet; Token (single use, MFAChallengeTTL)
// and a code by one of Methods finish the login (VerifyMFA). Its code is
// EMFARequired. Token is a secret: Error never shows it. Without a Token it
// answers a sensitive change that lacks its step-up (StepUp); Link marks
// the one of a link that moves an account (VerifyEmail), whose passkey
// ceremony begins elsewhere.
type MFARequired struct {
	Token   string
	Methods []string
	Link    bool
}

func (e *MFARequired) Error() string { return string(EMFARequired) + ": a second factor is required" }

func (e *MFARequired) Unwrap() error {
	if e.Token == "" {
		what, begin := "This change", "POST /v1/users/me/mfa/challenge"
		if e.Link {
			what, begin = "Following this link", "POST /v1/auth/verify-email/challenge"
		}
		code := "a recovery code"
		if slices.Contains(e.Methods, MethodTOTP) {
			code = "a current TOTP or recovery code"
		}
		msg := what + " needs your second factor: send " + code + " as code"
		if slices.Contains(e.Methods, MethodPasskey) {
			msg += ", or a passkey assertion answering " + begin + " as passkey"
		}
		return &Error{Code: EMFARequired, Message: msg + "."}
	}
	return &Error{Code: EMFARequired, Message: "A second factor is required: send a code with mfa_token to /v1/auth/mfa/verify."}
}

var errWrongCode = &Error{Code: EInvalidCredentials, Message: "The code is incorrect.",
	Fields: []FieldError{{Field: "code", Message: "is incorrect"}}}

// errCodeUsed refuses a TOTP code that is right for a step already used
// (or passed over): the user's own form sent twice, two tabs, or a sign-in
// within half a minute of the last. It is refused and logged, but not
// counted toward the account's lock: a wrong guess never lands on it (it
// is one value of the million, and spent), and counting it let the owner
// lock the account alone. A login's mfa_token counts it among its
// MaxMFAFailures, so that one token cannot replay it for its lifetime.
var errCodeUsed = &Error{Code: EInvalidCredentials, Message: "This code was already used; wait for the next one.",
	Fields: []FieldError{{Field: "code", Message: "was already used: wait for the next one"}}}

const reasonUsedCode = "code already used"

// TOTPEnrolment is what a user copies into an authenticator app.
type TOTPEnrolment struct {
	Secret string // base32
	URI    string // otpauth://totp/…
}

// MFAStatus is what a user may see of their second factors: never secrets.
type MFAStatus struct {
	Factors           []*Factor
	Passkeys          []*Passkey
	RecoveryCodesLeft int
}

// MFA lists the user's second factors (enabled or awaiting confirmation)
// and counts their unused recovery codes. Returns EInvalidToken, EUnavailable.
func (s *Service) MFA(ctx context.Context, a *AccessClaims) (*MFAStatus, error) {
	u, err := s.Me(ctx, a)
	if err != nil {
		return nil, err
	}
	return s.mfaStatus(ctx, u.ID)
}

func (s *Service) mfaStatus(ctx context.Context, user uuid.UUID) (*MFAStatus, error) {
	factors, err := s.store.Factors(ctx, user)
	if err != nil {
		return nil, err
	}
	left, err := s.store.RecoveryCodesLeft(ctx, user)
	if err != nil {
		return nil, err
	}
	for _, f := range factors {
		f.Secret = "" // never leaves the domain, even encrypted
	}
	keys, err := s.store.Passkeys(ctx, user)
	if err != nil {
		return nil, err
	}
	return &MFAStatus{Factors: factors, Passkeys: keys, RecoveryCodesLeft: left}, nil
}

// errFactorUnverified refuses a second factor to an account whose address
// is not verified (possible with AUTHD_REQUIRE_VERIFIED_EMAIL=false): whoever
// registered someone else's address first would otherwise keep a factor
// (a passkey signs in alone) after the owner took the account back with a
// password reset, which proves the mailbox but leaves factors.
var errFactorUnverified = &Error{Code: EEmailNotVerified,
	Message: "Verify your email address before you add a second factor or a passkey."}

// EnrollTOTP starts a TOTP enrolment after checking the user's password
// (reauthenticate) and, when the user has a second factor already (a
// passkey), proof: a new secret, stored encrypted and not yet enabled;
// ConfirmTOTP enables it. An enrolment not yet confirmed is replaced.
// Returns EConflict (TOTP is already enabled), EEmailNotVerified,
// EInvalidCredentials, EMFARequired, EAccountLocked, ERateLimited,
// EInvalidToken, EUnavailable.
func (s *Service) EnrollTOTP(ctx context.Context, c Client, a *AccessClaims, password string, proof StepUp) (*TOTPEnrolment, error) {
	ctx, cancel := s.detach(ctx) // the checks finish whatever the client does
	defer cancel()
	checked, err := s.reauthenticateStepUp(ctx, c, a, password, "password", proof, EventMFAEnrolled)
	if err != nil {
		return nil, err
	}
	if err := s.limitFactorAdds(ctx, a); err != nil {
		return nil, err
	}
	key, err := totp.Generate(totp.GenerateOpts{Issuer: s.totpIssuer(), AccountName: checked.Email,
		Period: totpPeriod, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		return nil, err
	}
	err = s.inTx(ctx, func(tx *txn) error {
		u, now, err := s.recheck(ctx, tx, c, a, checked, proof, EventMFAEnrolled)
		if err != nil {
			return err
		}
		if !u.EmailVerified {
			return errFactorUnverified
		}
		factors, err := tx.Factors(ctx, u.ID)
		if err != nil {
			return err
		}
		if f := factorOf(factors, FactorTOTP); f != nil {
			if f.Confirmed {
				return Errorf(EConflict, "TOTP is already enabled; disable it first.")
			}
			if err := tx.DeleteFactor(ctx, f.ID); err != nil {
				return err
			}
		}
		f := &Factor{ID: NewID(), UserID: u.ID, Kind: FactorTOTP, CreatedAt: now}
		if f.Secret, err = s.sealSecret(f, key.Secret()); err != nil {
			return err
		}
		if err := tx.CreateFactor(ctx, f); err != nil {
			return err
		}
		return tx.CreateSecurityLog(ctx, s.audit(now, c, EventMFAEnrolled, ResultSuccess, u.ID, "",
			map[string]any{"kind": string(FactorTOTP)}))
	})
	if err != nil {
		return nil, err
	}
	return &TOTPEnrolment{Secret: key.Secret(), URI: key.URL()}, nil
}

// ConfirmTOTP enables the enrolment with a first code from the app and
// returns RecoveryCodeCount recovery codes, shown this once: only their
// digests are kept. A wrong code counts toward the lock, as at login. An
// enrolment confirms only while it is live (enrolmentLive); a dead one is
// deleted. Returns EInvalid (not a 6-digit code), EInvalidCredentials (a
// wrong code), ENotFound (no live enrolment), EConflict (already enabled),
// EAccountLocked, ERateLimited, EInvalidToken, EUnavailable.
func (s *Service) ConfirmTOTP(ctx context.Context, c Client, a *AccessClaims, code string) ([]string, error) {
	code, err := totpCode(code)
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.detach(ctx) // a wrong code is counted whatever the client does
	defer cancel()
	u, err := s.codeChecked(ctx, a)
	if err != nil {
		return nil, err
	}
	var codes []string
	err = s.inTx(ctx, func(tx *txn) error {
		u, err := tx.User(ctx, u.ID)
		if err != nil {
			return err
		}
		now := s.now()
		if err := s.refuseIfBarred(ctx, tx, c, u, EventMFAEnabled, now); err != nil {
			return err
		}
		if err := sessionLive(ctx, tx, a); err != nil {
			return err
		}
		factors, err := tx.Factors(ctx, u.ID)
		if err != nil {
			return err
		}
		f := factorOf(factors, FactorTOTP)
		switch {
		case f == nil:
			// Never begun, or voided by a new password or passkey since:
			// logged, as an intruder shut out would try it.
			return tx.refuse(ctx, s.audit(now, c, EventMFAEnabled, ResultFailure, u.ID, "no enrolment", nil),
				errNoEnrolment)
		case f.Confirmed:
			return Errorf(EConflict, "TOTP is already enabled.")
		case !enrolmentLive(f, now):
			if err := tx.DeleteFactor(ctx, f.ID); err != nil {
				return err
			}
			return tx.refuse(ctx, s.audit(now, c, EventMFAEnabled, ResultFailure, u.ID, "enrolment expired", nil),
				errNoEnrolment)
		}
		if err := s.refuseCodes(ctx, tx, c, u, EventMFAEnabled, now); err != nil {
			return err
		}
		ok, _, err := s.checkTOTP(ctx, tx, f, code, now) // a new factor: no step used yet
		if err != nil {
			return err
		}
		if !ok {
			return s.failedCheck(ctx, tx, c, u, now, EventMFAEnabled, reasonWrongCode,
				lockByCodes, errWrongCode)
		}
		if err := s.codeRight(ctx, tx, u, now); err != nil {
			return err
		}
		f.Confirmed, f.ConfirmedAt = true, now
		if err := tx.UpdateFactor(ctx, f); err != nil {
			return err
		}
		if err := voidForNewFactor(ctx, tx, u.ID, now); err != nil {
			return err
		}
		if codes, err = s.replaceRecoveryCodes(ctx, tx, u.ID, now); err != nil {
			return err
		}
		// Sessions that passed the password alone (an intruder's among them)
		// end: from now on every other session has passed the factor.
		ended, err := s.endUserSessions(ctx, tx, u.ID, a.SessionID, now, string(EventMFAEnabled))
		if err != nil {
			return err
		}
		if err := s.factorNotice(ctx, tx, now, u, ChangeTOTPEnabled); err != nil {
			return err
		}
		return tx.CreateSecurityLog(ctx, s.audit(now, c, EventMFAEnabled, ResultSuccess, u.ID, "",
			map[string]any{"kind": string(FactorTOTP), "sessions_revoked": len(ended)}))
	})
	return codes, err
}

var errNoEnrolment = Errorf(ENotFound, "No TOTP enrolment to confirm; start one with POST /v1/users/me/mfa/totp.")

// enrolmentLive reports whether the TOTP enrolment f, not yet confirmed,
// can still be: it began less than TOTPEnrolmentTTL ago. A new password or
// a passkey added since deletes it (dropEnrolments). Whoever began it knew
// the password then; without these bounds an intruder who began one before
// being shut out could finish it weeks later with any access token of the
// owner's, or guess its code for as long as a session lives, and hold
// recovery codes that pass every step-up.
func enrolmentLive(f *Factor, now time.Time) bool {
	return now.Sub(f.CreatedAt) < TOTPEnrolmentTTL
}

// voidForNewFactor voids the user's sign-ins awaiting their second factor,
// in the transaction that adds one (a confirmed TOTP, a passkey), which
// holds the user: a sign-in that waited through an administrator's reset
// must not finish with the factor enrolled after it. Told apart later by
// comparing the challenge's time with the factor's, which two instances'
// clocks wrote, a challenge from one ahead passed with the new factor.
// Passkey registrations begun before go too (voidRegistrations).
func voidForNewFactor(ctx context.Context, tx *txn, user uuid.UUID, now time.Time) error {
	if err := tx.VoidOpenMFAChallenges(ctx, user, MFAChallengeOutdated); err != nil {
		return err
	}
	return voidRegistrations(ctx, tx, user, now)
}

// voidRegistrations voids the user's passkey registrations not finished,
// in the transaction of a new password or second factor (or of a factor's
// removal, factorRemoved), which holds the user. Each began with the
// password (and the factors) of its time: one begun by an intruder before
// the owner changed the password, or before the first factor, which asks
// for no step-up, would otherwise finish after it with a stolen access
// token and plant a passkey that signs in alone. Finished before, it is a
// factor the change ends nothing of: the notice of it told the owner.
// (Voided under the user's lock, not told apart by times, as
// dropEnrolments.)
func voidRegistrations(ctx context.Context, tx *txn, user uuid.UUID, now time.Time) error {
	return tx.VoidWebAuthnChallenges(ctx, user, PurposeRegister, now)
}

// dropEnrolments deletes the TOTP enrolments among the user's factors that
// are not confirmed, in the transaction of a new password or passkey, which
// holds the user: told apart later by comparing times, which two instances'
// clocks wrote, one begun on an instance ahead outlived them.
func dropEnrolments(ctx context.Context, tx *txn, factors []*Factor) error {
	for _, f := range factors {
		if !f.Confirmed {
			if err := tx.DeleteFactor(ctx, f.ID); err != nil {
				return err
			}
		}
	}
	return nil
}

// DisableTOTP removes the user's TOTP factor (and the recovery codes, when
// no passkey is left), given a current TOTP or recovery code (and the
// password, required from a session signed in without it:
// withSecondFactor), ends the other sessions it signed in and voids the
// passkey registrations not finished (factorRemoved). A wrong code counts
// toward the lock, as a wrong password does. Returns EInvalid,
// EInvalidCredentials, ENotFound (no factor enabled), EAccountLocked,
// ERateLimited, EInvalidToken, EUnavailable.
func (s *Service) DisableTOTP(ctx context.Context, c Client, a *AccessClaims, password string, proof StepUp) error {
	return s.withSecondFactor(ctx, c, a, password, proof, EventMFADisabled, func(tx *txn, u *User, f *Factor, now time.Time) error {
		if f == nil {
			return Errorf(ENotFound, "TOTP is not enabled.")
		}
		if err := tx.DeleteFactor(ctx, f.ID); err != nil {
			return err
		}
		if err := s.factorRemoved(ctx, tx, c, u.ID, SignInFactor{Method: MethodTOTP}, a.SessionID, now); err != nil {
			return err
		}
		if err := s.factorNotice(ctx, tx, now, u, ChangeTOTPDisabled); err != nil {
			return err
		}
		return tx.CreateSecurityLog(ctx, s.audit(now, c, EventMFADisabled, ResultSuccess, u.ID, "",
			map[string]any{"kind": string(f.Kind)}))
	})
}

// ReplaceRecoveryCodes replaces the user's recovery codes with a new set,
// given a current TOTP or recovery code (and the password, as
// DisableTOTP), and returns them (shown once); the other sessions an old
// code signed in end. Returns as DisableTOTP.
func (s *Service) ReplaceRecoveryCodes(ctx context.Context, c Client, a *AccessClaims, password string,
	proof StepUp) ([]string, error) {
	var codes []string
	err := s.withSecondFactor(ctx, c, a, password, proof, EventRecoveryCodesReplaced, func(tx *txn, u *User, _ *Factor, now time.Time) error {
		var err error
		if codes, err = s.replaceRecoveryCodes(ctx, tx, u.ID, now); err != nil {
			return err
		}
		// The sessions the old codes signed in end with them.
		if err := s.endSessionsSignedInWith(ctx, tx, c, u.ID, SignInFactor{Method: MethodRecoveryCode}, a.SessionID, now); err != nil {
			return err
		}
		if err := s.factorNotice(ctx, tx, now, u, ChangeCodesReplaced); err != nil {
			return err
		}
		return tx.CreateSecurityLog(ctx, s.audit(now, c, EventRecoveryCodesReplaced, ResultSuccess, u.ID, "",
			map[string]any{"count": len(codes)}))
	})
	return codes, err
}

// codeChecked returns the token's user after counting a code check against
// the user's limit (reauthPerUser a minute), so that a stolen access token
// cannot guess codes fast.
func (s *Service) codeChecked(ctx context.Context, a *AccessClaims) (*User, error) {
	if err := s.limit(ctx, "mfa-code:"+a.UserID.String(), reauthPerUser, time.Minute); err != nil {
		return nil, err
	}
	return s.Me(ctx, a)
}

// withSecondFactor runs fn in a transaction once proof (a TOTP or
// recovery code, or a passkey assertion of a step-up ceremony) checks out
// for the user's second factor; f is the TOTP factor, nil when it is not
// enabled. A wrong code counts toward the lock and is logged as a failure
// of event; while the account is locked nothing is checked.
//
// A session signed in without the password (a passkey's own sign-in: amr
// without pwd) gives the password too: whoever holds one passkey (a copy
// synced to someone else's device) could otherwise remove the owner's
// other factors and replace the recovery codes, and with them every way
// the owner signs in, as the password alone no longer does. A password
// given is checked in any session (reauthenticate: a wrong one counts
// toward the lock).
func (s *Service) withSecondFactor(ctx context.Context, c Client, a *AccessClaims, password string, proof StepUp,
	event EventType, fn func(tx *txn, u *User, f *Factor, now time.Time) error) error {
	if proof.empty() {
		return invalidField("code", "is required: a TOTP or recovery code (or a passkey assertion as passkey)")
	}
	if err := s.shape(proof); err != nil {
		return err
	}
	if password == "" && !slices.Contains(a.AMR, AMRPassword) {
		return invalidField("password", "is required: this session signed in without the password")
	}
	ctx, cancel := s.detach(ctx) // a wrong code is counted whatever the client does
	defer cancel()
	u, err := s.codeChecked(ctx, a)
	if err != nil {
		return err
	}
	// A password changed between its check and the transaction ended the
	// session (sessionLive refuses) unless this session changed it, with
	// the password it had just proved.
	if password != "" {
		if _, err := s.reauthenticate(ctx, c, a, password, "password", event); err != nil {
			return err
		}
	}
	return s.inTx(ctx, func(tx *txn) error {
		u, err := tx.User(ctx, u.ID)
		if err != nil {
			return err
		}
		now := s.now()
		if err := s.refuseIfBarred(ctx, tx, c, u, event, now); err != nil {
			return err
		}
		if err := sessionLive(ctx, tx, a); err != nil {
			return err
		}
		factors, keys, err := secondFactors(ctx, tx, u.ID)
		if err != nil {
			return err
		}
		if !hasSecondFactor(factors, keys) {
			return Errorf(ENotFound, "No second factor is enabled.")
		}
		if err := s.checkProof(ctx, tx, c, u, factors, keys, proof, event, now); err != nil {
			return err
		}
		return fn(tx, u, confirmedTOTP(factors), now)
	})
}

// VerifyMFA finishes a login that answered MFARequired: with a right code
// the session starts and the pair carries amr pwd, otp, mfa. The mfa_token
// is single use and dies after MaxMFAFailures wrong codes or
// MFAChallengeTTL; wrong codes count toward the account's lock like wrong
// passwords, and the failure count resets only when the whole login
// succeeds. Returns EInvalid, EInvalidToken (the mfa_token cannot be
// redeemed), EInvalidCredentials (a wrong code), EAccountLocked,
// ERateLimited, EUnavailable.
func (s *Service) VerifyMFA(ctx context.Context, c Client, mfaToken, method, code string) (*TokenPair, error) {
	ctx, cancel := s.detach(ctx) // a wrong code is counted whatever the client does
	defer cancel()
	var err error
	switch method {
	case MethodTOTP:
		code, err = totpCode(code)
	case MethodRecoveryCode:
		code, err = recoveryCode(code)
	default:
		err = invalidField("method", "must be totp, recovery_code or passkey")
	}
	if err != nil {
		return nil, err
	}
	var pair *TokenPair
	err = s.withMFAToken(ctx, c, mfaToken, func(tx *txn, ch *MFAChallenge, st *SignInState, now time.Time) error {
		u, factors, keys := st.User, st.Factors, st.Passkeys
		f := confirmedTOTP(factors)
		if (method == MethodTOTP && f == nil) || !hasSecondFactor(factors, keys) {
			// Disabled since the password was checked: the login starts over.
			return s.refuseTokenAs(ctx, tx, c, EventMFAChallengeFailed, u.ID, "no second factor enabled", nil,
				challengeOver(ErrChallengeVoided))
		}
		if err := s.refuseCodes(ctx, tx, c, u, EventMFAChallengeFailed, now); err != nil {
			return err
		}
		ok, err := s.checkCode(ctx, tx, c, u, f, method, code, EventMFAChallengeFailed, now)
		if errors.Is(err, errCodeUsed) {
			if uerr := countMFAFailure(ctx, tx, ch); uerr != nil {
				return uerr
			}
		}
		if err != nil {
			return err
		}
		if !ok {
			if err := countMFAFailure(ctx, tx, ch); err != nil {
				return err
			}
			return s.failedCheck(ctx, tx, c, u, now, EventMFAChallengeFailed, reasonWrongCode,
				lockByCodes, errWrongCode)
		}
		pair, err = s.passMFA(ctx, tx, c, st, ch, SignInFactor{Method: method}, AMROTP, now)
		return err
	})
	return pair, err
}

// countMFAFailure counts a refused proof on the login challenge ch, which
// dies at MaxMFAFailures.
func countMFAFailure(ctx context.Context, tx *txn, ch *MFAChallenge) error {
	ch.Failures++
	return tx.UpdateMFAChallenge(ctx, ch)
}

// passMFA ends the login challenge ch, passed with f, and starts its
// session, whose amr is pwd, factor and mfa.
func (s *Service) passMFA(ctx context.Context, tx *txn, c Client, st *SignInState, ch *MFAChallenge, f SignInFactor, factor string,
	now time.Time) (*TokenPair, error) {
	ch.UsedAt = now
	if err := tx.UpdateMFAChallenge(ctx, ch); err != nil {
		return nil, err
	}
	if err := tx.CreateSecurityLog(ctx, s.audit(now, c, EventMFAChallengePassed, ResultSuccess, st.User.ID, "",
		map[string]any{"method": f.Method})); err != nil {
		return nil, err
	}
	return s.startSession(ctx, tx, c, st, ch.DeviceInfo, []string{AMRPassword, factor, AMRMFA}, f, "", now)
}

// withMFAToken runs fn in a transaction with the login challenge of
// mfaToken and what its user's sign-in decides on (SignInState, locked),
// once redeemable says it can still be redeemed.
func (s *Service) withMFAToken(ctx context.Context, c Client, mfaToken string,
	fn func(tx *txn, ch *MFAChallenge, st *SignInState, now time.Time) error) error {
	digest, err := s.mfaTokenDigest(ctx, c, mfaToken)
	if err != nil {
		return err
	}
	return s.inTx(ctx, func(tx *txn) error {
		ch, st, now, err := s.redeemable(ctx, tx, c, digest)
		if err != nil {
			return err
		}
		return fn(tx, ch, st, now)
	})
}

// mfaTokenDigest counts a use of an mfa_token against the client's limit
// and returns its digest; a token that cannot be one of ours is refused
// (EInvalidToken), logged.
func (s *Service) mfaTokenDigest(ctx context.Context, c Client, mfaToken string) (string, error) {
	if err := s.limitIP(ctx, "mfa", c); err != nil {
		return "", err
	}
	digest, err := opaqueDigest(mfaToken)
	if err != nil {
		return "", s.refuseToken(ctx, nil, c, EventMFAChallengeFailed, uuid.Nil, "malformed mfa token", nil)
	}
	return digest, nil
}

// ErrChallengeUsed and ErrChallengeVoided say why a login's second-factor
// challenge is refused (EInvalidToken, with its usual message): passed
// already (its form sent twice), or voided by a change to the account
// since the password was checked (the password, the second factors, or
// every session ended). An expired challenge, or one with too many wrong
// codes, has neither. The hosted pages word their answers by them.
var (
	ErrChallengeUsed   = errors.New("authd: the second-factor challenge was already passed")
	ErrChallengeVoided = errors.New("authd: the account changed since its password was checked")
)

// challengeOver is the EInvalidToken error of a challenge refused for why.
func challengeOver(why error) *Error {
	return &Error{Code: EInvalidToken, Message: errInvalidToken.Message, Err: why}
}

// redeemable returns the login challenge whose mfa_token has the digest,
// and its user's SignInState (locked), when it can still be redeemed at
// now, read once the challenge and its user are held (a challenge that
// expired during the wait is over; a session started at the wait's start,
// behind a logout-all, would be older than its cut-off); otherwise the
// flow fails with EInvalidToken (or EAccountLocked), logged.
func (s *Service) redeemable(ctx context.Context, tx *txn, c Client, digest string) (_ *MFAChallenge, _ *SignInState,
	now time.Time, _ error) {
	ch, err := tx.MFAChallenge(ctx, digest)
	now = s.now()
	if ErrorCode(err) == ENotFound {
		return nil, nil, now, s.refuseToken(ctx, tx, c, EventMFAChallengeFailed, uuid.Nil, "unknown mfa token", nil)
	}
	if err != nil {
		return nil, nil, now, err
	}
	over := func(reason string, why error) error {
		return s.refuseTokenAs(ctx, tx, c, EventMFAChallengeFailed, ch.UserID, reason, nil, challengeOver(why))
	}
	switch {
	case !ch.UsedAt.IsZero():
		return nil, nil, now, over("mfa token used", ErrChallengeUsed)
	case ch.Failures == MFAChallengeOutdated:
		// A second factor was added since (voidForNewFactor).
		return nil, nil, now, over("second factor changed since the challenge", ErrChallengeVoided)
	case ch.Failures == MFAChallengeEnded:
		return nil, nil, now, over("sessions ended since the challenge", ErrChallengeVoided)
	case ch.Failures >= MFAChallengeVoided:
		// The password this challenge proved was changed or reset since.
		return nil, nil, now, over("password changed since the challenge", ErrChallengeVoided)
	case !now.Before(ch.ExpiresAt):
		return nil, nil, now, s.refuseToken(ctx, tx, c, EventMFAChallengeFailed, ch.UserID, "mfa token expired", nil)
	case ch.Failures >= MaxMFAFailures:
		return nil, nil, now, s.refuseToken(ctx, tx, c, EventMFAChallengeFailed, ch.UserID, "too many wrong codes", nil)
	}
	st, err := tx.SignInState(ctx, ch.UserID, s.sessionKeep(), now)
	if err != nil {
		return nil, nil, now, err
	}
	// A new password since would have voided the challenge (setPassword).
	u := st.User
	if err := s.refuseIfBarred(ctx, tx, c, u, EventMFAChallengeFailed, now); err != nil { // erased or locked
		return nil, nil, now, err
	}
	return ch, st, now, nil
}

// challenge answers a right password for an account with an enabled second
// factor: a challenge whose mfa_token the client gets in MFARequired, and
// no session. The transaction commits (the challenge must be stored) while
// the login fails with MFARequired.
func (s *Service) challenge(ctx context.Context, tx *txn, c Client, u *User, deviceInfo string, methods []string,
	now time.Time) error {
	raw, digest := newOpaqueToken()
	ch := &MFAChallenge{ID: NewID(), Token: digest, UserID: u.ID, DeviceInfo: deviceInfo, CreatedAt: now,
		ExpiresAt: now.Add(MFAChallengeTTL)}
	if err := tx.CreateMFAChallenge(ctx, ch); err != nil {
		return err
	}
	return tx.refuse(ctx, s.audit(now, c, EventMFAChallengeIssued, ResultSuccess, u.ID, "",
		map[string]any{"challenge_id": ch.ID.String(), "methods": methods}), &MFARequired{Token: raw, Methods: methods})
}

// checkCode checks a code of method for u's TOTP factor f (nil: none): a
// TOTP code is accepted once (f remembers its step), and a used one is
// refused as a failure of event (errCodeUsed, not counted); a recovery
// code is spent and its use logged. A spent recovery code is answered as a
// wrong one, and counted: unlike a used TOTP code, good for a minute and
// sent again by its owner's own double submit, it is what someone holding
// the password and an old copy of the codes tries, and the lock (and its
// notice to the owner) is what stops them going down the list; an answer
// of its own would also tell them that the copy is the current set.
func (s *Service) checkCode(ctx context.Context, tx *txn, c Client, u *User, f *Factor, method, code string,
	event EventType, now time.Time) (bool, error) {
	if method == MethodTOTP {
		if f == nil || !f.Confirmed {
			return false, nil // no TOTP enabled: no TOTP code is right
		}
		ok, used, err := s.checkTOTP(ctx, tx, f, code, now)
		if used {
			return false, tx.refuse(ctx, s.audit(now, c, event, ResultFailure, u.ID, reasonUsedCode, nil), errCodeUsed)
		}
		return ok, err
	}
	err := tx.UseRecoveryCode(ctx, u.ID, s.recoveryDigest(code), now)
	if ErrorCode(err) == ENotFound {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	left, err := tx.RecoveryCodesLeft(ctx, u.ID)
	if err != nil {
		return false, err
	}
	return true, tx.CreateSecurityLog(ctx, s.audit(now, c, EventRecoveryCodeUsed, ResultSuccess, u.ID, "",
		map[string]any{"codes_left": left}))
}

// checkTOTP reports whether code is f's code for a step within totpSkew of
// now and later than the last one accepted; if so, f (locked by the
// transaction) records that step, so the code is never accepted again.
// used reports a code of a step within totpSkew that is not later.
func (s *Service) checkTOTP(ctx context.Context, tx *txn, f *Factor, code string, now time.Time) (ok, used bool, err error) {
	secret, err := s.openSecret(f)
	if err != nil {
		return false, false, err
	}
	current := now.Unix() / totpPeriod
	for step := current - totpSkew; step <= current+totpSkew; step++ {
		want, err := totp.GenerateCodeCustom(secret, time.Unix(step*totpPeriod, 0), totpOptions)
		if err != nil {
			return false, false, err
		}
		switch {
		case subtle.ConstantTimeCompare([]byte(want), []byte(code)) != 1:
		case step <= f.LastStep:
			used = true
		default:
			f.LastStep, f.LastUsedAt = step, now
			return true, false, tx.UpdateFactor(ctx, f)
		}
	}
	return false, used, nil
}

// replaceRecoveryCodes makes a new set of recovery codes for the user,
// stores their digests in place of the old set and returns them.
func (s *Service) replaceRecoveryCodes(ctx context.Context, tx *txn, user uuid.UUID, now time.Time) ([]string, error) {
	codes := make([]string, RecoveryCodeCount)
	rows := make([]*RecoveryCode, RecoveryCodeCount)
	for i := range codes {
		b := make([]byte, 10)
		rand.Read(b) // never fails (crypto/rand)
		// 10 base32 characters: 50 bits, typed as two groups of five.
		raw := strings.ToLower(base32.StdEncoding.EncodeToString(b))[:10]
		codes[i] = raw[:5] + "-" + raw[5:]
		rows[i] = &RecoveryCode{ID: NewID(), UserID: user, Digest: s.recoveryDigest(raw), CreatedAt: now}
	}
	return codes, tx.ReplaceRecoveryCodes(ctx, user, rows)
}

// recoveryDigest is the stored form of a (normalised) recovery code: keyed
// with the MFA key, since 50 bits would not survive a dictionary of plain
// hashes if the table leaked.
func (s *Service) recoveryDigest(code string) string {
	return hex.EncodeToString(labelledMAC(s.mfaKey, "authd recovery code v1", code))
}

// sealSecret encrypts a TOTP secret for f with AES-256-GCM under the MFA
// key, bound to the factor and its user, so that a ciphertext copied to
// another row does not open.
func (s *Service) sealSecret(f *Factor, secret string) (string, error) {
	aead, err := s.mfaAEAD()
	if err != nil {
		return "", err
	}
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce) // never fails (crypto/rand)
	sealed := aead.Seal(nonce, nonce, []byte(secret), factorAD(f))
	return base64.StdEncoding.EncodeToString(sealed), nil
}

// openSecret decrypts f's TOTP secret. A failure is internal and says
// nothing of the secret: the MFA key changed or the row was altered.
func (s *Service) openSecret(f *Factor) (string, error) {
	aead, err := s.mfaAEAD()
	if err != nil {
		return "", err
	}
	sealed, err := base64.StdEncoding.DecodeString(f.Secret)
	if err != nil || len(sealed) < aead.NonceSize() {
		return "", errors.New("mfa: stored TOTP secret is malformed")
	}
	plain, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], factorAD(f))
	if err != nil {
		return "", errors.New("mfa: stored TOTP secret does not open with the MFA key (was mfa.key replaced?)")
	}
	return string(plain), nil
}

func (s *Service) mfaAEAD() (cipher.AEAD, error) {
	block, err := aes.NewCipher(s.mfaKey)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func factorAD(f *Factor) []byte {
	return append(append([]byte("authd totp v1\x00"), f.ID[:]...), f.UserID[:]...)
}

// totpIssuer names authd in authenticator apps.
func (s *Service) totpIssuer() string {
	if s.cfg.TOTPIssuer != "" {
		return s.cfg.TOTPIssuer
	}
	if u, err := url.Parse(s.cfg.PublicURL); err == nil && u.Hostname() != "" {
		return u.Hostname()
	}
	return "authd"
}

// factorRemoved finishes the removal of one of the user's second factors
// (removed: a TOTP factor, a passkey) in the transaction that deleted it,
// which holds the user. The sessions removed signed in end, but except
// (the request's own: endSessionsSignedInWith); with the last factor the
// recovery codes go, and the sessions they signed in; and the passkey
// registrations not finished go (voidRegistrations) whatever is left. One
// was begun with the factors of its time, perhaps with the removed one's
// proof: an owner who removes a factor they think another holds must not
// find a passkey that other began with it planted afterwards, the first
// factor (with new recovery codes) if none is left.
func (s *Service) factorRemoved(ctx context.Context, tx *txn, c Client, user uuid.UUID, removed SignInFactor, except uuid.UUID,
	now time.Time) error {
	if err := s.endSessionsSignedInWith(ctx, tx, c, user, removed, except, now); err != nil {
		return err
	}
	if err := voidRegistrations(ctx, tx, user, now); err != nil {
		return err
	}
	methods, err := s.mfaMethods(ctx, tx, user)
	if err != nil || len(methods) > 0 {
		return err
	}
	if err := tx.ReplaceRecoveryCodes(ctx, user, nil); err != nil {
		return err
	}
	return s.endSessionsSignedInWith(ctx, tx, c, user, SignInFactor{Method: MethodRecoveryCode}, except, now)
}

func factorOf(factors []*Factor, kind FactorKind) *Factor {
	for _, f := range factors {
		if f.Kind == kind {
			return f
		}
	}
	return nil
}

// confirmedTOTP is the user's TOTP factor when it is enabled (confirmed),
// else nil.
func confirmedTOTP(factors []*Factor) *Factor {
	if f := factorOf(factors, FactorTOTP); f != nil && f.Confirmed {
		return f
	}
	return nil
}

func hasEnabledFactor(factors []*Factor) bool {
	for _, f := range factors {
		if f.Confirmed {
			return true
		}
	}
	return false
}

// mfaMethods lists how the user can pass the second factor (methodsOf);
// none when they have no second factor.
func (s *Service) mfaMethods(ctx context.Context, q Queries, user uuid.UUID) ([]string, error) {
	factors, keys, err := secondFactors(ctx, q, user)
	if err != nil {
		return nil, err
	}
	return s.usable(methodsOf(factors, keys)), nil
}

// usable drops passkey from methods while passkeys are off (no relying
// party configured): a client offered it could not begin one.
func (s *Service) usable(methods []string) []string {
	if s.webauthn != nil {
		return methods
	}
	return slices.DeleteFunc(methods, func(m string) bool { return m == MethodPasskey })
}

var errCodeFormat = invalidField("code", "must be a 6-digit code or a recovery code such as abcde-fghij")

// totpCode returns code, which must be six digits (spaces allowed, as apps
// show them in groups, and blanks around it, as pasted).
func totpCode(code string) (string, error) {
	if len(code) > 64 {
		return "", errCodeFormat
	}
	code = strings.ReplaceAll(strings.TrimSpace(code), " ", "")
	if len(code) != 6 || strings.Trim(code, "0123456789") != "" {
		return "", errCodeFormat
	}
	return code, nil
}

// recoveryCode returns a recovery code normalised (lower case, without
// the hyphen or spaces), or EInvalid when it cannot be one: two groups of
// five, in either case, with the hyphen between them or without it, spaces
// anywhere and blanks around it.
func recoveryCode(code string) (string, error) {
	if len(code) > 64 {
		return "", errCodeFormat
	}
	code = strings.ToLower(strings.ReplaceAll(strings.TrimSpace(code), " ", ""))
	if len(code) == 11 && code[5] == '-' {
		code = code[:5] + code[6:]
	}
	if len(code) != 10 || strings.Trim(code, "abcdefghijklmnopqrstuvwxyz234567") != "" {
		return "", errCodeFormat
	}
	return code, nil
}

// CodeMethod is the method a second factor's code is of by its shape:
// MethodTOTP for six digits, MethodRecoveryCode otherwise (which refuses a
// code of neither shape).
func CodeMethod(code string) string {
	method, _, _ := anyCode(code)
	return method
}

// anyCode tells a TOTP code from a recovery code by its shape.
func anyCode(code string) (method, normalised string, err error) {
	if c, err := totpCode(code); err == nil {
		return MethodTOTP, c, nil
	}
	c, err := recoveryCode(code)
	return MethodRecoveryCode, c, err
}
