package terminal

import (
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/mattn/go-isatty"
)

// RGB is a 24-bit colour.
type RGB struct{ R, G, B uint8 }

// ParseRGB parses "#rrggbb" (either case).
func ParseRGB(s string) (RGB, bool) {
	if len(s) != 7 || s[0] != '#' {
		return RGB{}, false
	}
	v, err := strconv.ParseUint(s[1:], 16, 32)
	if err != nil {
		return RGB{}, false
	}
	return RGB{uint8(v >> 16), uint8(v >> 8), uint8(v)}, true
}

// Hex is c as "#rrggbb".
func (c RGB) Hex() string { return fmt.Sprintf("#%02x%02x%02x", c.R, c.G, c.B) }

// Mix returns c moved the fraction t (0..1) of the way toward o.
func (c RGB) Mix(o RGB, t float64) RGB {
	t = math.Max(0, math.Min(1, t))
	m := func(a, b uint8) uint8 { return uint8(math.Round(float64(a) + (float64(b)-float64(a))*t)) }
	return RGB{m(c.R, o.R), m(c.G, o.G), m(c.B, o.B)}
}

// xparse is c as X11's XParseColor reads it in OSC 4, 10 and 11.
func (c RGB) xparse() string { return fmt.Sprintf("rgb:%02x/%02x/%02x", c.R, c.G, c.B) }

// cubeLevels are the six levels of each channel in xterm's 256-colour cube
// (indices 16-231).
var cubeLevels = [6]int{0, 95, 135, 175, 215, 255}

// Index256 is the xterm 256-colour index nearest to c: a colour of the
// 6×6×6 cube or of the 24-step grey ramp (232-255), whichever is closer.
// The 16 system colours are left out: themes change them.
func (c RGB) Index256() int {
	nearest := func(v uint8) int {
		best := 0
		for i, l := range cubeLevels {
			if abs(int(v)-l) < abs(int(v)-cubeLevels[best]) {
				best = i
			}
		}
		return best
	}
	r, g, b := nearest(c.R), nearest(c.G), nearest(c.B)
	cube := RGB{uint8(cubeLevels[r]), uint8(cubeLevels[g]), uint8(cubeLevels[b])}
	// The grey ramp is 8, 18, ..., 238.
	avg := (int(c.R) + int(c.G) + int(c.B)) / 3
	gi := min(max((avg-8+5)/10, 0), 23)
	gv := uint8(8 + 10*gi)
	if dist(c, RGB{gv, gv, gv}) < dist(c, cube) {
		return 232 + gi
	}
	return 16 + 36*r + 6*g + b
}

func abs(v int) int { return max(v, -v) }

func dist(a, b RGB) int {
	dr, dg, db := int(a.R)-int(b.R), int(a.G)-int(b.G), int(a.B)-int(b.B)
	return dr*dr + dg*dg + db*db
}

// Depth is how many colours a terminal is written in.
type Depth int

const (
	// NoColor: plain text (not a terminal, NO_COLOR, TERM=dumb).
	NoColor Depth = iota
	// Color256: xterm's 256 colours, which every current terminal has.
	Color256
	// TrueColor: 24-bit colour, announced by COLORTERM=truecolor or 24bit.
	TrueColor
)

// ColorDepth decides how w is coloured: NoColor unless w is a terminal
// (go-isatty), NO_COLOR is unset or empty (no-color.org) and TERM is not
// "dumb"; then TrueColor when COLORTERM says so, else Color256.
func ColorDepth(w io.Writer, env func(string) string) Depth {
	if !IsTerminal(w) {
		return NoColor
	}
	return EnvDepth(env)
}

// IsTerminal reports whether w is a terminal, by go-isatty. It does not
// call f.Fd(), which would put f in blocking mode for good.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	tty := false
	rc.Control(func(fd uintptr) { tty = isatty.IsTerminal(fd) || isatty.IsCygwinTerminal(fd) }) //nolint:errcheck
	return tty
}

// EnvDepth is ColorDepth for output known to be a terminal.
func EnvDepth(env func(string) string) Depth {
	if env("NO_COLOR") != "" || env("TERM") == "dumb" {
		return NoColor
	}
	switch strings.ToLower(env("COLORTERM")) {
	case "truecolor", "24bit":
		return TrueColor
	}
	return Color256
}

// Fg is the SGR sequence that sets the foreground to c, "" for NoColor.
func (d Depth) Fg(c RGB) string {
	switch d {
	case TrueColor:
		return fmt.Sprintf("\x1b[38;2;%d;%d;%dm", c.R, c.G, c.B)
	case Color256:
		return fmt.Sprintf("\x1b[38;5;%dm", c.Index256())
	}
	return ""
}

// Paint returns s in the foreground colour c, or s as it is for NoColor.
func (d Depth) Paint(s string, c RGB) string {
	if d == NoColor {
		return s
	}
	return d.Fg(c) + s + "\x1b[39m"
}
