package coding

import (
	"net/http"
	"testing"
)

func TestEncoded(t *testing.T) {
	for _, c := range []struct {
		fields []string
		want   bool
	}{
		{nil, false},
		{[]string{""}, false},
		{[]string{"identity"}, false},
		{[]string{"Identity"}, false},
		{[]string{" identity , IDENTITY "}, false},
		{[]string{"gzip"}, true},
		{[]string{"identity, gzip"}, true},
		{[]string{"identity", "gzip"}, true}, // a second field counts too
		{[]string{"br", "identity"}, true},
		{[]string{",, x-custom"}, true},
	} {
		h := http.Header{"Content-Encoding": c.fields}
		if got := Encoded(h); got != c.want {
			t.Errorf("Content-Encoding %q: Encoded = %v, want %v", c.fields, got, c.want)
		}
	}
}
