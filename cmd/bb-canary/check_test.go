package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bb-bottles/bb/lib/audit"
	"github.com/bb-bottles/bb/lib/cli"
	"github.com/bb-bottles/bb/lib/state"
)

// TestCheckRotated: a canary line in a rotated file is found, and one in
// a file rotation deleted still counts: check exits 1 either way.
func TestCheckRotated(t *testing.T) {
	for _, tt := range []struct {
		name          string
		canaryAt      int // the line that carries the canary
		wantPrinted   bool
		wantRotatedBy bool
	}{
		{"in a rotated file", 399, true, false},
		{"in a deleted file", 3, false, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			env := func(k string) string {
				if k == "BB_STATE_DIR" {
					return dir
				}
				return ""
			}
			st, _ := state.Open(env)
			egress, err := st.MakeEgressDir("demo-x1y2")
			if err != nil {
				t.Fatal(err)
			}
			w, err := audit.OpenWriter(filepath.Join(egress, state.AuditLogFile), audit.Rotate{MaxSize: 4 << 10, MaxFiles: 2})
			if err != nil {
				t.Fatal(err)
			}
			for i := range 400 {
				e := audit.Entry{Method: "GET", Host: fmt.Sprintf("h%d.example", i), Decision: audit.Deny}
				if i == tt.canaryAt {
					e.Decision, e.Secret, e.Canary = audit.Block, "CANARY", true
				}
				w.Write(e)
			}
			// The last 20 lines stay in the current file.
			for range 20 {
				w.Write(audit.Entry{Decision: audit.Allow})
			}
			w.Close()
			if files, _ := audit.Files(filepath.Join(egress, state.AuditLogFile)); len(files) != 3 {
				t.Fatalf("files %v", files)
			}
			var out, errb bytes.Buffer
			err = runCheck(context.Background(), cli.Streams{Out: &out, Err: &errb, Env: env}, checkOptions{slug: "demo-x1y2"})
			if cli.CodeOf(err) != 1 {
				t.Errorf("check = %v (exit %d), stderr %s", err, cli.CodeOf(err), errb.String())
			}
			if printed := strings.Contains(out.String(), `"canary":true`); printed != tt.wantPrinted {
				t.Errorf("canary line printed %v: %s", printed, out.String())
			}
			if said := strings.Contains(errb.String(), "rotation deleted"); said != tt.wantRotatedBy {
				t.Errorf("stderr %s", errb.String())
			}
		})
	}
}
