package authd

import "testing"

// TestStoredDigestsNeverChange: the keyed digests that rows and shared
// stores hold (client secrets, recovery codes, refresh-token children,
// rate-limit keys, unknown client ids) must come out the same in every
// release, or an upgrade would lock every client and user out. The
// vectors were computed by v1.
func TestStoredDigestsNeverChange(t *testing.T) {
	s := &Service{refreshKey: []byte("0123456789abcdef0123456789abcdef"), mfaKey: []byte("fedcba9876543210fedcba9876543210")}
	child, _ := s.childToken("parent")
	for _, tt := range []struct{ name, got, want string }{
		{"client id", s.clientIDDigest("abc"), "041cafb020a3"},
		{"client secret", s.clientSecretDigest("id", "sec"), "bfdcc17daaafccde57755c38376bcdddb13b14ef0e6fb6592c526abbd47a00e2"},
		{"recovery code", s.recoveryDigest("abcde-fghij"), "fbb486bcdf904d978646d694859ac5d5128d1d31a8357ffc3f014d866391fd15"},
		{"refresh child", child, "FsaCK4iZOc3_wFpAup-3jRhyBYBuJzC_7iTEmfFQLD4"},
		{"rate-limit email", s.emailKey("a@b.c"), "3c746e5803ab96d2d179cb7b80a440d4"},
	} {
		if tt.got != tt.want {
			t.Errorf("%s digest %s, want %s", tt.name, tt.got, tt.want)
		}
	}
}
