package terminal

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// ErrInterrupted ends a prompt the person cancelled with Ctrl-C.
var ErrInterrupted = errors.New("interrupted")

// Prompter asks a person questions on a terminal held in raw mode, so that
// each key counts as it is typed. Keys typed ahead are kept from one
// question to the next.
type Prompter struct {
	t     *Terminal
	depth Depth
	keys  *keyReader
}

// NewPrompter puts t in raw mode to ask questions until ctx is done (a
// question then ends with ctx's error); depth colours what it shows. Close
// gives the terminal back as it was.
func NewPrompter(ctx context.Context, t *Terminal, depth Depth) (*Prompter, error) {
	if err := t.MakeRaw(); err != nil {
		return nil, err
	}
	return &Prompter{t: t, depth: depth, keys: newKeyReader(ctx, t.File())}, nil
}

// Close restores the terminal.
func (p *Prompter) Close() error { return p.t.Restore() }

// SGR attributes besides colour: not colours, but a dumb terminal shows
// them as text, so they follow depth too.
func (p *Prompter) sgr(code, s string) string {
	if p.depth == NoColor {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

func (p *Prompter) write(s string) error {
	_, err := p.t.Write([]byte(s))
	return err
}

// width is the terminal's width, or a wide one when unknown.
func (p *Prompter) width() int {
	if sz, err := p.t.Size(); err == nil && sz.Width > 0 {
		return int(sz.Width)
	}
	return 1 << 10
}

// Label asks for a line of text, pre-filled with def: Enter keeps def, the
// first key typed replaces it, Backspace (or an arrow) edits it instead,
// Ctrl-U clears the line. An answer left empty is def. Ctrl-C ends it with
// ErrInterrupted.
func (p *Prompter) Label(question, def string) (string, error) {
	text := []rune(def)
	prefilled := true
	hint := "  (Enter keeps it, typing replaces it)"
	draw := func(final bool) error {
		prefix := question + ": "
		shown := string(text)
		room := p.width() - utf8.RuneCountInString(prefix) - 1
		if n := utf8.RuneCountInString(shown); room > 0 && n > room {
			// The end, where the typing is: a wrapped line cannot be redrawn.
			shown = "…" + string(text[n-room+1:])
		}
		line := prefix
		switch {
		case final:
			line += shown
		case prefilled && shown != "":
			line += p.sgr("7", shown)
			if utf8.RuneCountInString(prefix+shown+hint) < p.width() {
				line += p.sgr("2", hint)
			}
		default:
			line += shown
		}
		if final {
			line += "\r\n"
		}
		return p.write("\r\x1b[K" + line)
	}
	if err := draw(false); err != nil {
		return "", err
	}
	for {
		k, err := p.keys.next()
		if err != nil {
			p.write("\r\n") //nolint:errcheck // the error is k's
			return "", err
		}
		switch k.name {
		case keyInterrupt:
			p.write("\r\n") //nolint:errcheck
			return "", ErrInterrupted
		case keyEnter:
			if strings.TrimSpace(string(text)) == "" {
				text = []rune(def)
			}
			if err := draw(true); err != nil {
				return "", err
			}
			return strings.TrimSpace(string(text)), nil
		case keyRune:
			if prefilled {
				text = nil
			}
			text = append(text, k.r)
		case keyBackspace:
			if len(text) > 0 {
				text = text[:len(text)-1]
			}
		case keyKill:
			text = nil
		case keyLeft, keyRight:
		default:
			continue
		}
		prefilled = false
		if err := draw(false); err != nil {
			return "", err
		}
	}
}

// Choice is a colour to pick, by name.
type Choice struct {
	Name  string
	Color RGB
}

// Color asks for one of choices, def picked to begin with: the arrow keys
// (and k, j) move, a number picks that line, Enter confirms. Each name
// is shown in its colour. Ctrl-C ends it with ErrInterrupted.
func (p *Prompter) Color(question string, choices []Choice, def int) (int, error) {
	if len(choices) == 0 {
		return 0, errors.New("no colours to pick from")
	}
	sel := min(max(def, 0), len(choices)-1)
	rows := func() []string {
		out := make([]string, len(choices))
		for i, c := range choices {
			mark := "  "
			name := p.depth.Paint(c.Name, c.Color)
			if i == sel {
				mark = "> "
				name = p.sgr("1", name)
			}
			out[i] = "\x1b[K  " + mark + fmt.Sprintf("%d ", i+1) + name
		}
		return out
	}
	hint := fmt.Sprintf("(arrows or 1-%d, Enter picks)", min(len(choices), 9))
	if err := p.write(question + " " + p.sgr("2", hint) + "\r\n" + strings.Join(rows(), "\r\n")); err != nil {
		return 0, err
	}
	redraw := func() error {
		up := ""
		if len(choices) > 1 {
			up = fmt.Sprintf("\x1b[%dA", len(choices)-1)
		}
		return p.write("\r" + up + strings.Join(rows(), "\r\n"))
	}
	// clear leaves the answer where the question was.
	clear := func(answer string) error {
		return p.write(fmt.Sprintf("\r\x1b[%dA\x1b[J", len(choices)) + question + ": " + answer + "\r\n")
	}
	for {
		k, err := p.keys.next()
		if err != nil {
			clear("")
			return 0, err
		}
		switch {
		case k.name == keyInterrupt:
			clear("")
			return 0, ErrInterrupted
		case k.name == keyEnter:
			c := choices[sel]
			return sel, clear(p.depth.Paint(c.Name, c.Color))
		case k.name == keyUp || k.name == keyLeft || k.r == 'k':
			sel = (sel + len(choices) - 1) % len(choices)
		case k.name == keyDown || k.name == keyRight || k.r == 'j':
			sel = (sel + 1) % len(choices)
		case k.r >= '1' && k.r <= '9' && int(k.r-'1') < len(choices):
			sel = int(k.r - '1')
		default:
			continue
		}
		if err := redraw(); err != nil {
			return 0, err
		}
	}
}
