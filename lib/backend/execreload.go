package backend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ErrNotRunning is what an exec'd Reloader returns when the bottle's
// sidecar is not running: there is nothing to signal, and the sidecar reads
// the routes file when it starts.
var ErrNotRunning = errors.New("the bottle's sidecar is not running")

// RegisterExecReloader makes the Reloader of backend name run
// `<command> reload SLUG`, with command found beside the running executable
// (else on PATH). A command that only needs the hook (bb-egress, which must
// stay small for its FROM-scratch image) so reaches a backend without
// linking its client. The command's exit status 1 is ErrNotRunning.
func RegisterExecReloader(name, command string) {
	RegisterReloader(name, ReloaderFunc(func(ctx context.Context, slug string) error {
		return execReload(ctx, command, slug)
	}))
}

func execReload(ctx context.Context, command, slug string) error {
	path, err := besideExecutable(command)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, path, "reload", "--", slug)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee) && ee.ExitCode() == 1:
		return ErrNotRunning
	case errors.As(err, &ee):
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return fmt.Errorf("%s reload %s: %s", command, slug, msg)
	}
	return fmt.Errorf("running %s: %w", path, err)
}

// besideExecutable finds command in the running executable's folder
// (following symlinks), else on PATH.
func besideExecutable(command string) (string, error) {
	if exe, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		p := filepath.Join(filepath.Dir(exe), command)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	p, err := exec.LookPath(command)
	if err != nil {
		return "", fmt.Errorf("finding %s beside %s or on PATH: %w", command, filepath.Base(os.Args[0]), err)
	}
	return p, nil
}
