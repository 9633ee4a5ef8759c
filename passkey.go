package authd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/protocol/webauthncose"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/google/uuid"
)

// Passkeys (WebAuthn, issue 9). A ceremony's challenge lives in the
// database (webauthn_challenges), so that any instance finishes what
// another began; its finish finds it by the challenge the browser signed
// into clientDataJSON, and uses it once. User verification is required
// everywhere, so a passkey is two factors at once (possession and a PIN or
// biometric): a passwordless sign-in carries amr hwk|swk and mfa.

// MethodPasskey is the passkey method of POST /v1/auth/mfa/verify.
const MethodPasskey = "passkey"

// MaxPasskeys bounds the passkeys of one user: each is listed in every
// assertion's allowCredentials.
const MaxPasskeys = 20

// The longest credential id (WebAuthn §5.1: 1023 bytes) and COSE public
// key (an RSA-4096 key is about 550 bytes) the passkeys table holds.
const (
	maxCredentialID = 1023
	maxPublicKey    = 2048
)

// DefaultPasskeyName names a passkey its user did not name.
const DefaultPasskeyName = "Passkey"

// maxPasskeyName is the longest passkey name, in characters.
const maxPasskeyName = 64

// CheckRelyingParty checks a WebAuthn relying party: rpID must be a domain
// (browsers refuse IP addresses) and a registrable suffix of the host of
// every origin, each an http(s) origin.
func CheckRelyingParty(rpID string, origins []string) error {
	_, err := newRelyingParty(rpID, origins)
	return err
}

func newRelyingParty(rpID string, origins []string) (*webauthn.WebAuthn, error) {
	if err := protocol.ValidateRPID(rpID); err != nil || net.ParseIP(rpID) != nil {
		return nil, fmt.Errorf("RP ID %q must be a domain name such as auth.example.org or localhost, not an IP address", rpID)
	}
	if len(origins) == 0 {
		return nil, fmt.Errorf("no WebAuthn origin")
	}
	for _, o := range origins {
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") ||
			u.RawQuery != "" || u.User != nil {
			return nil, fmt.Errorf("origin %q must be such as https://auth.example.org", o)
		}
		host := strings.ToLower(u.Hostname())
		if host != rpID && !strings.HasSuffix(host, "."+rpID) {
			return nil, fmt.Errorf("RP ID %q is not the host of origin %q nor a suffix of it", rpID, o)
		}
	}
	return webauthn.New(&webauthn.Config{
		RPID:          rpID,
		RPDisplayName: "authd",
		RPOrigins:     origins,
		AuthenticatorSelection: protocol.AuthenticatorSelection{
			ResidentKey:        protocol.ResidentKeyRequirementRequired,
			RequireResidentKey: protocol.ResidentKeyRequired(),
			UserVerification:   protocol.VerificationRequired,
		},
		// Only the browser's timeout hint: expiry is checked against the
		// service's clock from the challenge row.
		Timeouts: webauthn.TimeoutsConfig{
			Registration: webauthn.TimeoutConfig{Timeout: WebAuthnChallengeTTL},
			Login:        webauthn.TimeoutConfig{Timeout: WebAuthnChallengeTTL},
		},
	})
}

var errPasskeysOff = &Error{Code: ENotFound,
	Message: "Passkeys are not enabled on this server (a public URL on an IP address turns them off: set AUTHD_PUBLIC_URL to a host name, or AUTHD_WEBAUTHN_RP_ID and AUTHD_WEBAUTHN_ORIGINS)."}

// PasskeysEnabled reports whether the server can use passkeys.
func (s *Service) PasskeysEnabled() bool { return s.webauthn != nil }

func (s *Service) relyingParty() (*webauthn.WebAuthn, error) {
	if s.webauthn == nil {
		return nil, errPasskeysOff
	}
	return s.webauthn, nil
}

// webauthnUser is a user as the library sees it. The user handle is the
// user's id: random (UUIDv7's random bits aside, it names no one) and fixed.
type webauthnUser struct {
	u    *User
	keys []*Passkey
}

func (w webauthnUser) WebAuthnID() []byte          { return w.u.ID[:] }
func (w webauthnUser) WebAuthnName() string        { return w.u.Email }
func (w webauthnUser) WebAuthnDisplayName() string { return w.u.Email }
func (w webauthnUser) WebAuthnCredentials() []webauthn.Credential {
	out := make([]webauthn.Credential, len(w.keys))
	for i, p := range w.keys {
		out[i] = credentialOf(p)
	}
	return out
}

func credentialOf(p *Passkey) webauthn.Credential {
	transports := make([]protocol.AuthenticatorTransport, len(p.Transports))
	for i, t := range p.Transports {
		transports[i] = protocol.AuthenticatorTransport(t)
	}
	return webauthn.Credential{
		ID: p.CredentialID, PublicKey: p.PublicKey, AttestationType: p.AttestationType, Transport: transports,
		Flags: webauthn.CredentialFlags{UserPresent: true, UserVerified: true, BackupEligible: p.BackupEligible,
			BackupState: p.BackupState},
		Authenticator: webauthn.Authenticator{AAGUID: p.AAGUID[:], SignCount: p.SignCount},
	}
}

