package state

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// Store is the state directory. Its zero value is not usable; get one from
// Open. Folders are created 0700 on the first write, never by Open, so
// read-only commands (bb ls) leave no trace.
type Store struct {
	Dir string
}

// Open returns the Store at Dir(env).
func Open(env func(string) string) (*Store, error) {
	dir, err := Dir(env)
	if err != nil {
		return nil, err
	}
	return &Store{Dir: dir}, nil
}

// BottleDir returns the folder of one bottle. It panics if slug fails
// CheckSlug: a command checks a slug it was given before building paths
// from it (every error-returning method of Store does so itself).
func (s *Store) BottleDir(slug string) string {
	if err := CheckSlug(slug); err != nil {
		panic("state.BottleDir: " + err.Error())
	}
	return filepath.Join(s.Dir, slug)
}

// EgressDir returns a bottle's egress folder, which the sidecar container
// bind-mounts: RoutesFile, CACertFile, CAKeyFile, AuditLogFile and
// RequestsFile live there. Like BottleDir it panics on an invalid slug.
func (s *Store) EgressDir(slug string) string {
	return filepath.Join(s.BottleDir(slug), EgressDirName)
}

// MakeEgressDir creates a bottle's egress folder (0700) if needed and
// returns its path.
func (s *Store) MakeEgressDir(slug string) (string, error) {
	if err := CheckSlug(slug); err != nil {
		return "", fmt.Errorf("creating the egress folder: %w", err)
	}
	dir := s.EgressDir(slug)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("creating the egress folder: %w", err)
	}
	return dir, nil
}

// Exists reports whether a bottle has metadata, which is what makes it
// a bottle (List shows exactly those). It is false for an invalid slug.
func (s *Store) Exists(slug string) bool {
	if CheckSlug(slug) != nil {
		return false
	}
	fi, err := os.Stat(filepath.Join(s.Dir, slug, MetadataFile))
	return err == nil && fi.Mode().IsRegular()
}

// List returns the metadata of every bottle, oldest first (by Created, then
// slug). Folders without metadata (a launch that never got that far) and
// entries that are not slugs are skipped. Unreadable metadata is reported
// in the error, one line per file, naming it; the bottles that could be
// read are returned all the same, so a listing can show them and warn.
func (s *Store) List() ([]Metadata, error) {
	entries, err := os.ReadDir(s.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing bottles: %w", err)
	}
	var mds []Metadata
	var errs []error
	for _, e := range entries {
		if !e.IsDir() || CheckSlug(e.Name()) != nil {
			continue
		}
		md, err := s.ReadMetadata(e.Name())
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			errs = append(errs, err)
		default:
			mds = append(mds, md)
		}
	}
	slices.SortFunc(mds, func(a, b Metadata) int {
		return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.Slug, b.Slug))
	})
	return mds, errors.Join(errs...)
}

// Remove deletes a bottle's folder and everything in it. It refuses while
// another command holds the bottle's lock, rather than pull the folder from
// under it.
func (s *Store) Remove(slug string) error {
	if err := CheckSlug(slug); err != nil {
		return fmt.Errorf("removing bottle: %w", err)
	}
	dir := s.BottleDir(slug)
	if _, err := os.Stat(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing bottle %s: %w", slug, &NotFoundError{Slug: slug, Dir: s.Dir})
		}
		return fmt.Errorf("removing bottle %s: %w", slug, err)
	}
	unlock, ok, err := s.tryLock(slug)
	if err != nil {
		return fmt.Errorf("removing bottle %s: %w", slug, err)
	}
	if !ok {
		return fmt.Errorf("removing bottle %s: another bb command is using it", slug)
	}
	defer unlock()
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("removing bottle %s: %w", slug, err)
	}
	return nil
}

// NotFoundError says a bottle has no state. It matches fs.ErrNotExist.
type NotFoundError struct {
	Slug string
	Dir  string // the state directory
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("no bottle %q in %s", e.Slug, e.Dir)
}

func (e *NotFoundError) Is(target error) bool { return target == fs.ErrNotExist }

// readJSON decodes the JSON file at path into v, refusing unknown fields
// and trailing data. Errors name the file.
func readJSON(path string, v any) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, unwrapPath(err))
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	if dec.More() {
		return fmt.Errorf("reading %s: more than one JSON document", path)
	}
	return nil
}

// unwrapPath drops the *fs.PathError around err: messages name the file
// themselves, once.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
