package token

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"time"

	"github.com/authd/authd"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// Issuer signs and verifies access tokens with a Keyring.
type Issuer struct {
	keys     *Keyring
	issuer   string
	audience string
	method   jwt.SigningMethod

	// verified remembers the claims of tokens whose signature checked out,
	// so that resource servers introspecting the same token again cost no
	// signature check. Times, and that the key is still in the directory,
	// are checked on every call.
	mu       sync.RWMutex
	verified map[string]verified
}

// verified is a token whose signature checked out with key.
type verified struct {
	claims *authd.AccessClaims
	key    *Key
}

// maxVerified bounds the verified-token cache (about 4 MB of tokens).
const maxVerified = 10000

var _ authd.AccessTokens = (*Issuer)(nil)

// NewIssuer returns an Issuer for tokens with the iss and aud claims given.
func NewIssuer(keys *Keyring, issuer, audience string) *Issuer {
	return &Issuer{keys: keys, issuer: issuer, audience: audience, method: jwt.GetSigningMethod(keys.Alg()),
		verified: map[string]verified{}}
}

// claims are the JWT claims of an access token (RFC 9068 plus sid).
type claims struct {
	jwt.RegisteredClaims
	SessionID string `json:"sid"`
	// AMR says how the login was authenticated (RFC 8176), so that resource
	// servers can demand a second factor.
	AMR []string `json:"amr,omitempty"`
	// ClientID and Scope (RFC 9068): the OpenID Connect client the token
	// was issued to and its scopes, space-separated; absent for authd's own
	// logins.
	ClientID string `json:"client_id,omitempty"`
	Scope    string `json:"scope,omitempty"`
}

// accessTokenType is the typ header of RFC 9068 access tokens; checking it
// keeps any other JWT signed with the same key from passing as one.
const accessTokenType = "at+jwt"

// Issue implements authd.AccessTokens.
func (i *Issuer) Issue(c authd.AccessClaims) (string, error) {
	key := i.keys.Signing(c.IssuedAt)
	if key == nil {
		return "", i.keys.errNoKey()
	}
	t := jwt.NewWithClaims(i.method, claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    i.issuer,
			Subject:   c.UserID.String(),
			Audience:  jwt.ClaimStrings{i.audience},
			ExpiresAt: jwt.NewNumericDate(c.ExpiresAt),
			NotBefore: jwt.NewNumericDate(c.IssuedAt),
			IssuedAt:  jwt.NewNumericDate(c.IssuedAt),
			ID:        c.JTI,
		},
		SessionID: c.SessionID.String(),
		AMR:       c.AMR,
		ClientID:  c.ClientID,
		Scope:     strings.Join(c.Scope, " "),
	})
	t.Header["kid"] = key.ID
	t.Header["typ"] = accessTokenType
	return t.SignedString(key.Private)
}

var errInvalid = &authd.Error{Code: authd.EInvalidToken, Message: "The token is invalid, expired or revoked."}

// Verify implements authd.AccessTokens: only the configured algorithm, a
// known kid, the at+jwt type, this issuer and audience; exp against now
// exactly, nbf and iat with Leeway, since the instance that issued the
// token may have a clock ahead of this one's.
func (i *Issuer) Verify(token string, now time.Time) (*authd.AccessClaims, error) {
	if len(token) > 8192 {
		return nil, errInvalid
	}
	i.mu.RLock()
	v, ok := i.verified[token]
	i.mu.RUnlock()
	if ok {
		if current, _ := i.keys.known(v.key.ID); current != v.key {
			// Its key was removed (or replaced) since: check the token afresh.
			i.mu.Lock()
			delete(i.verified, token)
			i.mu.Unlock()
			ok = false
		}
	}
	if ok {
		if now.Before(v.claims.IssuedAt.Add(-Leeway)) || !now.Before(v.claims.ExpiresAt) {
			return nil, errInvalid
		}
		claims := *v.claims
		return &claims, nil
	}
	claims, key, err := i.verify(token, now)
	if err != nil {
		return nil, err
	}
	i.mu.Lock()
	if len(i.verified) >= maxVerified {
		for k := range i.verified { // evict one at random: map order is random
			delete(i.verified, k)
			break
		}
	}
	i.verified[token] = verified{claims: claims, key: key}
	i.mu.Unlock()
	out := *claims
	return &out, nil
}

