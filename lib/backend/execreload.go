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

// NotReloadedError is a reload that did not signal the sidecar, and need
// not have: Reason says why (it is not running and reads the routes when it
// starts; its backend cannot signal it, and it watches the file).
type NotReloadedError struct {
	Reason string
}

func (e *NotReloadedError) Error() string { return e.Reason }

// ExecReload asks a bottle's backend to make its sidecar re-read its routes
// by running `<command> reload -- SLUG` (bb-launch), found beside the
// running executable (else on PATH). A command that must not link any
// backend's client (bb-egress, which is also the sidecar's FROM-scratch
// image) so reaches whichever backend runs the bottle. The command's exit
// status 1 is a *NotReloadedError with its last line as the reason.
func ExecReload(ctx context.Context, command, slug string) error {
	path, err := besideExecutable(command)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, path, "reload", "--", slug)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	msg := lastLine(stderr.String(), command+": ")
	var ee *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee) && ee.ExitCode() == 1:
		if msg == "" {
			msg = "the sidecar was not signalled; it picks the change up by watching the file"
		}
		return &NotReloadedError{Reason: msg}
	case errors.As(err, &ee):
		if msg == "" {
			msg = err.Error()
		}
		return fmt.Errorf("%s reload %s: %s", command, slug, msg)
	}
	return fmt.Errorf("running %s: %w", path, err)
}

// lastLine is the last line of a command's stderr that is not a hint, without
// the command's prefix, cut to a line's length.
func lastLine(s, prefix string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if l == "" || strings.HasPrefix(l, "hint: ") {
			continue
		}
		l = strings.TrimPrefix(l, prefix)
		if len(l) > 300 {
			l = l[:300] + "..."
		}
		return l
	}
	return ""
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
