package backend

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The reloader runs `<command> reload -- SLUG` and maps its exit status.
func TestExecReload(t *testing.T) {
	dir := t.TempDir()
	script := `#!/bin/sh
[ "$1 $2" = "reload --" ] || { echo "bad args: $*" >&2; exit 2; }
case $3 in
ok) exit 0 ;;
stopped) echo "fake-launch: bottle stopped has no running sidecar; it reads its routes when it starts" >&2; exit 1 ;;
mute) exit 1 ;;
*) echo "bb-launch: no bottle \"$3\"" >&2; exit 2 ;;
esac
`
	if err := os.WriteFile(filepath.Join(dir, "fake-launch"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	ctx := t.Context()
	if err := ExecReload(ctx, "fake-launch", "ok"); err != nil {
		t.Errorf("ok: %v", err)
	}
	var nr *NotReloadedError
	if err := ExecReload(ctx, "fake-launch", "stopped"); !errors.As(err, &nr) ||
		nr.Reason != "bottle stopped has no running sidecar; it reads its routes when it starts" {
		t.Errorf("stopped: %v, want a *NotReloadedError with the command's reason", err)
	}
	if err := ExecReload(ctx, "fake-launch", "mute"); !errors.As(err, &nr) || !strings.Contains(nr.Reason, "watching the file") {
		t.Errorf("mute: %v, want a *NotReloadedError", err)
	}
	if err := ExecReload(ctx, "fake-launch", "gone"); err == nil || !strings.Contains(err.Error(), `no bottle "gone"`) {
		t.Errorf("gone: %v, want the command's message", err)
	}
	if err := ExecReload(ctx, "no-such-command-here", "ok"); err == nil {
		t.Error("a missing command: no error")
	}
}
