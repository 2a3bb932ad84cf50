package state

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestMain(m *testing.M) {
	// The test binary doubles as a second process holding a lock.
	if dir := os.Getenv("BB_STATE_TEST_LOCK_HOLDER"); dir != "" {
		os.Exit(holdLock(dir))
	}
	os.Exit(m.Run())
}

func newStore(t *testing.T) *Store {
	t.Helper()
	return &Store{Dir: filepath.Join(t.TempDir(), "state")}
}

func TestOpen(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
		err  bool
	}{
		{"BB_STATE_DIR", map[string]string{"BB_STATE_DIR": "/s", "XDG_STATE_HOME": "/x", "HOME": "/h"}, "/s", false},
		{"XDG_STATE_HOME", map[string]string{"XDG_STATE_HOME": "/x", "HOME": "/h"}, "/x/bot-bottle", false},
		{"HOME", map[string]string{"HOME": "/h"}, "/h/.local/state/bot-bottle", false},
		{"nothing", nil, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := Open(func(k string) string { return tt.env[k] })
			if (err != nil) != tt.err {
				t.Fatalf("Open: err = %v, want error %v", err, tt.err)
			}
			if err != nil {
				return
			}
			if diff := cmp.Diff(tt.want, st.Dir); diff != "" {
				t.Errorf("Dir (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOpenCreatesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	st, err := Open(func(k string) string { return map[string]string{"BB_STATE_DIR": dir}[k] })
	if err != nil {
		t.Fatal(err)
	}
	if mds, err := st.List(); err != nil || len(mds) != 0 {
		t.Errorf("List of a missing state dir = %v, %v; want nothing, no error", mds, err)
	}
	if st.Exists("demo") {
		t.Error("Exists(demo) in a missing state dir")
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open, List and Exists created the state dir (stat: %v)", err)
	}
}

func TestCheckSlug(t *testing.T) {
	tests := []struct {
		slug string
		ok   bool
	}{
		{"demo", true},
		{"demo-1a2b", true},
		{"0", true},
		{strings.Repeat("a", 63), true},
		{"", false},
		{".", false},
		{"..", false},
		{"../x", false},
		{"a/b", false},
		{"/etc", false},
		{"a..b", false},
		{"a.b", false},
		{"-a", false},
		{"a-", false},
		{"Demo", false},
		{"a b", false},
		{"a\x00b", false},
		{"é", false},
		{strings.Repeat("a", 64), false},
	}
	for _, tt := range tests {
		err := CheckSlug(tt.slug)
		if (err == nil) != tt.ok {
			t.Errorf("CheckSlug(%q) = %v, want ok %v", tt.slug, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidSlug) {
			t.Errorf("CheckSlug(%q) = %v, does not wrap ErrInvalidSlug", tt.slug, err)
		}
	}
}

// Every entry point refuses a slug that could leave the state dir, and
// nothing is created outside it.
func TestSlugTraversal(t *testing.T) {
	root := t.TempDir()
	st := &Store{Dir: filepath.Join(root, "state")}
	victim := filepath.Join(root, "victim")
	if err := os.MkdirAll(victim, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(victim, MetadataFile), []byte(`{"slug":"../victim"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	// Short, so that a broken check fails here rather than hang on a lock.
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	for _, slug := range []string{"", "..", "../victim", "a/../../victim", "/tmp", "."} {
		calls := map[string]error{
			"ReadMetadata":  func() error { _, err := st.ReadMetadata(slug); return err }(),
			"WriteMetadata": st.WriteMetadata(slug, Metadata{}),
			"Update":        st.Update(ctx, slug, func(*Metadata) error { return nil }),
			"WritePlan":     st.WritePlan(slug, []byte(`{}`)),
			"ReadPlan":      func() error { _, err := st.ReadPlan(slug); return err }(),
			"Remove":        st.Remove(slug),
			"Lock":          func() error { _, err := st.Lock(ctx, slug); return err }(),
			"MakeEgressDir": func() error { _, err := st.MakeEgressDir(slug); return err }(),
		}
		for name, err := range calls {
			if !errors.Is(err, ErrInvalidSlug) {
				t.Errorf("%s(%q) = %v, want ErrInvalidSlug", name, slug, err)
			}
		}
		if st.Exists(slug) {
			t.Errorf("Exists(%q) = true", slug)
		}
		for name, f := range map[string]func(string) string{"BottleDir": st.BottleDir, "EgressDir": st.EgressDir} {
			func() {
				defer func() {
					if recover() == nil {
						t.Errorf("%s(%q) did not panic", name, slug)
					}
				}()
				f(slug)
			}()
		}
	}
	entries, _ := os.ReadDir(root)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if diff := cmp.Diff([]string{"victim"}, names); diff != "" {
		t.Errorf("files next to the state dir (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(filepath.Join(victim, MetadataFile)); err != nil {
		t.Errorf("the file outside the state dir is gone: %v", err)
	}
}

func TestMetadataRoundTrip(t *testing.T) {
	st := newStore(t)
	created := time.Date(2025, 3, 1, 12, 0, 0, 0, time.FixedZone("CET", 3600))
	tests := []struct {
		name string
		in   Metadata
		want Metadata
	}{
		{
			name: "minimal",
			in:   Metadata{Agent: "demo", Created: created},
			want: Metadata{Slug: "minimal", Agent: "demo", Created: created.UTC(), Images: []Image{}},
		},
		{
			name: "full",
			in: Metadata{Slug: "full", Agent: "demo", Template: "claude", Label: "Demo", Color: "blue",
				Backend: "docker", Created: created, Preserved: true,
				Images: []Image{{Ref: "bb/full:1", ID: "sha256:ab", Created: created}}},
			want: Metadata{Slug: "full", Agent: "demo", Template: "claude", Label: "Demo", Color: "blue",
				Backend: "docker", Created: created.UTC(), Preserved: true,
				Images: []Image{{Ref: "bb/full:1", ID: "sha256:ab", Created: created.UTC()}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := st.WriteMetadata(tt.name, tt.in); err != nil {
				t.Fatal(err)
			}
			got, err := st.ReadMetadata(tt.name)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ReadMetadata (-want +got):\n%s", diff)
			}
			if got.Created.Location() != time.UTC {
				t.Errorf("Created is in %v, want UTC", got.Created.Location())
			}
			if !st.Exists(tt.name) {
				t.Errorf("Exists(%s) = false after WriteMetadata", tt.name)
			}
			fi, err := os.Stat(filepath.Join(st.Dir, tt.name, MetadataFile))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("metadata.json mode = %v, want 0600", fi.Mode().Perm())
			}
		})
	}
}

// The file is a contract for scripts: every field, snake_case, UTC, and
// images never null.
func TestMetadataJSON(t *testing.T) {
	st := newStore(t)
	created := time.Date(2025, 3, 1, 12, 0, 0, 0, time.FixedZone("CET", 3600))
	if err := st.WriteMetadata("demo", Metadata{Agent: "demo", Created: created}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(st.Dir, "demo", MetadataFile))
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "slug": "demo",
  "agent": "demo",
  "template": "",
  "label": "",
  "color": "",
  "backend": "",
  "created": "2025-03-01T11:00:00Z",
  "preserved": false,
  "images": []
}
`
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("metadata.json (-want +got):\n%s", diff)
	}
}

func TestReadMetadataErrors(t *testing.T) {
	tests := []struct {
		name     string
		content  string // "" for no file
		wantErr  string
		notFound bool
	}{
		{"missing", "", `no bottle "missing" in`, true},
		{"unknown-field", `{"slug":"unknown-field","extra":1}`, `unknown field "extra"`, false},
		{"syntax", `{"slug":`, "unexpected EOF", false},
		{"trailing", `{"slug":"trailing"} {}`, "more than one JSON document", false},
		{"wrong-slug", `{"slug":"other"}`, `slug "other" does not match its folder "wrong-slug"`, false},
		{"bad-time", `{"slug":"bad-time","created":"yesterday"}`, "cannot parse", false},
	}
	st := newStore(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(st.Dir, tt.name, MetadataFile)
			if tt.content != "" {
				if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			_, err := st.ReadMetadata(tt.name)
			if err == nil {
				t.Fatal("ReadMetadata: no error")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
			if !tt.notFound && !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file %s", err, path)
			}
			if got := errors.Is(err, fs.ErrNotExist); got != tt.notFound {
				t.Errorf("errors.Is(err, fs.ErrNotExist) = %v, want %v", got, tt.notFound)
			}
		})
	}
}

func TestWriteMetadataWrongSlug(t *testing.T) {
	st := newStore(t)
	if err := st.WriteMetadata("demo", Metadata{Slug: "other"}); err == nil {
		t.Error("WriteMetadata(demo, slug other): no error")
	}
	if st.Exists("demo") || st.Exists("other") {
		t.Error("a bottle was written anyway")
	}
}

func TestList(t *testing.T) {
	st := newStore(t)
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, md := range []Metadata{
		{Slug: "c", Created: t0.Add(2 * time.Hour)},
		{Slug: "b", Created: t0},
		{Slug: "a", Created: t0.Add(time.Hour)},
		{Slug: "a2", Created: t0},
	} {
		if err := st.WriteMetadata(md.Slug, md); err != nil {
			t.Fatal(err)
		}
	}
	// A folder with only a plan (a launch that stopped early), a file and
	// a folder that is not a slug are not bottles.
	if err := st.WritePlan("half", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(st.Dir, "README"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(st.Dir, ".cache"), 0o700); err != nil {
		t.Fatal(err)
	}

	mds, err := st.List()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, md := range mds {
		got = append(got, md.Slug)
	}
	if diff := cmp.Diff([]string{"a2", "b", "a", "c"}, got); diff != "" {
		t.Errorf("List order (-want +got):\n%s", diff)
	}

	corrupt := filepath.Join(st.Dir, "b", MetadataFile)
	if err := os.WriteFile(corrupt, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	mds, err = st.List()
	if err == nil || !strings.Contains(err.Error(), corrupt) {
		t.Errorf("List with a corrupt metadata.json: err = %v, want one naming %s", err, corrupt)
	}
	if len(mds) != 3 {
		t.Errorf("List with one corrupt bottle returned %d bottles, want the other 3", len(mds))
	}
}

func TestPlan(t *testing.T) {
	st := newStore(t)
	plan := []byte(`{"kind":"bb.plan","canary":"x"}` + "\n")
	if _, err := st.ReadPlan("demo"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadPlan of a missing bottle = %v, want fs.ErrNotExist", err)
	}
	if err := st.WritePlan("demo", []byte("not json")); err == nil {
		t.Error("WritePlan(not json): no error")
	}
	if err := st.WritePlan("demo", plan); err != nil {
		t.Fatal(err)
	}
	got, err := st.ReadPlan("demo")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(plan), string(got)); diff != "" {
		t.Errorf("ReadPlan (-want +got):\n%s", diff)
	}
	fi, err := os.Stat(filepath.Join(st.BottleDir("demo"), PlanFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("plan.json mode = %v, want 0600 (it holds the canary)", fi.Mode().Perm())
	}
	fi, err = os.Stat(st.BottleDir("demo"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("bottle folder mode = %v, want 0700", fi.Mode().Perm())
	}
}

func TestRemove(t *testing.T) {
	st := newStore(t)
	if err := st.Remove("demo"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Remove of a missing bottle = %v, want fs.ErrNotExist", err)
	}
	if err := st.WriteMetadata("demo", Metadata{}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.MakeEgressDir("demo"); err != nil {
		t.Fatal(err)
	}
	unlock, err := st.Lock(t.Context(), "demo")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Remove("demo"); err == nil {
		t.Error("Remove of a locked bottle: no error")
	}
	if !st.Exists("demo") {
		t.Fatal("Remove of a locked bottle removed it")
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	if err := st.Remove("demo"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(st.BottleDir("demo")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the folder is still there: %v", err)
	}
}

func TestEgressDir(t *testing.T) {
	st := newStore(t)
	want := filepath.Join(st.Dir, "demo", "egress")
	if got := st.EgressDir("demo"); got != want {
		t.Errorf("EgressDir = %s, want %s", got, want)
	}
	got, err := st.MakeEgressDir("demo")
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(got)
	if err != nil || !fi.IsDir() || got != want {
		t.Errorf("MakeEgressDir = %s (stat %v, %v), want a folder at %s", got, fi, err, want)
	}
}

// bb-freeze once recorded Apple's container backend as "container": such
// metadata reads as macos-container, the name plans and backends use, and
// is written back under it.
func TestMetadataFormerBackendName(t *testing.T) {
	st := newStore(t)
	for backend, want := range map[string]string{"container": "macos-container", "macos-container": "macos-container",
		"docker": "docker", "smolvm": "smolvm", "": ""} {
		slug := "b-" + strings.ReplaceAll(backend, "-", "") + "x"
		path := filepath.Join(st.Dir, slug, MetadataFile)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		md := `{"slug":"` + slug + `","agent":"a","template":"shell","label":"a","color":"","backend":"` + backend +
			`","created":"2030-05-01T12:00:00Z","preserved":false,"images":[]}`
		if err := os.WriteFile(path, []byte(md), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := st.ReadMetadata(slug)
		if err != nil {
			t.Fatal(err)
		}
		if got.Backend != want {
			t.Errorf("backend %q reads as %q, want %q", backend, got.Backend, want)
		}
		if err := st.WriteMetadata(slug, got); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(path); !strings.Contains(string(b), `"backend": "`+want+`"`) {
			t.Errorf("backend %q written back as:\n%s", backend, b)
		}
	}
}
