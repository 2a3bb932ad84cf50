package plan

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/bb-bottles/bb/lib/canary"
	"github.com/bb-bottles/bb/lib/routes"
)

func TestSlugBase(t *testing.T) {
	tests := []struct{ agent, want string }{
		{"demo", "demo"},
		{"Demo", "demo"},
		{"my_agent!!x", "my-agent-x"},
		{"  fix #42  ", "fix-42"},
		{"---", "agent"},
		{"", "agent"},
		{"Äbc", "bc"},
		{"über.cool", "ber-cool"},
		{strings.Repeat("a", 100), strings.Repeat("a", 58)},
		// Cut at 58 right after a '-': the '-' goes too.
		{strings.Repeat("a", 57) + "-bbb", strings.Repeat("a", 57)},
	}
	for _, tt := range tests {
		if got := SlugBase(tt.agent); got != tt.want {
			t.Errorf("SlugBase(%q) = %q, want %q", tt.agent, got, tt.want)
		}
	}
}

func TestMintSlug(t *testing.T) {
	agents := []string{"demo", "Claude Code", "x", "_", strings.Repeat("long-", 30), "a.b.c", "Ω"}
	seen := map[string]bool{}
	const n = 200
	for i := 0; i < n; i++ {
		agent := agents[i%len(agents)]
		s, err := MintSlug(agent, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !ValidSlug(s) || len(s) > 63 {
			t.Errorf("MintSlug(%q) = %q: not a DNS label", agent, s)
		}
		if base := SlugBase(agent); !strings.HasPrefix(s, base+"-") || len(s) != len(base)+5 {
			t.Errorf("MintSlug(%q) = %q, want %s-XXXX", agent, s, base)
		}
		seen[strings.TrimPrefix(s, SlugBase(agent))] = true
	}
	// 20 random bits: a handful of repeats among 200 would be a broken
	// random source, not bad luck.
	if len(seen) < n-10 {
		t.Errorf("%d distinct suffixes in %d mints", len(seen), n)
	}
	s, err := MintSlug("demo", bytes.NewReader([]byte{0, 0, 0}))
	if err != nil || s != "demo-aaaa" {
		t.Errorf("MintSlug with zero bytes = %q, %v; want demo-aaaa", s, err)
	}
	if _, err := MintSlug("demo", bytes.NewReader(nil)); err == nil {
		t.Error("MintSlug with an empty reader: no error")
	}
}

func TestValidSlug(t *testing.T) {
	tests := []struct {
		s    string
		want bool
	}{
		{"demo-abcd", true},
		{"a", true},
		{"0", true},
		{strings.Repeat("a", 63), true},
		{strings.Repeat("a", 64), false},
		{"", false},
		{"-demo", false},
		{"demo-", false},
		{"Demo", false},
		{"de_mo", false},
		{"de.mo", false},
		{"../etc", false},
	}
	for _, tt := range tests {
		if got := ValidSlug(tt.s); got != tt.want {
			t.Errorf("ValidSlug(%q) = %v, want %v", tt.s, got, tt.want)
		}
	}
}

func TestMintCanary(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		c, err := MintCanary(nil)
		if err != nil {
			t.Fatal(err)
		}
		if !ValidCanary(c) {
			t.Fatalf("MintCanary() = %q: not canary-shaped", c)
		}
		b, err := base64.RawURLEncoding.DecodeString(c)
		if err != nil || len(b) != 32 {
			t.Fatalf("MintCanary() = %q: decodes to %d bytes, %v", c, len(b), err)
		}
		if seen[c] {
			t.Fatalf("MintCanary() repeated %q", c)
		}
		seen[c] = true
	}
	if _, err := MintCanary(bytes.NewReader(make([]byte, 31))); err == nil {
		t.Error("MintCanary with 31 bytes: no error")
	}
}

