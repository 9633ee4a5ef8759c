package templates_test

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// TestPasswordFieldsTakeAnyPassword: no hosted page's password field
// carries a maxlength. A browser counts it in UTF-16 code units and cuts
// what is typed or pasted past it without a word, while SPEC 6.1 counts
// code points (an emoji is two units), after NFKC (which folds up to four
// typed code points into one): a password the API takes would be cut on
// the page and refused as wrong, each try counted toward the lock. The
// server bounds the body and applies the policy.
func TestPasswordFieldsTakeAnyPassword(t *testing.T) {
	files, err := filepath.Glob("../*/pages/*.html")
	if err != nil || len(files) < 2 {
		t.Fatalf("the hosted pages: %v, %v", files, err)
	}
	input := regexp.MustCompile(`(?s)<input\b[^>]*>`)
	password := regexp.MustCompile(`\btype="password"`)
	bounded := regexp.MustCompile(`\bmaxlength=`)
	fields := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, tag := range input.FindAll(b, -1) {
			if !password.Match(tag) {
				continue
			}
			fields++
			if bounded.Match(tag) {
				t.Errorf("%s: a password field with a maxlength: %s", f, tag)
			}
		}
	}
	if fields < 7 {
		t.Errorf("found %d password fields in %v; want the sign-in, sign-up, reset and step-up pages' (7 or more)", fields, files)
	}
}
