package state

import (
	"fmt"
	"os"
	"path/filepath"
)

// WriteFileAtomic replaces path with data: it writes a temporary file in
// the same folder, syncs it, renames it over path and syncs the folder.
// Readers see the old content or the new, never a mix, and a failure
// leaves the old file as it was. The egress sidecar watches routes.yaml
// and must see a rename, never a file truncated in place.
//
// perm is set exactly (the umask does not apply), since these files hold
// canaries and CA keys.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	return writeFileAtomic(path, data, perm, func(f *os.File, b []byte) error {
		_, err := f.Write(b)
		return err
	})
}

// writeFileAtomic takes the write step as a function so tests can make it
// fail half way.
func writeFileAtomic(path string, data []byte, perm os.FileMode, write func(*os.File, []byte) error) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
			err = fmt.Errorf("writing %s: %w", path, err)
		}
	}()
	if err = write(f, data); err != nil {
		return err
	}
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	// The rename is only durable once the folder's entry is on disk.
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
