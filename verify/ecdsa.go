package verify

import (
	"bytes"
	"crypto/elliptic"
	"math/big"
	"strings"
)

// An ECDSA signature (r, s) verifies exactly when (r, n−s) does, n being
// the curve's order, so that every ES256 token has a twin spelling that
// anyone holding the token can write. The two are one token: keyed by the
// spelling with the lower s, they share one cache entry and one
// introspection, and the twin costs what a repeat costs. (segmentEncoding's
// strictness closes the other way to respell a token.)

var (
	p256Order     = elliptic.P256().Params().N
	p256HalfOrder = new(big.Int).Rsh(p256Order, 1).FillBytes(make([]byte, 32)) // (n−1)/2: n is odd
)

// es256Signature is the length of an ES256 signature segment: r ‖ s, 32
// bytes each, base64url unpadded.
const es256Signature = 86

// lowS returns token spelt with the lower s of its ES256 signature. A
// token of another algorithm, or not a token, is returned unchanged, for
// verifySignature to judge.
func (v *Verifier) lowS(token string) string {
	i := strings.LastIndexByte(token, '.')
	// Compact first: the decoder skips line breaks, so a segment of the
	// right length could decode short (and its header reach the cache).
	if i < 0 || len(token)-i-1 != es256Signature || len(token) > maxTokenLength || strings.IndexFunc(token, notCompact) >= 0 {
		return token
	}
	h64, _, _ := strings.Cut(token, ".")
	if h, err := v.headers.parse(h64); err != nil || h.Alg != "ES256" {
		return token
	}
	sig, err := segmentEncoding.DecodeString(token[i+1:])
	if err != nil || len(sig) != 64 {
		return token
	}
	s := sig[32:]
	if bytes.Compare(s, p256HalfOrder) <= 0 {
		return token
	}
	n := new(big.Int).SetBytes(s)
	if n.Cmp(p256Order) >= 0 {
		return token // not a signature: verifySignature refuses it
	}
	n.Sub(p256Order, n).FillBytes(s)
	return token[:i+1] + segmentEncoding.EncodeToString(sig)
}
