// Package testio holds what tests of terminals and processes share: output
// one goroutine writes while the test polls it.
package testio

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

// Buffer is a bytes.Buffer safe for writers and a polling reader.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// WaitFor fails t unless b holds want within 10 seconds.
func WaitFor(t testing.TB, b *Buffer, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(b.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("the output never held %q; it is %q", want, b.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
