package docker

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/mattn/go-isatty"
)

// BuildError is a build the engine ran that failed: the Dockerfile, or what
// it runs, is at fault rather than the connection to the engine.
type BuildError struct {
	// Step is the failing step as the engine names it ("Step 2/5 : RUN make").
	Step string
	// Message is the engine's error.
	Message string
	// Output holds the last lines the failing step printed.
	Output []string
}

func (e *BuildError) Error() string {
	if e.Step == "" {
		return e.Message
	}
	return fmt.Sprintf("%s: %s", e.Step, e.Message)
}

// buildMessage is one message of the engine's build stream. Old engines set
// only "error", newer ones "errorDetail" too.
type buildMessage struct {
	Stream      string          `json:"stream"`
	Status      string          `json:"status"`
	ID          string          `json:"id"`
	Progress    json.RawMessage `json:"progressDetail"`
	Error       string          `json:"error"`
	ErrorDetail *struct {
		Message string `json:"message"`
	} `json:"errorDetail"`
	// Aux carries the ID of the image a build made.
	Aux *struct {
		ID string `json:"ID"`
	} `json:"aux"`
}

// tailLines is how many lines of a failing step's output are kept.
const tailLines = 20

// progress renders a build's message stream for a person. On a terminal it
// keeps one live line, rewritten in place, and prints the failing step's
// output only when the build fails; elsewhere it prints every line.
type progress struct {
	w      io.Writer
	tty    bool
	width  int
	prefix string

	step    string
	builtID string // the image the build made, from its aux message
	tail    []string
	partial string
	live    bool
}

func newProgress(w io.Writer, prefix string) *progress {
	p := &progress{w: w, prefix: prefix, width: 80}
	if w == nil {
		p.w = io.Discard
	}
	if f, ok := w.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		p.tty = true
		if n := termWidth(f); n > 0 {
			p.width = n
		}
	}
	return p
}

// consume reads the stream to its end and returns the build's error, a
// *BuildError when the engine reported one.
func (p *progress) consume(r io.Reader) error {
	dec := json.NewDecoder(r)
	for {
		var m buildMessage
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			p.finish()
			return fmt.Errorf("reading the build's output: %w", err)
		}
		if msg := m.Error; msg != "" || m.ErrorDetail != nil {
			if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
				msg = m.ErrorDetail.Message
			}
			p.flushPartial()
			return p.fail(&BuildError{Step: p.step, Message: strings.TrimSpace(msg),
				Output: append([]string(nil), p.tail...)})
		}
		if m.Aux != nil && m.Aux.ID != "" {
			p.builtID = m.Aux.ID
		}
		if m.Stream != "" {
			p.text(m.Stream)
		}
		if m.Status != "" && (len(m.Progress) == 0 || string(m.Progress) == "{}") {
			line := m.Status
			if m.ID != "" {
				line = m.ID + ": " + line
			}
			p.line(line)
		}
	}
	p.flushPartial()
	p.finish()
	return nil
}

// text takes a piece of the build's output, which need not end a line.
func (p *progress) text(s string) {
	s = p.partial + s
	lines := strings.Split(s, "\n")
	p.partial = lines[len(lines)-1]
	for _, l := range lines[:len(lines)-1] {
		p.line(l)
	}
}

func (p *progress) flushPartial() {
	if p.partial != "" {
		p.line(p.partial)
		p.partial = ""
	}
}

func (p *progress) line(l string) {
	if !p.tty {
		fmt.Fprintln(p.w, l)
	}
	// A line rewritten with carriage returns (a download meter) shows as
	// its last state.
	if i := strings.LastIndexByte(strings.TrimRight(l, "\r"), '\r'); i >= 0 {
		l = l[i+1:]
	}
	l = strings.TrimRight(l, "\r")
	if strings.HasPrefix(l, "Step ") && strings.Contains(l, " : ") {
		p.step = l
		p.tail = p.tail[:0]
	} else if strings.TrimSpace(l) != "" && !bookkeeping(l) {
		if len(p.tail) == tailLines {
			p.tail = append(p.tail[:0], p.tail[1:]...)
		}
		p.tail = append(p.tail, l)
	}
	if p.tty {
		p.show(l)
	}
}

// show rewrites the live line with the step and its latest output. The
// classic builder's own bookkeeping lines say nothing to a person there.
func (p *progress) show(l string) {
	if bookkeeping(l) {
		return
	}
	s := p.prefix
	if p.step != "" {
		// Leave room for the step's output beside a long RUN line.
		step := []rune(strings.Replace(strings.TrimPrefix(p.step, "Step "), " : ", " ", 1))
		if limit := max(24, (p.width-len(p.prefix))/2); len(step) > limit {
			step = append(step[:limit-1], '…')
		}
		s += ": " + string(step)
	}
	if t := strings.TrimSpace(l); l != p.step && t != "" {
		s += " | " + t
	}
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if r := []rune(s); len(r) > p.width-1 {
		s = string(r[:p.width-1])
	}
	fmt.Fprintf(p.w, "\r\x1b[K%s", s)
	p.live = true
}

// bookkeeping reports whether l is one of the classic builder's own lines,
// which say nothing to a person watching the build or reading its failure.
func bookkeeping(l string) bool {
	t := strings.TrimSpace(l)
	return strings.HasPrefix(t, "---> ") || strings.HasPrefix(t, "Removing intermediate container ") ||
		strings.HasPrefix(t, "Successfully built ") || strings.HasPrefix(t, "Successfully tagged ")
}

// finish ends the live line.
func (p *progress) finish() {
	if p.live {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.live = false
	}
}

// fail ends the live line and, on a terminal where the output was not
// shown, prints the failing step's last lines.
func (p *progress) fail(err *BuildError) error {
	p.finish()
	if p.tty {
		if err.Step != "" {
			fmt.Fprintln(p.w, err.Step)
		}
		for _, l := range err.Output {
			fmt.Fprintln(p.w, l)
		}
	}
	return err
}
