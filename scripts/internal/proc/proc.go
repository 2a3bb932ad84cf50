// Package proc starts and ends the processes of bb's benchmark programs
// (scripts/benchgit, benchegress, sidecarbench): waiting until one
// listens, and stopping one as a person would, then by force.
package proc

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"time"
)

// WaitListen waits up to 10s until something accepts connections on addr.
func WaitListen(addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := (&net.Dialer{}).DialContext(context.Background(), "tcp", addr); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("nothing listening on %s after 10s", addr)
}

// Stop interrupts cmd and waits for it, killing it after 5s.
func Stop(cmd *exec.Cmd) {
	cmd.Process.Signal(os.Interrupt) //nolint:errcheck // Kill follows
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }() //nolint:errcheck // how it ended is not the point
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill() //nolint:errcheck
		<-done
	}
}