// passkeyAMR is the RFC 8176 method of a passkey: swk for a synced
// (backup-eligible) one, whose key can leave the device, hwk otherwise.
func passkeyAMR(p *Passkey) string {
	if p.BackupEligible {
		return AMRSoftware
	}
	return AMRHardware
}

// passkeyName returns a passkey name trimmed, DefaultPasskeyName for an
// empty one, or EInvalid: 1–64 printable characters.
func passkeyName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return DefaultPasskeyName, nil
	}
	bad := !utf8.ValidString(name) || utf8.RuneCountInString(name) > maxPasskeyName ||
		strings.IndexFunc(name, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0
	if bad {
		return "", errPasskeyName
	}
	return name, nil
}

// errPasskeyName refuses a passkey name passkeyName does not take.
var errPasskeyName = invalidField("name", "must be 1 to 64 printable characters")

// errCredential is a credential that is not a WebAuthn response at all.
func errCredential(err error) error {
	return &Error{Code: EInvalid, Message: InvalidFields, Err: err,
		Fields: []FieldError{{Field: "credential", Message: "is not a WebAuthn credential response"}}}
}

var errPasskeyRefused = &Error{Code: EInvalidCredentials, Message: "The passkey could not be verified."}

// parseCreation parses the browser's answer to a registration, and
// parseAssertion its answer to a sign-in. Any failure (the library's, or a
// panic of its parser) is EInvalid.
func parseCreation(b []byte) (*protocol.ParsedCredentialCreationData, error) {
	return parseCredential(b, protocol.ParseCredentialCreationResponseBytes)
}

func parseAssertion(b []byte) (*protocol.ParsedCredentialAssertionData, error) {
	return parseCredential(b, protocol.ParseCredentialRequestResponseBytes)
}

func parseCredential[T any](b []byte, parse func([]byte) (*T, error)) (p *T, err error) {
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, errCredential(fmt.Errorf("parser panic: %v", r))
		}
	}()
	if len(b) == 0 || string(b) == "null" {
		return nil, errCredential(nil)
	}
	if p, err = parse(b); err != nil {
		return nil, errCredential(err)
	}
	return p, nil
}

// challengeDigest is the stored form of a ceremony's challenge, given as
// base64url (the library's SessionData, or the browser's clientDataJSON).
// ok is false when it cannot be one of ours.
func challengeDigest(challenge string) (string, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(challenge, "="))
	if err != nil || len(raw) < protocol.MinimumChallengeLength || len(raw) > 64 {
		return "", false
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:]), true
}

// saveChallenge stores a ceremony's session for its finish.
func (s *Service) saveChallenge(ctx context.Context, q Queries, session *webauthn.SessionData, purpose ChallengePurpose,
	user, mfaChallenge uuid.UUID, now time.Time) error {
	data, err := json.Marshal(session)
	if err != nil {
		return err
	}
	digest, ok := challengeDigest(session.Challenge)
	if !ok {
		return fmt.Errorf("webauthn: the library made a challenge of an unexpected form")
	}
	return q.CreateWebAuthnChallenge(ctx, &WebAuthnChallenge{ID: NewID(), Challenge: digest, UserID: user,
		Purpose: purpose, MFAChallengeID: mfaChallenge, SessionData: string(data), CreatedAt: now,
		ExpiresAt: now.Add(WebAuthnChallengeTTL)})
}

// takeChallenge finds the ceremony of challenge (from clientDataJSON) for
// purpose and spends it: from now on it is used, whatever the outcome,
// once the transaction commits. A challenge that is unknown, used, expired
// or of another ceremony is EInvalidToken, logged as a failure of event.
func (s *Service) takeChallenge(ctx context.Context, tx *txn, c Client, challenge string, purpose ChallengePurpose,
	event EventType, now time.Time) (*WebAuthnChallenge, *webauthn.SessionData, error) {
	digest, ok := challengeDigest(challenge)
	if !ok {
		return nil, nil, s.refuseToken(ctx, tx, c, event, uuid.Nil, "malformed passkey challenge", nil)
	}
	ch, err := tx.WebAuthnChallenge(ctx, digest)
	if ErrorCode(err) == ENotFound {
		return nil, nil, s.refuseToken(ctx, tx, c, event, uuid.Nil, "unknown passkey challenge", nil)
	}
	if err != nil {
		return nil, nil, err
	}
	if reason := ch.closedFor(purpose, now); reason != "" {
		var detail map[string]any
		if reason == challengeOfAnotherCeremony {
			detail = map[string]any{"purpose": string(ch.Purpose)}
		}
		return nil, nil, s.refuseToken(ctx, tx, c, event, ch.UserID, reason, detail)
	}
	ch.UsedAt = now
	if err := tx.UseWebAuthnChallenge(ctx, ch); err != nil {
		return nil, nil, err
	}
	var session webauthn.SessionData
	if err := json.Unmarshal([]byte(ch.SessionData), &session); err != nil {
		return nil, nil, fmt.Errorf("webauthn: stored session of challenge %s: %w", ch.ID, err)
	}
	return ch, &session, nil
}

