package oidc

import "testing"

// TestOrigin: form-action names a redirect's origin where CSP can name its
// host, and only its scheme otherwise (a source CSP cannot parse is
// dropped by the browser, and the redirect after Allow with it).
func TestOrigin(t *testing.T) {
	for uri, want := range map[string]string{
		"https://rp.example.org/cb":        "https://rp.example.org",
		"https://rp.example.org:8443/cb":   "https://rp.example.org:8443",
		"http://127.0.0.1:4180/cb":         "http://127.0.0.1:4180",
		"https://xn--bcher-kva.example/cb": "https://xn--bcher-kva.example",
		"com.example.app:/callback":        "com.example.app:",
		"https://rp.example.org:/cb":       "https://rp.example.org",
		"http://[::1]:8080/cb":             "http:",
		"https://a_b.example.org/cb":       "https:",
		"https://bücher.example/cb":        "https:",
		"https://a..example.org/cb":        "https:",
		"https://.example.org/cb":          "https:",
		"https://1.2.3/cb":                 "https:",
		"https://0x7f000001/cb":            "https:",
		"https://192.0.2.7:8443/cb":        "https://192.0.2.7:8443",
		"https://rp.example.org./cb":       "https:",
	} {
		if got := origin(uri); got != want {
			t.Errorf("origin(%q) = %q, want %q", uri, got, want)
		}
	}
}
