package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bb-bottles/bb/lib/audit"
	"github.com/bb-bottles/bb/lib/cli"
	"github.com/bb-bottles/bb/lib/state"
)

// TestLogAcrossRotation: 'bb-egress log' prints a rotated log from its
// oldest file on, and 'log verify' proves it right after traffic: the
// head is there, the deleted files are accounted for, nothing warns.
func TestLogAcrossRotation(t *testing.T) {
	dir := t.TempDir()
	env := func(k string) string {
		if k == "BB_STATE_DIR" {
			return dir
		}
		return ""
	}
	st, _ := state.Open(env)
	const slug = "demo-x1y2"
	egress, err := st.MakeEgressDir(slug)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, slug, state.MetadataFile), []byte("{}"), 0o600)
	path := filepath.Join(egress, state.AuditLogFile)
	w, err := audit.OpenWriter(path, audit.Rotate{MaxSize: 4 << 10, MaxFiles: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := range 200 {
		w.Write(audit.Entry{Method: "GET", Host: fmt.Sprintf("h%d.example", i), Decision: audit.Deny, Reason: "no route"})
	}

	var out, errb bytes.Buffer
	s := cli.Streams{Out: &out, Err: &errb, Env: env}
	if err := runLogVerify(context.Background(), s, logVerifyOptions{Slug: slug}); err != nil {
		t.Fatalf("verify: %v\n%s", err, errb.String())
	}
	var rep audit.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || !rep.OK || rep.RotatedAway == 0 || len(rep.Files) != 3 {
		t.Errorf("report %s (%v)", out.String(), err)
	}
	if strings.Contains(errb.String(), "no head file") || !strings.Contains(errb.String(), "rotated away") {
		t.Errorf("stderr: %s", errb.String())
	}

	out.Reset()
	errb.Reset()
	if err := runLog(context.Background(), s, logOptions{Slug: slug}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var first, last audit.Entry
	json.Unmarshal([]byte(lines[0]), &first)
	json.Unmarshal([]byte(lines[len(lines)-1]), &last)
	if first.Seq != rep.FirstSeq || last.Seq != rep.LastSeq || uint64(len(lines)) != last.Seq-first.Seq+1 || errb.Len() > 0 {
		t.Errorf("printed %d lines, seq %d to %d; report %d to %d; stderr %s", len(lines), first.Seq, last.Seq, rep.FirstSeq, rep.LastSeq, errb.String())
	}
}