// takeOwnChallenge is takeChallenge for a ceremony a signed-in user began
// (a registration, a step-up): one begun for another user is refused as
// well, and every refusal of the ceremony names field and tells why in
// over's words. The token at fault is then the body's ceremony, not the
// bearer token, which the plain "invalid token" would read as (httpapi
// answers one naming a field 400, with no bearer challenge).
func (s *Service) takeOwnChallenge(ctx context.Context, tx *txn, c Client, u *User, challenge string,
	purpose ChallengePurpose, event EventType, field, over string, now time.Time) (*webauthn.SessionData, error) {
	ch, session, err := s.takeChallenge(ctx, tx, c, challenge, purpose, event, now)
	if err == nil && ch.UserID != u.ID {
		err = s.refuseToken(ctx, tx, c, event, u.ID, "passkey challenge of another user", nil)
	}
	if r, ok := err.(*refusal); ok && r.err == errInvalidToken {
		return nil, &refusal{err: &Error{Code: EInvalidToken, Message: over,
			Fields: []FieldError{{Field: field, Message: "answers a passkey ceremony that is over"}}}}
	}
	return session, err
}

const (
	registrationOver = "This passkey registration is over: it expired or was used, was begun for another " +
		"account, or another passkey was added (or a password or factor changed) since it began. Begin again."
	stepUpOver = "This passkey confirmation is over: it expired or was used, or was not begun as one for " +
		"this account (POST /v1/users/me/mfa/challenge). Begin again."
)

// BeginPasskeyRegistration starts adding a passkey for the token's user,
// after checking their password (reauthenticate) and, when they have a
// second factor already, proof (step-up): a stolen access token alone must
// not be able to plant a factor that signs in without the password and
// passes every later step-up. Answers the creation options (JSON
// {publicKey: …}) for navigator.credentials.create, excluding the passkeys
// the user has. Returns ENotFound (passkeys off), EConflict (MaxPasskeys
// reached), EEmailNotVerified, EInvalidCredentials, EMFARequired,
// EAccountLocked, ERateLimited, EInvalidToken, EUnavailable.
func (s *Service) BeginPasskeyRegistration(ctx context.Context, c Client, a *AccessClaims, password string,
	proof StepUp) (json.RawMessage, error) {
	ctx, cancel := s.detach(ctx) // the checks finish whatever the client does
	defer cancel()
	rp, u, keys, err := s.passkeyOwner(ctx, a)
	if err != nil {
		return nil, err
	}
	if len(keys) >= MaxPasskeys {
		return nil, errTooManyPasskeys
	}
	checked, err := s.reauthenticateStepUp(ctx, c, a, password, "password", proof, EventPasskeyAdded)
	if err != nil {
		return nil, err
	}
	if err := s.limitFactorAdds(ctx, a); err != nil {
		return nil, err
	}
	user := webauthnUser{u: u, keys: keys}
	creation, session, err := rp.BeginRegistration(user,
		webauthn.WithExclusions(webauthn.Credentials(user.WebAuthnCredentials()).CredentialDescriptors()),
		webauthn.WithExtensions(webauthn.WithExtensionCredProps()))
	if err != nil {
		return nil, err
	}
	err = s.inTx(ctx, func(tx *txn) error {
		u, now, err := s.recheck(ctx, tx, c, a, checked, proof, EventPasskeyAdded)
		if err != nil {
			return err
		}
		if !u.EmailVerified {
			return errFactorUnverified
		}
		return s.saveChallenge(ctx, tx, session, PurposeRegister, u.ID, uuid.Nil, now)
	})
	if err != nil {
		return nil, err
	}
	return json.Marshal(creation)
}

// passkeyOwner is what a ceremony of the token's user begins with: the
// relying party, the user and their passkeys, once the user's limit on
// ceremonies (which each leave a row) allows one more.
func (s *Service) passkeyOwner(ctx context.Context, a *AccessClaims) (*webauthn.WebAuthn, *User, []*Passkey, error) {
	rp, err := s.relyingParty()
	if err != nil {
		return nil, nil, nil, err
	}
	if err := s.limit(ctx, "passkey-begin:"+a.UserID.String(), ipLimit, ipLimitWindow); err != nil {
		return nil, nil, nil, err
	}
	u, err := s.Me(ctx, a)
	if err != nil {
		return nil, nil, nil, err
	}
	keys, err := s.store.Passkeys(ctx, u.ID)
	return rp, u, keys, err
}

// PasskeyAdded is a registered passkey and, when it is the user's first
// second factor, the recovery codes made with it (shown once).
type PasskeyAdded struct {
	Passkey       *Passkey
	RecoveryCodes []string
}

// errTooManyPasskeys refuses a passkey past MaxPasskeys.
var errTooManyPasskeys = Errorf(EConflict, "You have %d passkeys, the most allowed; remove one first.", MaxPasskeys)

