package main

import (
	"bufio"
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
	"github.com/bb-bottles/bb/lib/cli"
)

// On macos-container the sidecar listens on a socket, which the runtime
// relays to the agent: it replaces one a killed sidecar left, opens it to
// every user of its machine, and proxies what arrives there like its TCP
// listener would, audit line and all.
func TestServeOnAUnixSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "egress.sock")
	stale, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	routes := filepath.Join(dir, "routes.yaml")
	if err := os.WriteFile(routes, []byte("- host: allowed.example\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var errb testio.Buffer
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		s := cli.Streams{Out: os.Stdout, Err: &errb, Environ: func() []string {
			return []string{"EGRESS_TOKEN_CANARY=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}
		}}
		done <- runServe(ctx, s, serveOptions{Listen: "unix:" + sock, Routes: routes, CADir: dir,
			Log: filepath.Join(dir, "audit.jsonl"), MaxConns: 8, Drain: time.Second, Slug: "calm-otter"})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(errb.String(), "listening on") {
		if time.Now().After(deadline) {
			t.Fatalf("the sidecar never listened: %s", errb.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(errb.String(), "bb-egress: listening on "+sock+" (CA ") {
		t.Errorf("ready line: %q", errb.String())
	}
	st, err := os.Stat(sock)
	if err != nil || st.Mode().Perm() != 0o666 {
		t.Errorf("socket mode = %v, %v; want 0666", st.Mode(), err)
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("GET http://denied.example/x HTTP/1.1\r\nHost: denied.example\r\n\r\n"))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	c.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "bb-egress allow calm-otter denied.example") {
		t.Errorf("a request for an unlisted host = %d %q, want 403 naming the bottle's slug", resp.StatusCode, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("runServe: %v", err)
	}
	log, _ := os.ReadFile(filepath.Join(dir, "audit.jsonl"))
	if !strings.Contains(string(log), `"host":"denied.example"`) || !strings.Contains(string(log), `"decision":"deny"`) {
		t.Errorf("audit log: %s", log)
	}
}
