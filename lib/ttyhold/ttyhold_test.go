package ttyhold

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bb-bottles/bb/internal/testio"
)

type held struct {
	socket string
	code   int
	err    error
	done   chan struct{}
}

func hold(t *testing.T, wait bool, script string) *held {
	t.Helper()
	// Socket paths are short on every system: a folder of its own in /tmp.
	dir, err := os.MkdirTemp("", "ttyhold")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	h := &held{socket: filepath.Join(dir, "agent.sock"), done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer close(h.done)
		h.code, h.err = Hold(ctx, HoldOptions{Socket: h.socket, Wait: wait, Command: []string{"sh", "-c", script},
			Env: []string{"PATH=" + os.Getenv("PATH")}})
	}()
	t.Cleanup(func() {
		cancel()
		<-h.done
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if r, _ := Status(h.socket); r.Running {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatal("the holder never listened")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type attached struct {
	code     int
	detached bool
	err      error
	done     chan struct{}
}

func attach(h *held, in io.Reader, out io.Writer, size <-chan [2]uint16) *attached {
	a := &attached{done: make(chan struct{})}
	go func() {
		defer close(a.done)
		a.code, a.detached, a.err = Attach(context.Background(), h.socket, in, out, size, "xterm-test")
	}()
	return a
}

func (a *attached) wait(t *testing.T) {
	t.Helper()
	select {
	case <-a.done:
	case <-time.After(10 * time.Second):
		t.Fatal("Attach never returned")
	}
}

// The command starts only when the first client joins, so its first line
// reaches the terminal; input goes in, and its status comes back.
func TestWaitAttachInputExit(t *testing.T) {
	h := hold(t, true, `echo "first:$TERM"; read x; echo "got:$x"; exit 7`)
	inR, inW := io.Pipe()
	out := &testio.Buffer{}
	a := attach(h, inR, out, nil)
	testio.WaitFor(t, out, "first:xterm-test")
	io.WriteString(inW, "hello\r")
	testio.WaitFor(t, out, "got:hello")
	a.wait(t)
	if a.err != nil || a.detached || a.code != 7 {
		t.Fatalf("Attach = %d, %v, %v; want 7, not detached", a.code, a.detached, a.err)
	}
	<-h.done
	if h.err != nil || h.code != 7 {
		t.Fatalf("Hold = %d, %v; want 7", h.code, h.err)
	}
	r, err := Status(h.socket)
	if err != nil || r.Running || r.ExitCode == nil || *r.ExitCode != 7 {
		t.Fatalf("Status = %+v, %v; want ended with 7", r, err)
	}
}

// Ctrl-P Ctrl-Q leaves the command running; a second client finds it and
// ends it. A lone Ctrl-P, or one followed by another key, reaches the
// command.
func TestDetachAndAttachAgain(t *testing.T) {
	h := hold(t, false, `stty raw -echo; while :; do c=$(dd bs=1 count=1 2>/dev/null | od -An -tx1 | tr -d ' '); echo "key:$c"; [ "$c" = 71 ] && exit 3; done`)
	inR, inW := io.Pipe()
	out := &testio.Buffer{}
	a := attach(h, inR, out, nil)
	time.Sleep(200 * time.Millisecond)
	inW.Write([]byte{0x10, 'a'})
	testio.WaitFor(t, out, "key:10")
	testio.WaitFor(t, out, "key:61")
	inW.Write(DetachKeys)
	a.wait(t)
	if a.err != nil || !a.detached {
		t.Fatalf("Attach = %d, %v, %v; want detached", a.code, a.detached, a.err)
	}
	if strings.Contains(out.String(), "key:11") {
		t.Errorf("the detach keys reached the command: %q", out.String())
	}
	if r, _ := Status(h.socket); !r.Running {
		t.Fatal("the command stopped when its client detached")
	}
	inR2, inW2 := io.Pipe()
	out2 := &testio.Buffer{}
	a2 := attach(h, inR2, out2, nil)
	time.Sleep(200 * time.Millisecond)
	io.WriteString(inW2, "q")
	testio.WaitFor(t, out2, "key:71")
	a2.wait(t)
	if a2.err != nil || a2.detached || a2.code != 3 {
		t.Fatalf("second Attach = %d, %v, %v; want 3", a2.code, a2.detached, a2.err)
	}
}

// The client's size is the terminal's, at the start and when it changes.
func TestSizes(t *testing.T) {
	h := hold(t, true, `stty size; read x; stty size; read x`)
	inR, inW := io.Pipe()
	out := &testio.Buffer{}
	size := make(chan [2]uint16, 1)
	size <- [2]uint16{100, 30}
	a := attach(h, inR, out, size)
	testio.WaitFor(t, out, "30 100")
	size <- [2]uint16{120, 40}
	time.Sleep(200 * time.Millisecond)
	io.WriteString(inW, "\r")
	testio.WaitFor(t, out, "40 120")
	io.WriteString(inW, "\r")
	a.wait(t)
	if a.err != nil || a.code != 0 {
		t.Fatalf("Attach = %d, %v", a.code, a.err)
	}
}

// A newer client takes the terminal from the older, which hears the
// holder went away; a status check is not a client.
func TestNewestClientWins(t *testing.T) {
	h := hold(t, false, `read x; echo "got:$x"; exit 0`)
	inR1, _ := io.Pipe()
	a1 := attach(h, inR1, io.Discard, nil)
	time.Sleep(200 * time.Millisecond)
	if r, _ := Status(h.socket); !r.Running {
		t.Fatal("not running")
	}
	inR2, inW2 := io.Pipe()
	out2 := &testio.Buffer{}
	a2 := attach(h, inR2, out2, nil)
	a1.wait(t)
	if !errors.Is(a1.err, errHolderGone) {
		t.Errorf("the older client got %v, want that the holder went away", a1.err)
	}
	io.WriteString(inW2, "x\r")
	testio.WaitFor(t, out2, "got:x")
	a2.wait(t)
	if a2.err != nil || a2.code != 0 {
		t.Fatalf("Attach = %d, %v", a2.code, a2.err)
	}
}

func TestStatusWithNoHolder(t *testing.T) {
	r, err := Status(filepath.Join(t.TempDir(), "none.sock"))
	if err != nil || r.Running || r.ExitCode != nil {
		t.Fatalf("Status = %+v, %v; want nothing", r, err)
	}
}

// A frame claiming more than the limit is refused before it is read.
func TestFrameLimit(t *testing.T) {
	var b bytes.Buffer
	b.Write([]byte{frameData, 0xff, 0xff, 0xff, 0xff})
	if _, _, err := readFrame(&b); err == nil {
		t.Fatal("a 4 GiB frame was accepted")
	}
}
