package smolvm

import (
	"os"
	"testing"
)

// The decoder reads `machine ls --json` as smolvm 1.9.3 prints it
// (src/cli/vm_common.rs machine_status_json: every key, nulls, an empty
// labels object, the states of src/config.rs RecordState), written here
// from that source rather than from the fake.
func TestDecodeMachines(t *testing.T) {
	b, err := os.ReadFile("testdata/machine-ls.json")
	if err != nil {
		t.Fatal(err)
	}
	ms, err := decodeMachines(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 4 {
		t.Fatalf("%d machines", len(ms))
	}
	bt := bottleOf(ms, "demo-x1y2")
	if bt.agent == nil || bt.agent.Name != "bot-bottle-demo-x1y2" || !bt.agent.running() || *bt.agent.Image != "local-archive:5d41402abc4b2a76b9719d911017c592" {
		t.Errorf("agent = %+v", bt.agent)
	}
	// An unreachable machine's VMM lives but runs nothing: not running.
	if bt.sidecar == nil || bt.sidecar.running() || len(bt.all) != 2 {
		t.Errorf("sidecar = %+v, all = %d", bt.sidecar, len(bt.all))
	}
	// A machine whose labels were never stored is found by its name, and
	// nothing of another's is taken.
	old := bottleOf(ms, "old-a1b2")
	if old.agent == nil || old.agent.Image != nil || old.agent.running() || old.sidecar != nil || len(old.all) != 1 {
		t.Errorf("old = %+v", old)
	}
	if none := bottleOf(ms, "myvm"); none.agent != nil || len(none.all) != 0 {
		t.Errorf("a person's own machine taken for a bottle: %+v", none)
	}
	if ms, err := decodeMachines([]byte("[]\n")); err != nil || len(ms) != 0 {
		t.Errorf("no machines: %v, %v", ms, err)
	}
	if _, err := decodeMachines([]byte("No machines found\n")); err == nil {
		t.Error("the table was taken for JSON")
	}
}

func TestParseVersion(t *testing.T) {
	for _, tt := range []struct {
		out  string
		want version
		bad  bool
	}{
		{out: "smolvm 1.9.3\n", want: version{1, 9, 3}},
		{out: "smolvm 1.10.0", want: version{1, 10, 0}},
		{out: "smolvm v2.0.1-rc1", want: version{2, 0, 1}},
		{out: "1.9.3", bad: true},
		{out: "", bad: true},
	} {
		v, err := parseVersion(tt.out)
		if (err != nil) != tt.bad || !tt.bad && v != tt.want {
			t.Errorf("parseVersion(%q) = %v, %v", tt.out, v, err)
		}
	}
	if !(version{1, 8, 3}).less(MinVersion) || (version{1, 9, 0}).less(MinVersion) || (version{1, 10, 0}).less(MinVersion) {
		t.Error("less")
	}
}
