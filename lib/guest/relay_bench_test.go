//go:build linux

package guest

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"testing"
)

// sink is the sidecar's stand-in: it reads a connection to its end and
// answers how much it read, in one byte (mod 256).
func sink(b *testing.B) string {
	b.Helper()
	sock := filepath.Join(b.TempDir(), "sink.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				n, _ := io.Copy(io.Discard, c)
				c.Write([]byte{byte(n)})
			}()
		}
	}()
	return sock
}

var sizes = []struct {
	name string
	n    int
}{{"1KiB", 1 << 10}, {"1MiB", 1 << 20}}

func roundTrip(b *testing.B, network, addr string, payload []byte) {
	c, err := net.Dial(network, addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(payload); err != nil {
		b.Fatal(err)
	}
	c.(interface{ CloseWrite() error }).CloseWrite()
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkRelay is a connection and a request (1 KiB, 1 MiB) up through
// the agent's relay (127.0.0.1:3128 to the sidecar's socket): what every
// request of a macos-container agent pays, beside BenchmarkRelayBaseline.
func BenchmarkRelay(b *testing.B) {
	sock := sink(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := &Session{Spec: &Spec{Socket: filepath.Join(b.TempDir(), "attach.sock"), Relay: Relay{Listen: "127.0.0.1:0", Socket: sock}},
		Command: []string{"sleep", "600"}, Ready: make(chan struct{})}
	go s.Run(ctx)
	<-s.Ready
	addr := s.RelayAddr.String()
	for _, sz := range sizes {
		b.Run(sz.name, func(b *testing.B) {
			payload := make([]byte, sz.n)
			b.SetBytes(int64(sz.n))
			for range b.N {
				roundTrip(b, "tcp", addr, payload)
			}
		})
	}
}

// BenchmarkRelayBaseline is the same straight to the socket.
func BenchmarkRelayBaseline(b *testing.B) {
	sock := sink(b)
	for _, sz := range sizes {
		b.Run(sz.name, func(b *testing.B) {
			payload := make([]byte, sz.n)
			b.SetBytes(int64(sz.n))
			for range b.N {
				roundTrip(b, "unix", sock, payload)
			}
		})
	}
}
