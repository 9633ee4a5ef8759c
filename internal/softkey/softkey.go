// Package softkey is a software WebAuthn authenticator for authd's tests
// (never imported by the service): an ES256 key that answers creation
// options with a "none" or "packed" (self) attestation and request options
// with assertions, as a browser hands them to authd (credential.toJSON()).
package softkey

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"testing"
)

// Key is one authenticator's credential. Tests spoil its fields to make
// the answers wrong.
type Key struct {
	t          testing.TB
	ID         []byte
	key        *ecdsa.PrivateKey
	RPID       string
	Origin     string
	UserHandle []byte
	Count      uint32 // the signature counter; each assertion adds Step
	Step       uint32
	Backup     bool // backup eligible and backed up: a synced passkey
	Packed     bool // packed self-attestation instead of none
	NoUV       bool // the user was not verified
	OffCurve   bool // its registered public key is no point of the curve (a broken authenticator)
}

// New returns a key for the relying party rpID, used from origin.
func New(t testing.TB, rpID, origin string) *Key {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id := make([]byte, 16)
	rand.Read(id)
	return &Key{t: t, ID: id, key: key, RPID: rpID, Origin: origin, Step: 1}
}

// PKCS8 is the private key in PKCS #8, as the DevTools virtual
// authenticator takes a credential (WebAuthn.addCredential).
func (k *Key) PKCS8() []byte {
	der, err := x509.MarshalPKCS8PrivateKey(k.key)
	if err != nil {
		k.t.Fatal(err)
	}
	return der
}

var b64 = base64.RawURLEncoding

// Authenticator data flags (WebAuthn §6.1).
const (
	flagUP = 0x01
	flagUV = 0x04
	flagBE = 0x08
	flagBS = 0x10
	flagAT = 0x40
)

func (k *Key) flags() byte {
	f := byte(flagUP | flagUV)
	if k.NoUV {
		f = flagUP
	}
	if k.Backup {
		f |= flagBE | flagBS
	}
	return f
}

// cbor encodes the few CBOR items a credential needs.
type cbor []byte

func (c cbor) head(major byte, n int) cbor {
	switch {
	case n < 24:
		return append(c, major<<5|byte(n))
	case n < 256:
		return append(c, major<<5|24, byte(n))
	default:
		return append(c, major<<5|25, byte(n>>8), byte(n))
	}
}
func (c cbor) int(n int) cbor {
	if n < 0 {
		return c.head(1, -1-n)
	}
	return c.head(0, n)
}
func (c cbor) bytes(b []byte) cbor { return append(c.head(2, len(b)), b...) }
func (c cbor) text(s string) cbor  { return append(c.head(3, len(s)), s...) }
func (c cbor) mapOf(n int) cbor    { return c.head(5, n) }

// coseKey is the public key as a COSE_Key (EC2, P-256, ES256).
func (k *Key) coseKey() []byte {
	pub, err := k.key.PublicKey.Bytes() // 0x04 || X || Y
	if err != nil {
		k.t.Fatal(err)
	}
	if k.OffCurve {
		pub[64] ^= 1 // y changed: (x, y) is off the curve
	}
	return cbor{}.mapOf(5).int(1).int(2).int(3).int(-7).int(-1).int(1).
		int(-2).bytes(pub[1:33]).int(-3).bytes(pub[33:65])
}

func (k *Key) clientData(typ, challenge string) []byte {
	b, _ := json.Marshal(map[string]any{"type": typ, "challenge": challenge, "origin": k.Origin, "crossOrigin": false})
	return b
}

func (k *Key) authData(extra []byte, flags byte) []byte {
	rp := sha256.Sum256([]byte(k.RPID))
	out := append(rp[:], flags)
	out = binary.BigEndian.AppendUint32(out, k.Count)
	return append(out, extra...)
}

func (k *Key) sign(authData, clientData []byte) []byte {
	cd := sha256.Sum256(clientData)
	digest := sha256.Sum256(append(append([]byte{}, authData...), cd[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, k.key, digest[:])
	if err != nil {
		k.t.Fatal(err)
	}
	return sig
}

// Create answers creation options as navigator.credentials.create would.
func (k *Key) Create(options map[string]any) map[string]any {
	k.t.Helper()
	challenge, _ := options["challenge"].(string)
	user, _ := options["user"].(map[string]any)
	handle, err := b64.DecodeString(user["id"].(string))
	if err != nil {
		k.t.Fatalf("user.id %v: %v", user["id"], err)
	}
	k.UserHandle = handle
	clientData := k.clientData("webauthn.create", challenge)
	attested := append(make([]byte, 16), byte(len(k.ID)>>8), byte(len(k.ID))) // AAGUID zero
	attested = append(append(attested, k.ID...), k.coseKey()...)
	authData := k.authData(attested, k.flags()|flagAT)
	obj := cbor{}.mapOf(3).text("fmt")
	if k.Packed {
		obj = obj.text("packed").text("attStmt").mapOf(2).text("alg").int(-7).
			text("sig").bytes(k.sign(authData, clientData))
	} else {
		obj = obj.text("none").text("attStmt").mapOf(0)
	}
	obj = obj.text("authData").bytes(authData)
	return map[string]any{
		"id": b64.EncodeToString(k.ID), "rawId": b64.EncodeToString(k.ID), "type": "public-key",
		"authenticatorAttachment": "platform",
		"response": map[string]any{"clientDataJSON": b64.EncodeToString(clientData),
			"attestationObject": b64.EncodeToString(obj), "transports": []string{"internal", "hybrid"}},
		"clientExtensionResults": map[string]any{"credProps": map[string]any{"rk": true}},
	}
}

// Get answers request options as navigator.credentials.get would.
func (k *Key) Get(options map[string]any) map[string]any {
	k.t.Helper()
	k.Count += k.Step
	challenge, _ := options["challenge"].(string)
	clientData := k.clientData("webauthn.get", challenge)
	authData := k.authData(nil, k.flags())
	return map[string]any{
		"id": b64.EncodeToString(k.ID), "rawId": b64.EncodeToString(k.ID), "type": "public-key",
		"authenticatorAttachment": "platform",
		"response": map[string]any{"clientDataJSON": b64.EncodeToString(clientData),
			"authenticatorData": b64.EncodeToString(authData), "signature": b64.EncodeToString(k.sign(authData, clientData)),
			"userHandle": b64.EncodeToString(k.UserHandle)},
		"clientExtensionResults": map[string]any{},
	}
}
