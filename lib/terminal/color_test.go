package terminal

import (
	"os"
	"testing"
)

func TestParseRGB(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want RGB
		ok   bool
	}{
		{"#e5484d", RGB{0xe5, 0x48, 0x4d}, true},
		{"#FFC53D", RGB{0xff, 0xc5, 0x3d}, true},
		{"#000000", RGB{}, true},
		{"e5484d", RGB{}, false},
		{"#e5484", RGB{}, false},
		{"#e5484dd", RGB{}, false},
		{"#gg0000", RGB{}, false},
		{"#-12345", RGB{}, false},
		{"red", RGB{}, false},
	} {
		got, ok := ParseRGB(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseRGB(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
		if ok && got.Hex() != lower(tc.in) {
			t.Errorf("ParseRGB(%q).Hex() = %q", tc.in, got.Hex())
		}
	}
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func TestMix(t *testing.T) {
	red := RGB{0xe5, 0x48, 0x4d}
	for _, tc := range []struct {
		a, b RGB
		t    float64
		want RGB
	}{
		{black, red, 0, black},
		{black, red, 1, red},
		{black, red, 0.15, RGB{34, 11, 12}}, // 229*.15 = 34.35, 72*.15 = 10.8, 77*.15 = 11.55
		{RGB{255, 255, 255}, black, 0.5, RGB{128, 128, 128}},
		{black, red, -1, black},
		{black, red, 2, red},
	} {
		if got := tc.a.Mix(tc.b, tc.t); got != tc.want {
			t.Errorf("%v.Mix(%v, %v) = %v, want %v", tc.a, tc.b, tc.t, got, tc.want)
		}
	}
	if got := Background(red); got != (RGB{34, 11, 12}) {
		t.Errorf("Background(red) = %v", got)
	}
}

func TestIndex256(t *testing.T) {
	for _, tc := range []struct {
		c    RGB
		want int
	}{
		{RGB{0, 0, 0}, 16},
		{RGB{255, 255, 255}, 231},
		{RGB{255, 0, 0}, 196},
		{RGB{0, 255, 0}, 46},
		{RGB{0, 0, 255}, 21},
		{RGB{95, 135, 175}, 16 + 36*1 + 6*2 + 3},
		// Greys fall on the ramp where it is closer than the cube.
		{RGB{128, 128, 128}, 244},
		{RGB{8, 8, 8}, 232},
		{RGB{238, 238, 238}, 255},
		{RGB{0x30, 0x30, 0x30}, 236},
		// The palette's mid-tones.
		{RGB{0xe5, 0x48, 0x4d}, 167},
		{RGB{0x00, 0x90, 0xff}, 33},
	} {
		if got := tc.c.Index256(); got != tc.want {
			t.Errorf("%v.Index256() = %d, want %d", tc.c, got, tc.want)
		}
	}
}

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestDepth(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		want Depth
	}{
		{nil, Color256},
		{[]string{"TERM", "xterm-256color"}, Color256},
		{[]string{"COLORTERM", "truecolor"}, TrueColor},
		{[]string{"COLORTERM", "24bit"}, TrueColor},
		{[]string{"NO_COLOR", "1", "COLORTERM", "truecolor"}, NoColor},
		// no-color.org: set and not empty.
		{[]string{"NO_COLOR", ""}, Color256},
		{[]string{"TERM", "dumb"}, NoColor},
	} {
		if got := EnvDepth(env(tc.env...)); got != tc.want {
			t.Errorf("EnvDepth(%q) = %v, want %v", tc.env, got, tc.want)
		}
	}
	// Not a terminal: never colour.
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if d := ColorDepth(f, env("COLORTERM", "truecolor")); d != NoColor {
		t.Errorf("ColorDepth(a file) = %v", d)
	}
	_, tty := openPTY(t)
	if d := ColorDepth(tty, env("COLORTERM", "truecolor")); d != TrueColor {
		t.Errorf("ColorDepth(a pty) = %v", d)
	}
	if d := ColorDepth(tty, env("NO_COLOR", "1")); d != NoColor {
		t.Errorf("ColorDepth(a pty, NO_COLOR) = %v", d)
	}
}

func TestPaint(t *testing.T) {
	red := RGB{0xe5, 0x48, 0x4d}
	for _, tc := range []struct {
		d    Depth
		want string
	}{
		{NoColor, "bob"},
		{Color256, "\x1b[38;5;167mbob\x1b[39m"},
		{TrueColor, "\x1b[38;2;229;72;77mbob\x1b[39m"},
	} {
		if got := tc.d.Paint("bob", red); got != tc.want {
			t.Errorf("Depth(%d).Paint = %q, want %q", tc.d, got, tc.want)
		}
	}
}
