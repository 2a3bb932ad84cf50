package smolvm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/freeze"
	"github.com/bb-bottles/bb/lib/names"
)

// Freezer freezes bottles that are smolvm machines (github.com/smol-machines/smolvm)
// by packing them into single-file artifacts.
//
// Command lines follow smolvm's own CLI definitions and its pack guide as
// of v1.22.2 (src/cli/pack.rs, src/cli/machine.rs, docs/pack/SKILL.md):
// `smolvm machine stop --name NAME`, then `smolvm pack create --from-vm
// NAME --output PATH --single-file` ("Pack from a stopped VM snapshot";
// --from-vm refuses a running machine), then `smolvm machine start --name
// NAME`. smolvm has no image store, so a snapshot is a file: the reference
// bb/<slug>:<tag> is kept at <Dir>/<slug>/images/<tag>, and latest is a
// symbolic link beside it. Labels have nowhere to go and are dropped.
type Freezer struct {
	Run freeze.Runner
	// Tool is the CLI's name or path ("smolvm" when empty).
	Tool string
	// Dir is the state directory (state.Store.Dir).
	Dir string
}

// Backend is "smolvm".
func (s *Freezer) Backend() string { return names.Smolvm }

// NeedsStop is true: pack create --from-vm packs a stopped machine.
func (s *Freezer) NeedsStop() bool { return true }

func (s *Freezer) run(ctx context.Context, args ...string) ([]byte, error) {
	tool := s.Tool
	if tool == "" {
		tool = "smolvm"
	}
	return s.Run.Run(ctx, tool, args...)
}

// Path returns the file that holds snapshot ref.
func (s *Freezer) Path(ref string) (string, error) {
	slug, tag, ok := splitRef(ref)
	if !ok || strings.ContainsAny(tag, `/\`) || tag == "." || tag == ".." {
		return "", exit.Usagef("snapshot reference %q: want bb/<slug>:<tag>", ref)
	}
	return filepath.Join(s.Dir, slug, "images", tag), nil
}

// smolMachine is the part of one element of `smolvm machine ls --json`
// that Running reads.
type smolMachine struct {
	Name  string `json:"name"`
	State string `json:"state"`
}

// Running lists the bottles among the running machines of `smolvm machine
// ls --json`: those named bot-bottle-<slug>.
func (s *Freezer) Running(ctx context.Context) ([]string, error) {
	out, err := s.run(ctx, "machine", "ls", "--json")
	if err != nil {
		return nil, exit.Backend(fmt.Errorf("listing running bottles: %w", err))
	}
	var ms []smolMachine
	if err := json.Unmarshal(out, &ms); err != nil {
		return nil, exit.Backend(fmt.Errorf("listing running bottles: reading the machine list: %w", err))
	}
	var slugs []string
	for _, m := range ms {
		slug, ok := strings.CutPrefix(m.Name, names.Prefix)
		if ok && strings.EqualFold(m.State, "running") && !slices.Contains(slugs, slug) {
			slugs = append(slugs, slug)
		}
	}
	slices.Sort(slugs)
	return slugs, nil
}

// Commit stops the machine, packs it into t.Ref's file and starts it
// again, also when packing failed. The ID is the file's SHA-256.
func (s *Freezer) Commit(ctx context.Context, t freeze.Target) (id string, err error) {
	path, err := s.Path(t.Ref)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("committing bottle %s: %w", t.Slug, err)
	}
	if _, err := s.run(ctx, "machine", "stop", "--name", t.Container); err != nil {
		return "", exit.Backend(fmt.Errorf("stopping bottle %s: %w", t.Slug, err))
	}
	defer func() {
		freeze.Undo(ctx, func(ctx context.Context) error {
			if _, serr := s.run(ctx, "machine", "start", "--name", t.Container); serr != nil && err == nil {
				err = exit.Backend(fmt.Errorf("starting bottle %s again after its snapshot: %w", t.Slug, serr),
					"the snapshot "+t.Ref+" was made; start the bottle with: smolvm machine start --name "+t.Container)
			}
			return nil
		})
	}()
	if _, err := s.run(ctx, "pack", "create", "--from-vm", t.Container, "--output", path, "--single-file"); err != nil {
		os.Remove(path)
		return "", exit.Backend(fmt.Errorf("packing bottle %s: %w", t.Slug, err))
	}
	return fileID(path)
}

func fileID(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", exit.Backend(fmt.Errorf("reading the packed snapshot: %w", err))
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", exit.Backend(fmt.Errorf("reading the packed snapshot %s: %w", path, err))
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// Tag points dst at src with a symbolic link, replaced atomically.
func (s *Freezer) Tag(_ context.Context, src, dst string) error {
	from, err := s.Path(src)
	if err != nil {
		return err
	}
	to, err := s.Path(dst)
	if err != nil {
		return err
	}
	tmp := to + ".tmp-link"
	os.Remove(tmp)
	if err := os.Symlink(filepath.Base(from), tmp); err != nil {
		return fmt.Errorf("tagging %s as %s: %w", src, dst, err)
	}
	if err := os.Rename(tmp, to); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("tagging %s as %s: %w", src, dst, err)
	}
	return nil
}

// Remove removes ref's file (or link).
func (s *Freezer) Remove(_ context.Context, ref string) error {
	path, err := s.Path(ref)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing snapshot %s: %w", ref, err)
	}
	return nil
}

// Exists reports whether ref's file is there (through the link, for latest).
func (s *Freezer) Exists(_ context.Context, ref string) (bool, error) {
	path, err := s.Path(ref)
	if err != nil {
		return false, err
	}
	_, err = os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// splitRef splits bb/<slug>:<tag>.
func splitRef(ref string) (slug, tag string, ok bool) {
	rest, ok := strings.CutPrefix(ref, "bb/")
	if !ok {
		return "", "", false
	}
	slug, tag, ok = strings.Cut(rest, ":")
	return slug, tag, ok && slug != "" && tag != ""
}
