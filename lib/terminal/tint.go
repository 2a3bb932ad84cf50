package terminal

import (
	"strings"
	"sync"
	"unicode"
)

// Tint is how a terminal attached to a bottle shows which bottle it is: its
// title, and a dark background in the bottle's colour — set with OSC 11,
// the terminal's own default background, so it shows even behind
// interfaces that paint in true colour and never name a palette entry.
type Tint struct {
	// Title is the window title ("bob (claude-implementer) — slug"); ""
	// leaves the title alone.
	Title string
	// Color is the bottle's colour.
	Color RGB
	// Colors false sets the title only (NO_COLOR: a title is no colour).
	Colors bool
}

// String terminators: ST, which xterm's control sequences document (BEL,
// its older form, is taken by some terminals as a bell).
const (
	osc = "\x1b]"
	st  = "\x1b\\"
)

// Shades of the tint, as fractions of the bottle's colour mixed in.
const (
	backgroundShade = 0.15 // into black: the background, and palette 0
	dimShade        = 0.25 // into mid grey: palette 8, dim text
	textShade       = 0.08 // into near white: the foreground, palettes 7 and 15
)

var (
	black    = RGB{0, 0, 0}
	midGrey  = RGB{0x80, 0x80, 0x80}
	lightish = RGB{0xd0, 0xd0, 0xd0}
	white    = RGB{0xf4, 0xf4, 0xf4}
)

// Background is the tint's background: a dark shade of c.
func Background(c RGB) RGB { return black.Mix(c, backgroundShade) }

// Sequence is what tints a terminal, in order: the title pushed on xterm's
// title stack (XTWINOPS CSI 22;0 t, so Reset can pop it back), the new
// title (OSC 0), palette entries 0, 7, 8 and 15 — black, white and their
// bright forms, which interfaces use for panels, borders and plain text —
// tinted toward the colour (OSC 4), a light foreground (OSC 10), so that
// text stays readable on a light theme too, and the dark background
// (OSC 11).
func (t Tint) Sequence() string {
	var sb strings.Builder
	if t.Title != "" {
		sb.WriteString("\x1b[22;0t")
		sb.WriteString(osc + "0;" + cleanTitle(t.Title) + st)
	}
	if t.Colors {
		bg := Background(t.Color)
		sb.WriteString(osc + "4")
		for _, e := range []struct {
			n string
			c RGB
		}{
			{"0", bg},
			{"7", lightish.Mix(t.Color, textShade)},
			{"8", midGrey.Mix(t.Color, dimShade)},
			{"15", white.Mix(t.Color, textShade)},
		} {
			sb.WriteString(";" + e.n + ";" + e.c.xparse())
		}
		sb.WriteString(st)
		sb.WriteString(osc + "10;" + white.Mix(t.Color, textShade).xparse() + st)
		sb.WriteString(osc + "11;" + bg.xparse() + st)
	}
	return sb.String()
}

// Reset undoes Sequence: the palette (OSC 104), foreground (OSC 110) and
// background (OSC 111) back to the terminal's configured defaults; an empty
// title (OSC 0), for terminals without a title stack, then the title
// popped from the stack (CSI 23;0 t), for those with one.
func (t Tint) Reset() string {
	var sb strings.Builder
	if t.Colors {
		sb.WriteString(osc + "104" + st + osc + "110" + st + osc + "111" + st)
	}
	if t.Title != "" {
		sb.WriteString(osc + "0;" + st + "\x1b[23;0t")
	}
	return sb.String()
}

// maxTitle bounds a title in runes: a label is a person's free text.
const maxTitle = 200

// cleanTitle drops control characters (which would end or break the
// sequence) and cuts a long title.
func cleanTitle(s string) string {
	var sb strings.Builder
	n := 0
	for _, r := range s {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			continue
		}
		if n++; n > maxTitle {
			break
		}
		sb.WriteRune(r)
	}
	return sb.String()
}

// Tint writes tint's Sequence to the terminal and returns what undoes it:
// a function that writes its Reset once, however many times it is called
// (a deferred call and the normal path both call it).
func (t *Terminal) Tint(tint Tint) (untint func() error) {
	seq := tint.Sequence()
	if seq == "" {
		return func() error { return nil }
	}
	// A failed write is not fatal to an attach: the reset is written
	// anyway, and a reset of what was not set does nothing.
	t.Write([]byte(seq)) //nolint:errcheck
	var (
		once sync.Once
		err  error
	)
	return func() error {
		once.Do(func() { _, err = t.Write([]byte(tint.Reset())) })
		return err
	}
}
