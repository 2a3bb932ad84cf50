package state

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// LockFile is the file in a bottle's folder that Lock holds with flock(2).
const LockFile = ".lock"

// Lock takes the exclusive lock of one bottle, waiting until it is free or
// ctx is done (then the error wraps ctx.Err()). The lock is flock(2) on
// <dir>/<slug>/.lock, so it holds between processes as well as between
// goroutines, and the kernel drops it when the process dies. The file is
// opened close-on-exec: containers and agents started while it is held do
// not inherit it. It creates the bottle's folder if needed.
//
// unlock releases it; calling it more than once is harmless.
func (s *Store) Lock(ctx context.Context, slug string) (unlock func() error, err error) {
	if err := CheckSlug(slug); err != nil {
		return nil, fmt.Errorf("locking bottle: %w", err)
	}
	dir := filepath.Join(s.Dir, slug)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("locking bottle %s: %w", slug, err)
	}
	path := filepath.Join(dir, LockFile)
	for {
		f, err := lockFile(ctx, slug, path)
		if err != nil {
			return nil, err
		}
		// Remove may have deleted the folder while we waited: a lock on
		// the unlinked file would exclude no one, so take the new one.
		if sameFile(f, path) {
			return unlocker(f, path), nil
		}
		f.Close()
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("locking bottle %s: %w", slug, err)
		}
	}
}

// lockFile opens path and waits for its flock until ctx is done.
func lockFile(ctx context.Context, slug, path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("locking bottle %s: %w", slug, err)
	}
	// flock cannot be interrupted by a context, so poll without blocking;
	// the wait starts short because most holders are quick commands.
	wait := 5 * time.Millisecond
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, fmt.Errorf("waiting for the lock of bottle %s (another bb command is using it): %w", slug, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

func sameFile(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(path)
	return err == nil && os.SameFile(a, b)
}

func unlocker(f *os.File, path string) func() error {
	var once sync.Once
	var uerr error
	return func() error {
		once.Do(func() {
			uerr = unix.Flock(int(f.Fd()), unix.LOCK_UN)
			if cerr := f.Close(); uerr == nil {
				uerr = cerr
			}
			if uerr != nil {
				uerr = fmt.Errorf("unlocking %s: %w", path, uerr)
			}
		})
		return uerr
	}
}

// tryLock takes the lock without waiting; ok is false when it is held.
func (s *Store) tryLock(slug string) (unlock func() error, ok bool, err error) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	unlock, err = s.Lock(ctx, slug)
	if errors.Is(err, context.Canceled) {
		return nil, false, nil
	}
	return unlock, err == nil, err
}