// compact reports whether token is spelt in base64url and dots only: the
// decoder would skip line breaks, giving a token other spellings (each its
// own entry in the cache, for access tokens).
func compact(token string) bool {
	return !strings.ContainsFunc(token, func(r rune) bool {
		return !('A' <= r && r <= 'Z' || 'a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '-' || r == '_' || r == '.')
	})
}

// verify checks a token the cache does not know, and returns the key that
// signed it.
func (i *Issuer) verify(token string, now time.Time) (*authd.AccessClaims, *Key, error) {
	if !compact(token) {
		return nil, nil, errInvalid
	}
	var c claims
	var key *Key
	_, err := jwt.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		if typ, _ := t.Header["typ"].(string); typ != accessTokenType {
			return nil, errors.New("not an access token")
		}
		kid, _ := t.Header["kid"].(string)
		k, ok := i.keys.Key(kid)
		if !ok {
			return nil, fmt.Errorf("unknown kid %q", kid)
		}
		key = k
		return k.Public(), nil
	},
		jwt.WithValidMethods([]string{i.method.Alg()}),
		jwt.WithStrictDecoding(), // one spelling per token: see verify's segmentEncoding
		jwt.WithIssuer(i.issuer),
		jwt.WithAudience(i.audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		// The leeway applies to exp too; exp is checked exactly below.
		jwt.WithLeeway(Leeway),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	if err == nil && !now.Before(c.ExpiresAt.Time) {
		err = jwt.ErrTokenExpired
	}
	if err != nil {
		return nil, nil, &authd.Error{Code: authd.EInvalidToken, Message: errInvalid.Message, Err: err}
	}
	user, err1 := uuid.Parse(c.Subject)
	session, err2 := uuid.Parse(c.SessionID)
	if err1 != nil || err2 != nil || c.ID == "" || c.IssuedAt == nil || c.NotBefore == nil {
		return nil, nil, errInvalid
	}
	return &authd.AccessClaims{JTI: c.ID, UserID: user, SessionID: session, IssuedAt: c.IssuedAt.Time,
		ExpiresAt: c.ExpiresAt.Time, Issuer: c.Issuer, Audience: i.audience, AMR: c.AMR,
		ClientID: c.ClientID, Scope: strings.Fields(c.Scope)}, key, nil
}

// JWK is one public key of a JWKS (RFC 7517, 7518, 8037).
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

// JWKS returns the JSON Web Key Set of the keys published at now, for
// tokens living ttl: the keys about to sign and those still able to verify
// unexpired tokens. Serve it with Cache-Control max-age JWKSMaxAge.
func (kr *Keyring) JWKS(now time.Time, ttl time.Duration) ([]byte, error) {
	return JWKS(now, ttl, kr)
}

// jwks returns the keys kr publishes at now for tokens living ttl.
func (kr *Keyring) jwks(now time.Time, ttl time.Duration) ([]JWK, error) {
	var keys []JWK
	b64 := base64.RawURLEncoding
	for _, k := range kr.Published(now, ttl) {
		j := JWK{Kid: k.ID, Alg: k.Alg, Use: "sig"}
		switch pub := k.Public().(type) {
		case ed25519.PublicKey:
			j.Kty, j.Crv, j.X = "OKP", "Ed25519", b64.EncodeToString(pub)
		case *ecdsa.PublicKey:
			raw, err := pub.Bytes() // 0x04 || X || Y, fixed width
			if err != nil {
				return nil, err
			}
			j.Kty, j.Crv = "EC", "P-256"
			j.X, j.Y = b64.EncodeToString(raw[1:33]), b64.EncodeToString(raw[33:])
		case *rsa.PublicKey:
			j.Kty = "RSA"
			j.N = b64.EncodeToString(pub.N.Bytes())
			j.E = b64.EncodeToString(big.NewInt(int64(pub.E)).Bytes())
		default:
			return nil, fmt.Errorf("key %s: unsupported type %T", k.ID, pub)
		}
		keys = append(keys, j)
	}
	return keys, nil
}
