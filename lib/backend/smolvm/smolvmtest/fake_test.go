package smolvmtest

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// SaveArchive writes a `docker save` archive of one layer holding files
// (path -> content), with user as the image config's User.
func saveArchive(t *testing.T, path, user string, files map[string]string) {
	t.Helper()
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	for name, content := range files {
		tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(name, "/"), Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg})
		tw.Write([]byte(content))
	}
	tw.WriteHeader(&tar.Header{Name: "home/agent/", Mode: 0o755, Uid: 1000, Gid: 1000, Typeflag: tar.TypeDir})
	tw.Close()
	cfg, _ := json.Marshal(map[string]any{"config": map[string]any{"User": user, "WorkingDir": "/workspace", "Cmd": []string{"claude"}}})
	man, _ := json.Marshal([]map[string]any{{"Config": "config.json", "RepoTags": []string{"bb-agent-x:1"}, "Layers": []string{"layer.tar"}}})
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := tar.NewWriter(f)
	for _, m := range []struct {
		name string
		data []byte
	}{{"manifest.json", man}, {"config.json", cfg}, {"layer.tar", layer.Bytes()}} {
		out.WriteHeader(&tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.data))})
		out.Write(m.data)
	}
	out.Close()
}

func (f *Fake) run(t *testing.T, env []string, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(f.Bin, args...)
	cmd.Env = append(append(os.Environ(), f.Env()...), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

func (f *Fake) must(t *testing.T, env []string, args ...string) string {
	t.Helper()
	out, errs, code := f.run(t, env, "", args...)
	if code != 0 {
		t.Fatalf("smolvm %s: exit %d: %s", strings.Join(args, " "), code, errs)
	}
	return out
}

// The fake models what the backend relies on, as smolvm v1.9.3 does it.
func TestFake(t *testing.T) {
	f := New(t)
	tmp := t.TempDir()
	if out := f.must(t, nil, "--version"); out != "smolvm 1.9.3\n" {
		t.Errorf("--version = %q", out)
	}
	rootfs := filepath.Join(tmp, "rootfs")
	os.MkdirAll(rootfs, 0o755)
	os.WriteFile(filepath.Join(rootfs, "bb-egress"), []byte("x"), 0o755)
	archive := filepath.Join(tmp, "agent.tar")
	saveArchive(t, archive, "agent", map[string]string{"/etc/passwd": "root:x:0:0::/root:/bin/sh\nagent:x:1000:1000::/home/agent:/bin/sh\n"})

	f.must(t, nil, "machine", "create", "--name", "bot-bottle-s-egress", "--image", rootfs, "--network", "n1",
		"--secret-env", "EGRESS_TOKEN_X=EGRESS_TOKEN_X", "--label", "bb.slug=s", "--", "/bb-egress", "serve", "--listen", ":3128")
	f.must(t, nil, "machine", "create", "--name", "bot-bottle-s", "--image", archive, "--network", "n1",
		"--allow-host", "100.96.1.2", "-e", "A=1", "--", "sleep", "infinity")
	if _, errs, code := f.run(t, nil, "", "machine", "create", "--name", "bot-bottle-s", "--image", archive); code != 1 || !strings.Contains(errs, "already exists") {
		t.Errorf("a second machine of one name: exit %d, %s", code, errs)
	}
	if _, errs, code := f.run(t, nil, "", "machine", "create", "--name", "a--b"); code != 1 || !strings.Contains(errs, "consecutive hyphens") {
		t.Errorf("a bad name: exit %d, %s", code, errs)
	}

	// A secret reference resolves at start, from the starting process.
	if _, errs, code := f.run(t, nil, "", "machine", "start", "--name", "bot-bottle-s-egress"); code != 1 || !strings.Contains(errs, "EGRESS_TOKEN_X") {
		t.Fatalf("a start without the secret's variable: exit %d, %s", code, errs)
	}
	f.must(t, []string{"EGRESS_TOKEN_X=sekrit"}, "machine", "start", "--name", "bot-bottle-s-egress")
	f.must(t, nil, "machine", "start", "--name", "bot-bottle-s")
	ms := f.Machines(t)
	if a, s := ms["bot-bottle-s"], ms["bot-bottle-s-egress"]; s.Address != "100.96.1.2" || a.Address != "100.96.2.2" {
		t.Errorf("leases: sidecar %s, agent %s", s.Address, a.Address)
	}
	if !strings.Contains(strings.Join(ms["bot-bottle-s-egress"].WorkloadEnv, " "), "EGRESS_TOKEN_X=sekrit") {
		t.Errorf("the sidecar's workload env: %q", ms["bot-bottle-s-egress"].WorkloadEnv)
	}
	if bytes.Contains(f.Log(t), []byte("sekrit")) {
		t.Error("a secret value is in the argv log")
	}

	// ls --json: the keys of machine_status_json.
	var list []map[string]any
	if err := json.Unmarshal([]byte(f.must(t, nil, "machine", "ls", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0]["state"] != "running" || list[1]["labels"].(map[string]any)["bb.slug"] != "s" {
		t.Errorf("ls --json = %v", list)
	}

	// The agent runs as the image's user and reaches the sidecar by name
	// once /etc/hosts has it, and nothing else.
	if out := f.must(t, nil, "machine", "exec", "--name", "bot-bottle-s", "--", "id", "-u"); out != "1000\n" {
		t.Errorf("id -u = %q", out)
	}
	hosts := filepath.Join(tmp, "hosts")
	os.WriteFile(hosts, []byte("127.0.0.1 localhost\n100.96.1.2 bb.egress\n"), 0o644)
	f.must(t, nil, "machine", "cp", hosts, "bot-bottle-s:/etc/hosts")
	helper := filepath.Join(tmp, "helper")
	os.WriteFile(helper, []byte("x"), 0o755)
	f.must(t, nil, "machine", "cp", "--mode", "755", helper, "bot-bottle-s:/bb/bin/bb-egress")
	f.must(t, nil, "machine", "exec", "--name", "bot-bottle-s", "--", "/bb/bin/bb-egress", "guest", "dial", "bb.egress:3128")
	if _, errs, code := f.run(t, nil, "", "machine", "exec", "--name", "bot-bottle-s", "--", "/bb/bin/bb-egress", "guest", "dial", "1.1.1.1:443"); code != 1 || !strings.Contains(errs, "egress policy denied") {
		t.Errorf("dial out: exit %d, %s", code, errs)
	}
	if _, _, code := f.run(t, nil, "", "machine", "exec", "--name", "bot-bottle-s", "--", "mkdir", "-p", "/root/x"); code != 1 {
		t.Errorf("mkdir in /root as the agent: exit %d", code)
	}
	f.must(t, nil, "machine", "exec", "--name", "bot-bottle-s", "--", "mkdir", "-p", "/home/agent/.bb")

	// The holder: held, joined, ended.
	sock := "/run/bb/agent.sock"
	f.must(t, nil, "machine", "exec", "--name", "bot-bottle-s", "-d", "--", "/bb/bin/bb-egress", "guest", "hold", "--socket", sock, "--wait", "--", "claude")
	out, _, code := f.run(t, nil, "hello\rexit 4\r", "machine", "exec", "--name", "bot-bottle-s", "-it", "--", "/bb/bin/bb-egress", "guest", "join", "--socket", sock)
	if code != 4 || !strings.Contains(out, "[agent claude]") || !strings.Contains(out, "hello") {
		t.Errorf("attach: exit %d, %q", code, out)
	}
	if out := f.must(t, nil, "machine", "exec", "--name", "bot-bottle-s", "--", "/bb/bin/bb-egress", "guest", "status", "--socket", sock); out != `{"exit_code":4,"running":false}`+"\n" {
		t.Errorf("status = %q", out)
	}

	// A pack of the stopped machine boots with what was written into it.
	if _, errs, code := f.run(t, nil, "", "pack", "create", "--from-vm", "bot-bottle-s", "-o", filepath.Join(tmp, "p")); code != 1 || !strings.Contains(errs, "is running") {
		t.Errorf("pack of a running machine: exit %d, %s", code, errs)
	}
	f.must(t, nil, "machine", "stop", "--name", "bot-bottle-s")
	f.must(t, nil, "pack", "create", "--from-vm", "bot-bottle-s", "-o", filepath.Join(tmp, "p"))
	if _, errs, code := f.run(t, nil, "", "machine", "delete", "--name", "bot-bottle-s"); code != 1 || !strings.Contains(errs, "--force") {
		t.Errorf("delete without -f: exit %d, %s", code, errs)
	}
	f.must(t, nil, "machine", "delete", "--name", "bot-bottle-s", "-f")
	f.must(t, nil, "machine", "create", "--name", "bot-bottle-s", "--from", filepath.Join(tmp, "p.smolmachine"), "--network", "n1", "--allow-host", "100.96.1.2")
	if out := f.must(t, nil, "machine", "exec", "--name", "bot-bottle-s", "--", "cat", "/etc/hosts"); !strings.Contains(out, "bb.egress") {
		t.Errorf("/etc/hosts after the pack: %q", out)
	}

	// 137 on the first exec after a start, when asked for.
	f.must(t, nil, "machine", "stop", "--name", "bot-bottle-s")
	f.must(t, nil, "machine", "start", "--name", "bot-bottle-s")
	if _, _, code := f.run(t, []string{"SMOLVM_FAKE_EXEC_137=1"}, "", "machine", "exec", "--name", "bot-bottle-s", "--", "true"); code != 137 {
		t.Errorf("first exec: exit %d, want 137", code)
	}
	if _, _, code := f.run(t, []string{"SMOLVM_FAKE_EXEC_137=1"}, "", "machine", "exec", "--name", "bot-bottle-s", "--", "true"); code != 0 {
		t.Errorf("second exec: exit %d, want 0", code)
	}
	f.CheckSyntax(t)
}
