package password

import (
	"bufio"
	_ "embed"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/authd/authd"
)

// MaxLength is the longest password accepted, in code points (SPEC §6.1).
const MaxLength = 128

// common.txt holds the 20,000 most common passwords, lower-cased, most
// common first: the passwords list of zxcvbn (MIT licence), which ranks the
// Xato corpus of ten million leaked passwords.
//
//go:embed common.txt
var commonList string

var common = sync.OnceValue(func() map[string]struct{} {
	set := make(map[string]struct{}, 20000)
	sc := bufio.NewScanner(strings.NewReader(commonList))
	for sc.Scan() {
		set[sc.Text()] = struct{}{}
	}
	return set
})

// IsCommon reports whether pw, ignoring case, is on the common list.
func IsCommon(pw string) bool {
	_, ok := common()[strings.ToLower(pw)]
	return ok
}

// Policy is the password policy of SPEC §6.1: a length in code points, no
// common password, not containing the name part of the account's email. No
// composition rules (NIST SP 800-63B).
type Policy struct {
	MinLength int
}

// Check returns an authd.EWeakPassword error saying why pw is refused, or nil.
func (p Policy) Check(pw, email string) error {
	if !utf8.ValidString(pw) {
		return weak("must be valid UTF-8 text")
	}
	if strings.ContainsRune(pw, 0) {
		// The JSON API refuses NUL in every string: a password the hosted
		// forms let through could never be used there.
		return weak("must not contain NUL characters")
	}
	// A password is as long as the shorter of what was typed and what is
	// hashed (NFKC, which the other rules apply too; SPEC 6.1 counts code
	// points): NFKC can make one character several (ﷺ is 18), which must
	// not pass a short password nor refuse a typed one under 128, or fold
	// several into one (e and a combining acute are é), which must not
	// pass six letters as twelve.
	n := min(utf8.RuneCountInString(pw), utf8.RuneCountInString(Normalize(pw)))
	switch {
	case n < p.MinLength:
		return weak(fmt.Sprintf("must be at least %d characters long", p.MinLength))
	case n > MaxLength:
		return weak(fmt.Sprintf("must be at most %d characters long", MaxLength))
	case IsCommon(pw) || IsCommon(Normalize(pw)):
		return weak("is one of the most commonly used passwords")
	}
	// A local part of one or two characters would forbid half the alphabet.
	if local, _, ok := strings.Cut(email, "@"); ok && utf8.RuneCountInString(local) >= 3 &&
		strings.Contains(strings.ToLower(Normalize(pw)), strings.ToLower(local)) {
		return weak("must not contain the name part of your email address")
	}
	return nil
}

func weak(reason string) error {
	return &authd.Error{Code: authd.EWeakPassword, Message: "The password " + reason + ".",
		Fields: []authd.FieldError{{Field: "password", Message: reason}}}
}