// FinishPasskeyRegistration verifies the browser's answer to
// BeginPasskeyRegistration and stores the passkey under name. When it is
// the user's first second factor, the user gets RecoveryCodeCount recovery
// codes and their other sessions end (they passed the password alone), as
// when TOTP is enabled. Returns EInvalid (a malformed credential or name,
// or one the checks refuse), EInvalidToken (an unknown, used or expired
// ceremony, or the bearer's), EConflict (already registered), ENotFound
// (passkeys off), ERateLimited, EUnavailable.
func (s *Service) FinishPasskeyRegistration(ctx context.Context, c Client, a *AccessClaims, name string,
	credential []byte) (*PasskeyAdded, error) {
	ctx, cancel := s.detach(ctx) // a refused attestation is logged, a passkey kept, whatever the client does
	defer cancel()
	rp, err := s.relyingParty()
	if err != nil {
		return nil, err
	}
	if name, err = passkeyName(name); err != nil {
		return nil, err
	}
	parsed, err := parseCreation(credential)
	if err != nil {
		return nil, err
	}
	u, err := s.Me(ctx, a)
	if err != nil {
		return nil, err
	}
	// Read before the transaction, which locks the user: in it, a locking
	// read of the passkey would take the two locks in the opposite order to
	// a sign-in with it. Two registrations of one authenticator at once are
	// left to the unique key (a 409 that rolls back).
	_, err = s.store.PasskeyByCredentialID(ctx, parsed.Response.AttestationObject.AuthData.AttData.CredentialID)
	registered := err == nil
	if err != nil && ErrorCode(err) != ENotFound {
		return nil, err
	}
	var out *PasskeyAdded
	err = s.inTx(ctx, func(tx *txn) error {
		// The user before the ceremony, as every flow locks them (Store.InTx).
		u, err := tx.User(ctx, u.ID)
		if err != nil {
			return err
		}
		now := s.now()
		if err := sessionLive(ctx, tx, a); err != nil {
			return err
		}
		session, err := s.takeOwnChallenge(ctx, tx, c, u, parsed.Response.CollectedClientData.Challenge,
			PurposeRegister, EventPasskeyAdded, "credential", registrationOver, now)
		if err != nil {
			return err
		}
		keys, err := tx.Passkeys(ctx, u.ID)
		if err != nil {
			return err
		}
		cred, err := rp.CreateCredential(webauthnUser{u: u, keys: keys}, *session, parsed)
		if err != nil {
			return tx.refuse(ctx, s.audit(now, c, EventPasskeyAdded, ResultFailure, u.ID, "registration refused",
				map[string]any{"detail": protocolDetail(err)}), errCredential(err))
		}
		// Under "none" attestation nothing has read the public key yet: a
		// point off its curve, an empty RSA modulus would register a passkey
		// that can never sign in.
		if _, err := webauthncose.ParsePublicKey(cred.PublicKey); err != nil {
			return tx.refuse(ctx, s.audit(now, c, EventPasskeyAdded, ResultFailure, u.ID, "registration refused",
				map[string]any{"detail": protocolDetail(err)}), &Error{Code: EInvalid, Message: InvalidFields, Err: err,
				Fields: []FieldError{{Field: "credential", Message: "holds a public key that is no valid key of its type"}}})
		}
		// Refusals from here on commit, like the ones above: the ceremony
		// stays used and the refusal is logged.
		if len(keys) >= MaxPasskeys {
			return tx.refuse(ctx, s.audit(now, c, EventPasskeyAdded, ResultFailure, u.ID, "too many passkeys", nil),
				errTooManyPasskeys)
		}
		if registered {
			return tx.refuse(ctx, s.audit(now, c, EventPasskeyAdded, ResultFailure, u.ID, "already registered", nil),
				errRegistered)
		}
		if len(cred.ID) > maxCredentialID || len(cred.PublicKey) > maxPublicKey || len(cred.AttestationType) > 32 {
			// WebAuthn allows credential ids of 1023 bytes; the columns hold that much.
			return tx.refuse(ctx, s.audit(now, c, EventPasskeyAdded, ResultFailure, u.ID, "registration refused",
				map[string]any{"detail": "credential id, key or attestation type too long"}), errCredential(nil))
		}
		p := &Passkey{ID: NewID(), UserID: u.ID, Name: name, CredentialID: cred.ID, PublicKey: cred.PublicKey,
			AttestationType: cred.AttestationType, SignCount: cred.Authenticator.SignCount,
			BackupEligible: cred.Flags.BackupEligible, BackupState: cred.Flags.BackupState, CreatedAt: now}
		if aaguid, err := uuid.FromBytes(cred.Authenticator.AAGUID); err == nil {
			p.AAGUID = aaguid
		}
		for _, t := range cred.Transport {
			if len(p.Transports) < 8 && len(t) <= 12 {
				p.Transports = append(p.Transports, string(t))
			}
		}
		if p.AttestationType == "" {
			p.AttestationType = "none"
		}
		factors, err := tx.Factors(ctx, u.ID)
		if err != nil {
			return err
		}
		first := len(keys) == 0 && !hasEnabledFactor(factors)
		if err := dropEnrolments(ctx, tx, factors); err != nil {
			return err
		}
		if err := voidForNewFactor(ctx, tx, u.ID, now); err != nil {
			return err
		}
		if err := tx.CreatePasskey(ctx, p); err != nil {
			if ErrorCode(err) == EConflict { // registered meanwhile: the failed insert ended the transaction
				return errRegistered
			}
			return err
		}
		out = &PasskeyAdded{Passkey: p}
		ended := 0
		if first {
			if out.RecoveryCodes, err = s.replaceRecoveryCodes(ctx, tx, u.ID, now); err != nil {
				return err
			}
			// As when TOTP is enabled: sessions that passed the password
			// alone end, this one aside.
			ids, err := s.endUserSessions(ctx, tx, u.ID, a.SessionID, now, string(EventPasskeyAdded))
			if err != nil {
				return err
			}
			ended = len(ids)
		}
		if err := s.factorNotice(ctx, tx, now, u, ChangePasskeyAdded); err != nil {
			return err
		}
		return tx.CreateSecurityLog(ctx, s.audit(now, c, EventPasskeyAdded, ResultSuccess, u.ID, "",
			map[string]any{"passkey_id": p.ID.String(), "backup_eligible": p.BackupEligible, "first_factor": first,
				"sessions_revoked": ended}))
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

var errRegistered = Errorf(EConflict, "This passkey is already registered.")

// protocolDetail is what the library says of a refused response, for the
// security log: its fixed description, never the response itself.
func protocolDetail(err error) string {
	var d string
	if e, ok := errors.AsType[*protocol.Error](err); ok {
		d = e.Details
	} else if e, ok := errors.AsType[*webauthncose.Error](err); ok {
		d = e.Details
	} else {
		return "malformed"
	}
	if len(d) > 200 {
		d = d[:200]
	}
	return d
}

// Passkeys lists the token's user's passkeys, oldest first. Returns
// ENotFound (passkeys off), EInvalidToken, EUnavailable.
func (s *Service) Passkeys(ctx context.Context, a *AccessClaims) ([]*Passkey, error) {
	if _, err := s.relyingParty(); err != nil {
		return nil, err
	}
	u, err := s.Me(ctx, a)
	if err != nil {
		return nil, err
	}
	return s.store.Passkeys(ctx, u.ID)
}

// RenamePasskey renames one of the token's user's passkeys, logged as
// passkey_renamed (with its id, not the name: the name is the user's
// words). Returns EInvalid, ENotFound (no such passkey, or passkeys off),
// EInvalidToken, EUnavailable.
func (s *Service) RenamePasskey(ctx context.Context, c Client, a *AccessClaims, id uuid.UUID, name string) (*Passkey, error) {
	if _, err := s.relyingParty(); err != nil {
		return nil, err
	}
	if strings.TrimSpace(name) == "" { // the default name is a new passkey's, left unnamed
		return nil, errPasskeyName
	}
	name, err := passkeyName(name)
	if err != nil {
		return nil, err
	}
	var out *Passkey
	err = s.inTx(ctx, func(tx *txn) error {
		u, err := s.tokenUser(tx.User(ctx, a.UserID)) // before the passkeys (Store.InTx)
		if err != nil {
			return err
		}
		now := s.now()
		keys, err := tx.Passkeys(ctx, u.ID)
		if err != nil {
			return err
		}
		if out = passkeyOf(keys, id); out == nil {
			return errNoPasskey
		}
		if out.Name == name {
			return nil // nothing changes, nothing to log
		}
		out.Name = name
		if err := tx.UpdatePasskey(ctx, out); err != nil {
			return err
		}
		return tx.CreateSecurityLog(ctx, s.audit(now, c, EventPasskeyRenamed, ResultSuccess, u.ID, "",
			map[string]any{"passkey_id": out.ID.String()}))
	})
	return out, err
}

var errNoPasskey = Errorf(ENotFound, "No such passkey.")

func passkeyOf(keys []*Passkey, id uuid.UUID) *Passkey {
	for _, p := range keys {
		if p.ID == id {
			return p
		}
	}
	return nil
}

// deleteUserPasskeys deletes every passkey of a user in tx (an
// administrator's reset of the user's factors), logged as passkey_removed
// for the user, and returns how many there were.
func (s *Service) deleteUserPasskeys(ctx context.Context, tx *txn, c Client, user uuid.UUID, by string,
	now time.Time) (int, error) {
	n, err := tx.DeleteUserPasskeys(ctx, user)
	if err != nil || n == 0 {
		return n, err
	}
	return n, tx.CreateSecurityLog(ctx, s.audit(now, c, EventPasskeyRemoved, ResultSuccess, user, "",
		map[string]any{"count": n, "by": by}))
}

// BeginPasskeyLogin starts a sign-in with a passkey: the request options
// (JSON {publicKey: …}) for navigator.credentials.get. Without an
// mfaToken it is a passwordless sign-in with a discoverable credential
// (allowCredentials empty); with one, the second factor of a login whose
// password was right, offering that user's passkeys. The mfa_token is
// checked as VerifyMFA checks it, not spent. Returns EInvalidToken (the
// mfa_token cannot be redeemed), EInvalid (its user has no passkey),
// ENotFound (passkeys off), ERateLimited, EUnavailable.
func (s *Service) BeginPasskeyLogin(ctx context.Context, c Client, mfaToken string) (json.RawMessage, error) {
	rp, err := s.relyingParty()
	if err != nil {
		return nil, err
	}
	if mfaToken == "" {
		if err := s.limitIP(ctx, "passkey-begin", c); err != nil {
			return nil, err
		}
		assertion, session, err := rp.BeginDiscoverableLogin()
		if err != nil {
			return nil, err
		}
		if err := s.saveChallenge(ctx, s.store, session, PurposeLogin, uuid.Nil, uuid.Nil, s.now()); err != nil {
			return nil, err
		}
		return json.Marshal(assertion)
	}
	var out json.RawMessage
	err = s.withMFAToken(ctx, c, mfaToken, func(tx *txn, ch *MFAChallenge, st *SignInState, now time.Time) error {
		u, keys := st.User, st.Passkeys
		if len(keys) == 0 {
			return &Error{Code: EInvalid, Message: "This account has no passkey; use another method.",
				Fields: []FieldError{{Field: "mfa_token", Message: "belongs to an account without a passkey"}}}
		}
		assertion, session, err := rp.BeginLogin(webauthnUser{u: u, keys: keys})
		if err != nil {
			return err
		}
		if err := s.saveChallenge(ctx, tx, session, PurposeMFA, u.ID, ch.ID, now); err != nil {
			return err
		}
		out, err = json.Marshal(assertion)
		return err
	})
	return out, err
}

// FinishPasskeyLogin finishes a passwordless sign-in begun by
// BeginPasskeyLogin without an mfa_token: the passkey names its user, and
// the session's amr is hwk or swk, and mfa (user verification is
// required). The account must be usable as for a password login, except
// that a brute-force lock does not refuse it: that lock stops password
// guessing, and a passkey cannot be guessed. A refused assertion is
// logged and rate-limited per client but counts toward no lock (anyone can
// send junk for someone's credential id). Returns EInvalid (a malformed
// credential), EInvalidToken (an unknown, used or expired ceremony),
// EInvalidCredentials (a refused assertion, a counter that went back),
// EEmailNotVerified, EAccountLocked (an administrator's lock), ENotFound
// (passkeys off), ERateLimited, EUnavailable.
func (s *Service) FinishPasskeyLogin(ctx context.Context, c Client, credential []byte, deviceInfo string) (*TokenPair, error) {
	rp, err := s.relyingParty()
	if err != nil {
		return nil, err
	}
	if err := checkDeviceInfo(deviceInfo); err != nil {
		return nil, err
	}
	parsed, err := parseAssertion(credential)
	if err != nil {
		return nil, err
	}
	if err := s.limitIP(ctx, "passkey", c); err != nil {
		return nil, err
	}
	ctx, cancel := s.detach(ctx) // a refused assertion is logged whatever the client does
	defer cancel()
	// The credential names its user. It is read before the transaction,
	// unlocked: a read of the store inside it would wait for a second
	// connection while holding one (a full pool of sign-ins would wait for
	// ever), and a locking read would take the passkey before its user.
	found, err := s.store.PasskeyByCredentialID(ctx, parsed.RawID)
	if ErrorCode(err) == ENotFound {
		found = nil // refused as any assertion the library cannot match, below
	} else if err != nil {
		return nil, err
	}
	var pair *TokenPair
	err = s.inTx(ctx, func(tx *txn) error {
		now := s.now()
		_, session, err := s.takeChallenge(ctx, tx, c, parsed.Response.CollectedClientData.Challenge,
			PurposeLogin, EventPasskeyLoginFailed, now)
		if err != nil {
			return err
		}
		owner := credentialOwner{found: found}
		_, cred, err := rp.ValidatePasskeyLogin(owner.lookup(ctx, s, tx, now), *session, parsed)
		if owner.err != nil && ErrorCode(owner.err) != ENotFound {
			return owner.err // the store's failure, not the assertion's
		}
		u, st, key := owner.user(), owner.st, owner.key
		now = s.now() // once the user is held: a session older than a logout-all it waited for would die at once
		if err != nil {
			user := uuid.Nil
			if u != nil {
				user = u.ID
			}
			return tx.refuse(ctx, s.audit(now, c, EventPasskeyLoginFailed, ResultFailure, user, "assertion refused",
				map[string]any{"purpose": string(PurposeLogin), "detail": protocolDetail(err)}), errPasskeyRefused)
		}
		if _, err := s.liftExpired(ctx, tx, c, u, now); err != nil {
			return err
		}
		// The account's state refuses before the key is used: a refused
		// sign-in leaves no passkey_used row and no new last use.
		refuse := func(reason string, err error) error {
			return tx.refuse(ctx, s.audit(now, c, EventLoginFailure, ResultFailure, u.ID, reason,
				map[string]any{"method": MethodPasskey}), err)
		}
		switch {
		case u.IsDeleted():
			return refuse("account deleted", errPasskeyRefused)
		case u.LockedByAdmin(now):
			return refuse("account locked", s.lockedError(u.AccountLockedUntil.Sub(now)))
		case !u.EmailVerified && s.cfg.RequireVerifiedEmail:
			return refuse("email not verified", &Error{Code: EEmailNotVerified,
				Message: "Verify your email address first; we can send the link again."})
		}
		if err := s.usePasskey(ctx, tx, c, u, key, cred, parsed, PurposeLogin, now); err != nil {
			return err
		}
		pair, err = s.startPasskeySession(ctx, tx, c, st, deviceInfo, key, now)
		return err
	})
	if err != nil {
		return nil, err
	}
	return pair, nil
}

// credentialOwner finds, for the WebAuthn library, the user whose passkey
// a sign-in's assertion names (found, read before the transaction; nil:
// none has its id). The user and then their passkeys are locked, in the
// order of every other flow (the other order could deadlock with a
// step-up on PostgreSQL), as every sign-in locks them (SignInState), and
// the key must still be among them. err is why it found no one: ENotFound
// for an assertion that names no passkey, else the store's failure.
type credentialOwner struct {
	found *Passkey
	st    *SignInState
	key   *Passkey
	err   error
}

func (o *credentialOwner) lookup(ctx context.Context, s *Service, tx *txn, now time.Time) webauthn.DiscoverableUserHandler {
	return func(rawID, _ []byte) (webauthn.User, error) {
		if o.found == nil || !bytes.Equal(rawID, o.found.CredentialID) {
			o.err = errNoPasskey
			return nil, o.err
		}
		if o.st, o.err = tx.SignInState(ctx, o.found.UserID, s.sessionKeep(), now); o.err != nil {
			return nil, o.err
		}
		if o.key = passkeyOf(o.st.Passkeys, o.found.ID); o.key == nil {
			o.err = errNoPasskey // removed meanwhile
			return nil, o.err
		}
		return webauthnUser{u: o.st.User, keys: o.st.Passkeys}, nil
	}
}

// user is the user found, nil when none was.
func (o *credentialOwner) user() *User {
	if o.st == nil {
		return nil
	}
	return o.st.User
}

// startPasskeySession starts a session after a sign-in with key alone,
// whose amr is hwk or swk, and mfa. A brute-force lock still running is
// left as it is (its count too): it goes on stopping password guesses.
func (s *Service) startPasskeySession(ctx context.Context, tx *txn, c Client, st *SignInState, deviceInfo string,
	key *Passkey, now time.Time) (*TokenPair, error) {
	u := st.User
	failed, codes := u.FailedLoginAttempts, u.FailedCodeAttempts
	locked := u.IsLocked(now)
	pair, err := s.startSession(ctx, tx, c, st, deviceInfo, []string{passkeyAMR(key), AMRMFA},
		SignInFactor{Method: MethodPasskey, PasskeyID: key.ID}, "", now)
	if err != nil || !locked {
		return pair, err
	}
	u.FailedLoginAttempts, u.FailedCodeAttempts = failed, codes
	return pair, tx.UpdateUser(ctx, u)
}

// usePasskey completes a verified assertion of key: a signature counter
// that went back (the library's clone warning) refuses it, logged as
// passkey_counter_regression in a committed transaction; otherwise the key
// records its counter, backup state and use, logged as passkey_used.
func (s *Service) usePasskey(ctx context.Context, tx *txn, c Client, u *User, key *Passkey, cred *webauthn.Credential,
	parsed *protocol.ParsedCredentialAssertionData, purpose ChallengePurpose, now time.Time) error {
	received := parsed.Response.AuthenticatorData.Counter
	if cred.Authenticator.CloneWarning || (received != 0 || key.SignCount != 0) && received <= key.SignCount {
		return tx.refuse(ctx, s.audit(now, c, EventPasskeyCounterRegress, ResultFailure, u.ID, "sign counter went back",
			map[string]any{"passkey_id": key.ID.String(), "stored": key.SignCount, "received": received,
				"purpose": string(purpose)}), errPasskeyRefused)
	}
	key.SignCount = received
	key.BackupState = cred.Flags.BackupState
	key.LastUsedAt = now
	if err := tx.UpdatePasskey(ctx, key); err != nil {
		return err
	}
	return tx.CreateSecurityLog(ctx, s.audit(now, c, EventPasskeyUsed, ResultSuccess, u.ID, "",
		map[string]any{"passkey_id": key.ID.String(), "purpose": string(purpose)}))
}

// verifyAssertion checks an assertion of u's passkeys for a ceremony bound
// to u (second factor, step-up). A refused assertion is logged as
// passkey_login_failed and fails with errPasskeyRefused (counting toward
// no lock); a counter that went back likewise (usePasskey).
func (s *Service) verifyAssertion(ctx context.Context, tx *txn, c Client, u *User, session *webauthn.SessionData,
	parsed *protocol.ParsedCredentialAssertionData, purpose ChallengePurpose, now time.Time) (*Passkey, error) {
	rp, err := s.relyingParty()
	if err != nil {
		return nil, err
	}
	keys, err := tx.Passkeys(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	cred, err := rp.ValidateLogin(webauthnUser{u: u, keys: keys}, *session, parsed)
	var key *Passkey
	if err == nil {
		for _, p := range keys {
			if bytes.Equal(p.CredentialID, cred.ID) {
				key = p
			}
		}
	}
	if err != nil || key == nil {
		return nil, tx.refuse(ctx, s.audit(now, c, EventPasskeyLoginFailed, ResultFailure, u.ID, "assertion refused",
			map[string]any{"purpose": string(purpose), "detail": protocolDetail(err)}), errPasskeyRefused)
	}
	return key, s.usePasskey(ctx, tx, c, u, key, cred, parsed, purpose, now)
}

// VerifyMFAPasskey finishes a login that answered MFARequired with a
// passkey: the assertion answers a ceremony begun by BeginPasskeyLogin
// with the same mfa_token. The session's amr is pwd, hwk or swk, mfa. A
// refused assertion counts toward the mfa_token's MaxMFAFailures, not
// toward the account's lock. Returns EInvalid, EInvalidToken (the
// mfa_token cannot be redeemed, or the ceremony is unknown, used, expired
// or not this mfa_token's), EInvalidCredentials, EAccountLocked,
// ENotFound (passkeys off), ERateLimited, EUnavailable.
func (s *Service) VerifyMFAPasskey(ctx context.Context, c Client, mfaToken string, credential []byte) (*TokenPair, error) {
	ctx, cancel := s.detach(ctx) // a refused assertion is counted whatever the client does
	defer cancel()
	if _, err := s.relyingParty(); err != nil {
		return nil, err
	}
	parsed, err := parseAssertion(credential)
	if err != nil {
		return nil, err
	}
	var pair *TokenPair
	err = s.withMFAToken(ctx, c, mfaToken, func(tx *txn, ch *MFAChallenge, st *SignInState, now time.Time) error {
		u := st.User
		wch, session, err := s.takeChallenge(ctx, tx, c, parsed.Response.CollectedClientData.Challenge, PurposeMFA,
			EventMFAChallengeFailed, now)
		if err != nil {
			return err
		}
		if wch.MFAChallengeID != ch.ID || wch.UserID != u.ID {
			return s.refuseToken(ctx, tx, c, EventMFAChallengeFailed, u.ID, "passkey challenge of another login", nil)
		}
		// A passkey added since the password was checked voided the
		// challenge (voidForNewFactor): every key here predates it.
		key, err := s.verifyAssertion(ctx, tx, c, u, session, parsed, PurposeMFA, now)
		if err != nil {
			if ErrorCode(err) == EInvalidCredentials {
				if e := countMFAFailure(ctx, tx, ch); e != nil {
					return e
				}
			}
			return err
		}
		pair, err = s.passMFA(ctx, tx, c, st, ch, SignInFactor{Method: MethodPasskey, PasskeyID: key.ID}, passkeyAMR(key), now)
		return err
	})
	return pair, err
}

// BeginStepUp starts a step-up ceremony for the token's user: request
// options (JSON {publicKey: …}) for their passkeys. Returns ENotFound (no
// passkey, or passkeys off), ERateLimited, EInvalidToken, EUnavailable.
func (s *Service) BeginStepUp(ctx context.Context, a *AccessClaims) (json.RawMessage, error) {
	rp, u, keys, err := s.passkeyOwner(ctx, a)
	if err != nil {
		return nil, err
	}
	return s.stepUpOptions(ctx, rp, u, keys)
}

// stepUpOptions begins a step-up ceremony for u, whose passkeys are keys.
func (s *Service) stepUpOptions(ctx context.Context, rp *webauthn.WebAuthn, u *User, keys []*Passkey) (json.RawMessage,
	error) {
	if len(keys) == 0 {
		return nil, Errorf(ENotFound, "You have no passkey; prove the second factor with a code.")
	}
	assertion, session, err := rp.BeginLogin(webauthnUser{u: u, keys: keys})
	if err != nil {
		return nil, err
	}
	if err := s.saveChallenge(ctx, s.store, session, PurposeStepUp, u.ID, uuid.Nil, s.now()); err != nil {
		return nil, err
	}
	return json.Marshal(assertion)
}

// checkPasskeyProof checks a passkey assertion given as step-up proof: it
// must answer a step-up ceremony of u (EInvalidToken otherwise) and verify
// (errPasskeyRefused otherwise, logged, counting toward no lock).
func (s *Service) checkPasskeyProof(ctx context.Context, tx *txn, c Client, u *User, assertion []byte, event EventType,
	now time.Time) error {
	parsed, err := parseAssertion(assertion)
	if err != nil {
		return err
	}
	session, err := s.takeOwnChallenge(ctx, tx, c, u, parsed.Response.CollectedClientData.Challenge, PurposeStepUp,
		event, "passkey", stepUpOver, now)
	if err != nil {
		return err
	}
	if _, err = s.verifyAssertion(ctx, tx, c, u, session, parsed, PurposeStepUp, now); err != nil {
		return err
	}
	return s.codeRight(ctx, tx, u, now)
}

// DeletePasskey removes one of the token's user's passkeys, given the
// step-up proof of a second factor (the passkey itself will do) and the
// password, required from a session signed in without it (a passkey's:
// withSecondFactor). The last second factor gone, the recovery codes go
// too; registrations not finished go always (factorRemoved). Returns
// EInvalid, EInvalidCredentials, EInvalidToken, ENotFound (no such
// passkey, or passkeys off: an administrator's reset-mfa removes them
// then), EAccountLocked, ERateLimited, EUnavailable.
func (s *Service) DeletePasskey(ctx context.Context, c Client, a *AccessClaims, id uuid.UUID, password string,
	proof StepUp) error {
	if _, err := s.relyingParty(); err != nil {
		return err
	}
	return s.withSecondFactor(ctx, c, a, password, proof, EventPasskeyRemoved, func(tx *txn, u *User, _ *Factor, now time.Time) error {
		keys, err := tx.Passkeys(ctx, u.ID)
		if err != nil {
			return err
		}
		p := passkeyOf(keys, id)
		if p == nil {
			return errNoPasskey
		}
		if err := tx.DeletePasskey(ctx, p.ID); err != nil {
			return err
		}
		removed := SignInFactor{Method: MethodPasskey, PasskeyID: p.ID}
		if err := s.factorRemoved(ctx, tx, c, u.ID, removed, a.SessionID, now); err != nil {
			return err
		}
		if err := s.factorNotice(ctx, tx, now, u, ChangePasskeyRemoved); err != nil {
			return err
		}
		return tx.CreateSecurityLog(ctx, s.audit(now, c, EventPasskeyRemoved, ResultSuccess, u.ID, "",
			map[string]any{"passkey_id": p.ID.String()}))
	})
}
