package docker

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// A classic builder's stream, as Docker 20.10 sends it.
const okStream = `{"stream":"Step 1/2 : FROM bb-base:bookworm"}
{"stream":"\n"}
{"stream":" ---\u003e 371d9cf72f1e\n"}
{"stream":"Step 2/2 : RUN echo hi"}
{"stream":"\n"}
{"stream":" ---\u003e Running in 0123456789ab\n"}
{"stream":"hi\n"}
{"stream":"Removing intermediate container 0123456789ab\n"}
{"aux":{"ID":"sha256:abc"}}
{"stream":"Successfully built abc\n"}
{"stream":"Successfully tagged x:1\n"}
`

const failStream = `{"stream":"Step 1/2 : FROM bb-base:bookworm\n"}
{"stream":"Step 2/2 : RUN echo oops \u0026\u0026 false\n"}
{"stream":" ---\u003e Running in 0123456789ab\n"}
{"stream":"oops\n"}
{"errorDetail":{"code":1,"message":"The command '/bin/sh -c echo oops \u0026\u0026 false' returned a non-zero code: 1"},"error":"The command '/bin/sh -c echo oops \u0026\u0026 false' returned a non-zero code: 1"}
`

func TestProgressPlain(t *testing.T) {
	var out bytes.Buffer
	if err := newProgress(&out, "building x:1").consume(strings.NewReader(okStream)); err != nil {
		t.Fatal(err)
	}
	want := "Step 1/2 : FROM bb-base:bookworm\n ---> 371d9cf72f1e\nStep 2/2 : RUN echo hi\n ---> Running in 0123456789ab\nhi\n" +
		"Removing intermediate container 0123456789ab\nSuccessfully built abc\nSuccessfully tagged x:1\n"
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}

func TestProgressTerminal(t *testing.T) {
	var out bytes.Buffer
	p := newProgress(&out, "building x:1")
	p.tty, p.width = true, 40
	if err := p.consume(strings.NewReader(okStream)); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if strings.Contains(s, "\n") {
		t.Errorf("terminal output has newlines, want one live line: %q", s)
	}
	if !strings.HasSuffix(s, "\r\x1b[K") {
		t.Errorf("terminal output does not end by clearing its line: %q", s)
	}
	for _, frame := range strings.Split(s, "\r\x1b[K") {
		if len([]rune(frame)) > 39 {
			t.Errorf("frame %q is wider than the terminal", frame)
		}
	}
	if !strings.Contains(s, "building x:1: 2/2 RUN echo hi | hi") {
		t.Errorf("live line never shows the step: %q", s)
	}
}

func TestProgressFailure(t *testing.T) {
	for _, tty := range []bool{false, true} {
		var out bytes.Buffer
		p := newProgress(&out, "building x:1")
		p.tty = tty
		err := p.consume(strings.NewReader(failStream))
		var be *BuildError
		if !errors.As(err, &be) {
			t.Fatalf("tty=%v: err = %v, want a *BuildError", tty, err)
		}
		want := &BuildError{
			Step:    "Step 2/2 : RUN echo oops && false",
			Message: "The command '/bin/sh -c echo oops && false' returned a non-zero code: 1",
			Output:  []string{"oops"},
		}
		if diff := cmp.Diff(want, be); diff != "" {
			t.Errorf("tty=%v: error (-want +got):\n%s", tty, diff)
		}
		// On a terminal the live line hid the output: the failure shows it.
		if !strings.HasSuffix(out.String(), "Step 2/2 : RUN echo oops && false\n ---> Running in 0123456789ab\noops\n") &&
			!strings.HasSuffix(out.String(), "Step 2/2 : RUN echo oops && false\noops\n") {
			t.Errorf("tty=%v: output does not end with the failing step's output: %q", tty, out.String())
		}
	}
}

func TestProgressBadStream(t *testing.T) {
	err := newProgress(nil, "x").consume(strings.NewReader(`{"stream":"a"}{not json`))
	if err == nil || !strings.Contains(err.Error(), "reading the build's output") {
		t.Errorf("err = %v", err)
	}
}
