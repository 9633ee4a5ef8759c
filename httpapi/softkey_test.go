package httpapi_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"testing"
)

// softKey is a software WebAuthn authenticator for tests: an ES256 key
// that answers creation options with a "none" or "packed" (self)
// attestation and request options with assertions, as a browser would
// hand them to authd (credential.toJSON()).
type softKey struct {
	t          testing.TB
	id         []byte
	key        *ecdsa.PrivateKey
	rpID       string
	origin     string
	userHandle []byte
	count      uint32 // the signature counter; each assertion adds step
	step       uint32
	backup     bool // backup eligible and backed up: a synced passkey
	packed     bool // packed self-attestation instead of none
	noUV       bool // the user was not verified
}

func newSoftKey(t testing.TB, rpID, origin string) *softKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id := make([]byte, 16)
	rand.Read(id)
	return &softKey{t: t, id: id, key: key, rpID: rpID, origin: origin, step: 1}
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

func (k *softKey) flags() byte {
	f := byte(flagUP | flagUV)
	if k.noUV {
		f = flagUP
	}
	if k.backup {
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
func (k *softKey) coseKey() []byte {
	pub, err := k.key.PublicKey.Bytes() // 0x04 || X || Y
	if err != nil {
		k.t.Fatal(err)
	}
	return cbor{}.mapOf(5).int(1).int(2).int(3).int(-7).int(-1).int(1).
		int(-2).bytes(pub[1:33]).int(-3).bytes(pub[33:65])
}

func (k *softKey) clientData(typ, challenge string) []byte {
	b, _ := json.Marshal(map[string]any{"type": typ, "challenge": challenge, "origin": k.origin, "crossOrigin": false})
	return b
}

func (k *softKey) authData(extra []byte, flags byte) []byte {
	rp := sha256.Sum256([]byte(k.rpID))
	out := append(rp[:], flags)
	out = binary.BigEndian.AppendUint32(out, k.count)
	return append(out, extra...)
}

func (k *softKey) sign(authData, clientData []byte) []byte {
	cd := sha256.Sum256(clientData)
	digest := sha256.Sum256(append(append([]byte{}, authData...), cd[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, k.key, digest[:])
	if err != nil {
		k.t.Fatal(err)
	}
	return sig
}

// publicKey reads the options of a begin answer ({publicKey: …}).
func publicKey(t testing.TB, r response) map[string]any {
	t.Helper()
	pk, ok := r.body["publicKey"].(map[string]any)
	if !ok {
		t.Fatalf("no publicKey in %s", r.raw)
	}
	return pk
}

// create answers creation options as navigator.credentials.create would.
func (k *softKey) create(options map[string]any) map[string]any {
	k.t.Helper()
	challenge, _ := options["challenge"].(string)
	user, _ := options["user"].(map[string]any)
	handle, err := b64.DecodeString(user["id"].(string))
	if err != nil {
		k.t.Fatalf("user.id %v: %v", user["id"], err)
	}
	k.userHandle = handle
	clientData := k.clientData("webauthn.create", challenge)
	attested := append(make([]byte, 16), byte(len(k.id)>>8), byte(len(k.id))) // AAGUID zero
	attested = append(append(attested, k.id...), k.coseKey()...)
	authData := k.authData(attested, k.flags()|flagAT)
	obj := cbor{}.mapOf(3).text("fmt")
	if k.packed {
		obj = obj.text("packed").text("attStmt").mapOf(2).text("alg").int(-7).
			text("sig").bytes(k.sign(authData, clientData))
	} else {
		obj = obj.text("none").text("attStmt").mapOf(0)
	}
	obj = obj.text("authData").bytes(authData)
	return map[string]any{
		"id": b64.EncodeToString(k.id), "rawId": b64.EncodeToString(k.id), "type": "public-key",
		"authenticatorAttachment": "platform",
		"response": map[string]any{"clientDataJSON": b64.EncodeToString(clientData),
			"attestationObject": b64.EncodeToString(obj), "transports": []string{"internal", "hybrid"}},
		"clientExtensionResults": map[string]any{"credProps": map[string]any{"rk": true}},
	}
}

// get answers request options as navigator.credentials.get would.
func (k *softKey) get(options map[string]any) map[string]any {
	k.t.Helper()
	k.count += k.step
	challenge, _ := options["challenge"].(string)
	clientData := k.clientData("webauthn.get", challenge)
	authData := k.authData(nil, k.flags())
	return map[string]any{
		"id": b64.EncodeToString(k.id), "rawId": b64.EncodeToString(k.id), "type": "public-key",
		"authenticatorAttachment": "platform",
		"response": map[string]any{"clientDataJSON": b64.EncodeToString(clientData),
			"authenticatorData": b64.EncodeToString(authData), "signature": b64.EncodeToString(k.sign(authData, clientData)),
			"userHandle": b64.EncodeToString(k.userHandle)},
		"clientExtensionResults": map[string]any{},
	}
}
