package guest

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bb-bottles/bb/internal/testio"
	"github.com/bb-bottles/bb/lib/terminal/pty"
)

// startSession runs a Session of cmd in the background and returns once it
// listens; the agent's status arrives on the channel.
func startSession(t *testing.T, spec *Spec, cmd ...string) (*Session, chan int, context.CancelFunc) {
	t.Helper()
	if spec.Socket == "" {
		spec.Socket = filepath.Join(t.TempDir(), "attach.sock")
	}
	ctx, cancel := context.WithCancel(t.Context())
	s := &Session{Spec: spec, Command: cmd, Ready: make(chan struct{}), StopGrace: 2 * time.Second}
	done := make(chan int, 1)
	go func() {
		code, err := s.Run(ctx)
		if err != nil && ctx.Err() == nil {
			t.Errorf("Session.Run: %v", err)
		}
		done <- code
	}()
	select {
	case <-s.Ready:
	case <-time.After(5 * time.Second):
		t.Fatal("the session never listened")
	}
	t.Cleanup(cancel)
	return s, done, cancel
}

// personTerminal is a pseudo-terminal standing for a person's: the test types
// into keys, and the attach client reads tty.
func personTerminal(t *testing.T, cols, rows uint16) (keys, tty *os.File) {
	t.Helper()
	keys, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	setSize(keys, winsize{Cols: cols, Rows: rows})
	t.Cleanup(func() { keys.Close(); tty.Close() })
	go io.Copy(io.Discard, keys)
	return keys, tty
}

type attached struct {
	out  testio.Buffer
	code chan int
	err  chan error
}

func attach(t *testing.T, ctx context.Context, socket string, tty *os.File) *attached {
	a := &attached{code: make(chan int, 1), err: make(chan error, 1)}
	go func() {
		code, err := Attach(ctx, socket, tty, &a.out)
		a.code <- code
		a.err <- err
	}()
	return a
}

func (a *attached) wait(t *testing.T) (int, error) {
	t.Helper()
	select {
	case code := <-a.code:
		return code, <-a.err
	case <-time.After(10 * time.Second):
		t.Fatal("Attach did not end")
		return 0, nil
	}
}

// The agent waits for the first attach, starts at that terminal's size,
// hears what is typed (Ctrl-C as a key, which its terminal makes a signal),
// and its exit status reaches the client.
func TestAttachStartsTheAgentAndPassesItsStatus(t *testing.T) {
	sess, done, _ := startSession(t, &Spec{WaitAttach: true}, "sh", "-c",
		`trap 'echo got-interrupt' INT; stty size; until read line; do :; done; echo "got:$line"; exit 7`)
	keys, tty := personTerminal(t, 100, 30)
	a := attach(t, t.Context(), sess.Spec.Socket, tty)
	testio.WaitFor(t, &a.out, "30 100")
	keys.Write([]byte{0x03})
	testio.WaitFor(t, &a.out, "got-interrupt")
	keys.Write([]byte("hello\r"))
	testio.WaitFor(t, &a.out, "got:hello")
	if code, err := a.wait(t); code != 7 || err != nil {
		t.Errorf("Attach = %d, %v; want the agent's 7", code, err)
	}
	if code := <-done; code != 7 {
		t.Errorf("Run = %d, want 7", code)
	}
}

// A client that leaves (a detach) leaves the agent running; one joining
// later sees what it printed meanwhile, and the agent's terminal takes the
// new client's size.
func TestDetachAndAttachAgain(t *testing.T) {
	sess, done, _ := startSession(t, &Spec{WaitAttach: true}, "sh", "-c",
		`echo one; read a; echo "two:$a"; stty size; read b; exit 0`)
	_, tty := personTerminal(t, 80, 24)
	ctx, leave := context.WithCancel(t.Context())
	a := attach(t, ctx, sess.Spec.Socket, tty)
	testio.WaitFor(t, &a.out, "one")
	leave()
	if _, err := a.wait(t); err == nil {
		t.Error("a detached client reported no error")
	}

	keys2, tty2 := personTerminal(t, 120, 40)
	b := attach(t, t.Context(), sess.Spec.Socket, tty2)
	testio.WaitFor(t, &b.out, "one") // the scrollback
	keys2.Write([]byte("x\r"))
	testio.WaitFor(t, &b.out, "two:x")
	testio.WaitFor(t, &b.out, "40 120")
	keys2.Write([]byte("\r"))
	if code, err := b.wait(t); code != 0 || err != nil {
		t.Errorf("second Attach = %d, %v", code, err)
	}
	if code := <-done; code != 0 {
		t.Errorf("Run = %d", code)
	}
}

// The protocol as a client speaks it: a hello, keys, a resize; the output
// and the exit status come back in frames.
func TestAttachProtocol(t *testing.T) {
	sess, done, _ := startSession(t, &Spec{WaitAttach: true}, "sh", "-c", `read a; stty size; exit 5`)
	c, err := net.Dial("unix", sess.Spec.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	writeFrame(c, frameHello, []byte(`{"cols":0,"rows":0}`))
	writeFrame(c, frameResize, []byte(`{"cols":91,"rows":31}`))
	time.Sleep(100 * time.Millisecond)
	writeFrame(c, frameInput, []byte("x\r"))
	var out bytes.Buffer
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		typ, p, err := readFrame(c)
		if err != nil {
			t.Fatalf("reading frames: %v (output %q)", err, out.String())
		}
		if typ == frameOutput {
			out.Write(p)
			continue
		}
		if typ != frameExit || !bytes.Equal(p, []byte{0, 0, 0, 5}) {
			t.Errorf("last frame %c %v, want exit 5", typ, p)
		}
		break
	}
	if !strings.Contains(out.String(), "31 91") {
		t.Errorf("output %q: the resize did not reach the agent's terminal", out.String())
	}
	// The init waits for the client to leave before it ends (and with it
	// the container, which would end the client before it passed the
	// status on).
	select {
	case <-done:
		t.Error("the session ended before its client left")
	case <-time.After(300 * time.Millisecond):
	}
	c.Close()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Error("the session did not end once its client left")
	}
	// A frame too big for the protocol is refused, not allocated.
	if _, _, err := readFrame(bytes.NewReader([]byte{frameInput, 0xff, 0xff, 0xff, 0xff})); err == nil {
		t.Error("a 4 GiB frame was read")
	}
}

