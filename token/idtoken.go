package token

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// IDTokenAlg is the algorithm of OpenID Connect ID tokens: RS256, the one
// every relying party accepts (OpenID Connect Core §15.1 requires OPs to
// offer it). Its keys live in the same directory as the access-token keys,
// in a Keyring of their own, and rotate the same way (`authd keys rotate`).
const IDTokenAlg = "RS256"

// IDClaims are the claims of an ID token (OpenID Connect Core §2).
type IDClaims struct {
	Issuer    string
	Subject   string
	Audience  string // the client_id
	IssuedAt  time.Time
	ExpiresAt time.Time
	AuthTime  time.Time
	Nonce     string
	AMR       []string
	SessionID string
	// Email is included, with EmailVerified, when the email scope was granted.
	Email         string
	EmailVerified bool
	// AccessToken, when set, is hashed into at_hash (§3.1.3.6).
	AccessToken string
}

type idClaims struct {
	jwt.RegisteredClaims
	AuthTime      int64    `json:"auth_time"`
	Nonce         string   `json:"nonce,omitempty"`
	AMR           []string `json:"amr,omitempty"`
	SessionID     string   `json:"sid,omitempty"`
	AZP           string   `json:"azp"`
	Email         string   `json:"email,omitempty"`
	EmailVerified *bool    `json:"email_verified,omitempty"`
	AtHash        string   `json:"at_hash,omitempty"`
}

// SignID signs an ID token with the keyring's signing key at now. The
// keyring must be of IDTokenAlg.
func (kr *Keyring) SignID(c IDClaims, now time.Time) (string, error) {
	key := kr.Signing(now)
	if key == nil {
		return "", kr.errNoKey()
	}
	cl := idClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    c.Issuer,
			Subject:   c.Subject,
			Audience:  jwt.ClaimStrings{c.Audience},
			ExpiresAt: jwt.NewNumericDate(c.ExpiresAt),
			IssuedAt:  jwt.NewNumericDate(c.IssuedAt),
		},
		AuthTime: c.AuthTime.Unix(), Nonce: c.Nonce, AMR: c.AMR, SessionID: c.SessionID, AZP: c.Audience,
	}
	if c.Email != "" {
		verified := c.EmailVerified
		cl.Email, cl.EmailVerified = c.Email, &verified
	}
	if c.AccessToken != "" {
		// The left half of the SHA-256 of the token, for RS256.
		sum := sha256.Sum256([]byte(c.AccessToken))
		cl.AtHash = base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2])
	}
	t := jwt.NewWithClaims(jwt.GetSigningMethod(kr.alg), cl)
	t.Header["kid"] = key.ID
	t.Header["typ"] = "JWT"
	return t.SignedString(key.Private)
}

// JWKS returns one JSON Web Key Set of the keys every keyring publishes at
// now for tokens living ttl (the access-token keys and the ID-token keys);
// a key in two keyrings is listed once.
func JWKS(now time.Time, ttl time.Duration, rings ...*Keyring) ([]byte, error) {
	var set struct {
		Keys []JWK `json:"keys"`
	}
	set.Keys = []JWK{}
	seen := map[string]bool{}
	for _, kr := range rings {
		if kr == nil {
			continue
		}
		keys, err := kr.jwks(now, ttl)
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			if !seen[k.Kid] {
				seen[k.Kid] = true
				set.Keys = append(set.Keys, k)
			}
		}
	}
	return json.Marshal(set)
}

// IDHint is what an id_token_hint says (RP-initiated logout).
type IDHint struct {
	Subject, Audience, SessionID string
}

// HintSubject is the sub an ID token claims, unverified: what an
// id_token_hint authd cannot verify (its key rotated away) still says of
// the user it means, which may narrow who finishes a request, never widen
// it. ok is false for what is no JWT with a sub.
func HintSubject(raw string) (sub string, ok bool) {
	if !compact(raw) {
		return "", false
	}
	var c idClaims
	if _, _, err := jwt.NewParser().ParseUnverified(raw, &c); err != nil || c.Subject == "" {
		return "", false
	}
	return c.Subject, true
}

// ParseIDHint checks an ID token this keyring signed for issuer, as an
// id_token_hint: signature, algorithm, known key and issuer, but not its
// expiry (a relying party logs out with the ID token it kept, OpenID
// Connect RP-Initiated Logout §2). Claims validation is off for that, so
// the issuer is compared here. EInvalidToken otherwise.
func (kr *Keyring) ParseIDHint(raw, issuer string) (*IDHint, error) {
	if !compact(raw) {
		return nil, errInvalid
	}
	var c idClaims
	_, err := jwt.ParseWithClaims(raw, &c, func(t *jwt.Token) (any, error) {
		if typ, _ := t.Header["typ"].(string); typ != "JWT" {
			return nil, errInvalid
		}
		kid, _ := t.Header["kid"].(string)
		k, ok := kr.Key(kid)
		if !ok {
			return nil, errInvalid
		}
		return k.Public(), nil
	}, jwt.WithValidMethods([]string{kr.alg}), jwt.WithStrictDecoding(), jwt.WithoutClaimsValidation())
	if err != nil || c.Issuer != issuer || len(c.Audience) != 1 || c.Subject == "" {
		return nil, errInvalid
	}
	return &IDHint{Subject: c.Subject, Audience: c.Audience[0], SessionID: c.SessionID}, nil
}
