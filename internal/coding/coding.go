// Package coding reads a request's Content-Encoding (RFC 9110 §8.4) for the
// HTTP adapters, which read bodies only as they were sent.
package coding

import (
	"net/http"
	"strings"
)

// Encoded reports whether a body with header h carries a content coding
// other than identity: in any Content-Encoding field, any item of its
// comma-separated list.
func Encoded(h http.Header) bool {
	for _, field := range h.Values("Content-Encoding") {
		for item := range strings.SplitSeq(field, ",") {
			if item = strings.TrimSpace(item); item != "" && !strings.EqualFold(item, "identity") {
				return true
			}
		}
	}
	return false
}