// Without WaitAttach the agent starts at once, and a client joining later
// is shown what it printed (the last Scrollback bytes).
func TestTheAgentRunsWithoutAClient(t *testing.T) {
	sess, done, _ := startSession(t, &Spec{Scrollback: 16}, "sh", "-c", `echo 0123456789abcdefSTART; read x; exit 3`)
	time.Sleep(300 * time.Millisecond)
	keys, tty := personTerminal(t, 80, 24)
	a := attach(t, t.Context(), sess.Spec.Socket, tty)
	testio.WaitFor(t, &a.out, "fSTART")
	if strings.Contains(a.out.String(), "0123") {
		t.Errorf("scrollback of 16 bytes showed %q", a.out.String())
	}
	keys.Write([]byte("\r"))
	if code, err := a.wait(t); code != 3 || err != nil {
		t.Errorf("Attach = %d, %v", code, err)
	}
	<-done
}

// Ending the session hangs the agent up.
func TestStoppingHangsTheAgentUp(t *testing.T) {
	_, done, cancel := startSession(t, &Spec{}, "sh", "-c", `trap 'exit 42' HUP; while :; do sleep 0.05; done`)
	time.Sleep(200 * time.Millisecond)
	cancel()
	select {
	case code := <-done:
		if code != 42 {
			t.Errorf("Run = %d, want the agent's 42 from its HUP trap", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the agent was not stopped")
	}
}

// The relay takes the agent's connections to the sidecar's socket, both
// ways, and a connection that ends its writing half still hears the
// answer.
func TestRelayReachesTheSidecarSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "egress.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("sidecar saw " + r.Method + " " + r.URL.String()))
	})}
	go srv.Serve(ln)
	defer srv.Close()

	sess, _, _ := startSession(t, &Spec{Relay: Relay{Listen: "127.0.0.1:0", Socket: sock}}, "sleep", "30")
	c, err := net.Dial("tcp", sess.RelayAddr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("GET http://example.com/x HTTP/1.0\r\n\r\n"))
	c.(*net.TCPConn).CloseWrite()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "sidecar saw GET http://example.com/x" {
		t.Errorf("through the relay: %q", body)
	}

	// With the sidecar gone, a connection is closed, not hung.
	srv.Close()
	ln.Close()
	c2, err := net.Dial("tcp", sess.RelayAddr.String())
	if err != nil {
		t.Fatal(err)
	}
	c2.SetDeadline(time.Now().Add(5 * time.Second))
	if n, _ := c2.Read(make([]byte, 1)); n != 0 {
		t.Error("read from a relay whose sidecar is gone")
	}
}

func TestReadSpec(t *testing.T) {
	good := `{"user":"agent","files":[{"path":"~/.gitconfig","mode":420,"owner":"agent","content":"W3VzZXJd"}],
		"hosts":["127.0.0.1 bb.egress"],"relay":{"listen":"127.0.0.1:3128","socket":"/bb/egress.sock","mode":438},
		"socket":"/run/bb/attach.sock","wait_attach":true}`
	s, err := ReadSpec(strings.NewReader(good), "spec.json")
	if err != nil {
		t.Fatal(err)
	}
	if string(s.Files[0].Content) != "[user]" || s.Relay.Mode != 0o666 {
		t.Errorf("spec = %+v", s)
	}
	for _, tt := range []struct{ spec, want string }{
		{`{"user":"root","socket":"/a"}`, "is root"},
		{`{"user":"0:0","socket":"/a"}`, "is root"},
		{`{"user":"","socket":"/a"}`, "user: empty"},
		{`{"user":"a","socket":"rel"}`, "socket"},
		{`{"user":"a","socket":"/a","extra":1}`, "unknown field"},
		{`{"user":"a","socket":"/a","files":[{"path":"/etc/../x","owner":"root"}]}`, "clean absolute"},
		{`{"user":"a","socket":"/a","files":[{"path":"~/x","owner":"nobody"}]}`, "owner"},
		{`{"user":"a","socket":"/a","files":[{"path":"~/x","owner":"agent","mode":2541}]}`, "permission bits"},
		{`{"user":"a","socket":"/a","relay":{"listen":"127.0.0.1:1"}}`, "both listen and socket"},
		{`{"user":"a","socket":"/a","hosts":["1.2.3.4 x\n5.6.7.8 y"]}`, "line break"},
	} {
		if _, err := ReadSpec(strings.NewReader(tt.spec), "spec.json"); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ReadSpec(%s) = %v, want an error with %q", tt.spec, err, tt.want)
		}
	}
}

func TestRing(t *testing.T) {
	r := ring{max: 5}
	r.Write([]byte("abc"))
	r.Write([]byte("defg"))
	if got := string(r.Bytes()); got != "cdefg" {
		t.Errorf("ring = %q", got)
	}
	r.Write([]byte("0123456789"))
	if got := string(r.Bytes()); got != "56789" {
		t.Errorf("ring = %q", got)
	}
}