func TestValidCanary(t *testing.T) {
	tests := []struct {
		s    string
		want bool
	}{
		{strings.Repeat("A", 43), true},
		{"NTt2imGom4qbWbA_50Tb4Wn1kU1pFI1zftV5hrXIpeQ", true},
		{strings.Repeat("A", 42), false},
		{strings.Repeat("A", 44), false},
		{strings.Repeat("A", 42) + "=", false},
		// 43 characters hold 258 bits: the last 2 must be zero.
		{strings.Repeat("A", 42) + "B", false},
		{strings.Repeat("A", 42) + "E", true},
		{strings.Repeat("A", 42) + "+", false},
		{strings.Repeat("A", 42) + "/", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := ValidCanary(tt.s); got != tt.want {
			t.Errorf("ValidCanary(%q) = %v, want %v", tt.s, got, tt.want)
		}
		if got := canary.Valid(tt.s); got != tt.want {
			t.Errorf("canary.Valid(%q) = %v, want %v: the two rules differ", tt.s, got, tt.want)
		}
	}
}

func TestPlaceholder(t *testing.T) {
	a := Placeholder("demo-abcd", "ANTHROPIC")
	if a != Placeholder("demo-abcd", "ANTHROPIC") {
		t.Error("Placeholder is not deterministic")
	}
	if !strings.HasPrefix(a, "bb-placeholder-ANTHROPIC-") {
		t.Errorf("Placeholder = %q, want bb-placeholder-ANTHROPIC-...", a)
	}
	for _, other := range []string{Placeholder("demo-abce", "ANTHROPIC"), Placeholder("demo-abcd", "OPENAI")} {
		if other == a {
			t.Errorf("Placeholder does not depend on slug and name: %q", a)
		}
	}
	r := routes.Route{Host: "api.anthropic.com", Inject: &routes.Inject{Header: "x-api-key", Token: "ANTHROPIC", Placeholder: a}}
	if err := r.Validate(); err != nil {
		t.Errorf("a route with the placeholder: %v", err)
	}
}

func TestNormalizeColor(t *testing.T) {
	tests := []struct {
		c, want string
		ok      bool
	}{
		{"red", "red", true},
		{"pink", "pink", true},
		{"#A0b1C2", "#a0b1c2", true},
		{"Red", "", false},
		{"mauve", "", false},
		{"#abc", "", false},
		{"#abcdeg", "", false},
		{"a0b1c2", "", false},
	}
	for _, tt := range tests {
		got, ok := NormalizeColor(tt.c)
		if got != tt.want || ok != tt.ok {
			t.Errorf("NormalizeColor(%q) = %q, %v; want %q, %v", tt.c, got, ok, tt.want, tt.ok)
		}
	}
	colours := map[string]bool{}
	for _, s := range []string{"a-aaaa", "b-bbbb", "c-cccc", "d-dddd", "e-eeee", "f-ffff", "g-gggg", "h-hhhh", "i-iiii"} {
		c := ColorFor(s)
		if c != ColorFor(s) {
			t.Errorf("ColorFor(%q) is not deterministic", s)
		}
		if _, ok := NormalizeColor(c); !ok {
			t.Errorf("ColorFor(%q) = %q, not in the palette", s, c)
		}
		colours[c] = true
	}
	if len(colours) < 3 {
		t.Errorf("ColorFor gives %d colours for 9 slugs", len(colours))
	}
}

func TestParseMemory(t *testing.T) {
	tests := []struct {
		s    string
		want int64
	}{
		{"4g", 4 << 30},
		{"4G", 4 << 30},
		{"256m", 256 << 20},
		{"512k", 512 << 10},
		{"100b", 100},
		{"100", 100},
		{"", 0},
		{"g", 0},
		{"-1g", 0},
		{"0", 0},
		{"1.5g", 0},
		{"4t", 0},
	}
	for _, tt := range tests {
		got, err := ParseMemory(tt.s)
		if (err != nil) != (tt.want == 0) || got != tt.want {
			t.Errorf("ParseMemory(%q) = %d, %v; want %d", tt.s, got, err, tt.want)
		}
	}
}
