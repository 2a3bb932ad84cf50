//go:build bbprof

package main

// Built only by scripts/sidecarbench -profile (go build -tags bbprof), never
// into a shipped sidecar: with BB_EGRESS_CPUPROFILE set, SIGUSR1 starts a
// CPU profile and SIGUSR2 writes it there, so that the bench profiles
// exactly the requests it measures and nothing of the start-up.

import (
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
)

func init() {
	if path := os.Getenv("BB_EGRESS_CPUPROFILE"); path != "" {
		go profileOnSignal(path)
	}
}

// profileOnSignal writes each profile to path+".tmp" and renames it to path
// when complete: the bench waits for path to appear.
func profileOnSignal(path string) {
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGUSR1, syscall.SIGUSR2)
	var f *os.File
	for s := range sig {
		switch {
		case s == syscall.SIGUSR1 && f == nil:
			var err error
			if f, err = os.Create(path + ".tmp"); err != nil {
				fmt.Fprintln(os.Stderr, "bb-egress: cpu profile:", err)
				continue
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				fmt.Fprintln(os.Stderr, "bb-egress: cpu profile:", err)
				f.Close()
				f = nil
			}
		case s == syscall.SIGUSR2 && f != nil:
			pprof.StopCPUProfile()
			f.Close()
			f = nil
			if err := os.Rename(path+".tmp", path); err != nil {
				fmt.Fprintln(os.Stderr, "bb-egress: cpu profile:", err)
			}
		}
	}
}
