package state

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// holdLock is the helper process: it takes the lock of bottle "demo" in
// the store at dir, says "locked" on stdout and holds it until stdin
// closes.
func holdLock(dir string) int {
	st := &Store{Dir: dir}
	unlock, err := st.Lock(context.Background(), "demo")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	fmt.Println("locked")
	io.Copy(io.Discard, os.Stdin)
	if err := unlock(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	return 0
}

// waitsFor asserts that Lock blocks while release has not been called and
// returns once it has.
func waitsFor(t *testing.T, st *Store, release func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := st.Lock(ctx, "demo"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock while held = %v, want it to wait until the deadline", err)
	}

	got := make(chan error, 1)
	var unlock func() error
	go func() {
		var err error
		unlock, err = st.Lock(t.Context(), "demo")
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("Lock returned (%v) while the lock was held", err)
	case <-time.After(150 * time.Millisecond):
	}
	release()
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("Lock after release: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Lock still waiting 10s after release")
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
}

func TestLockGoroutines(t *testing.T) {
	st := newStore(t)
	unlock, err := st.Lock(t.Context(), "demo")
	if err != nil {
		t.Fatal(err)
	}
	waitsFor(t, st, func() {
		if err := unlock(); err != nil {
			t.Error(err)
		}
	})
	if err := unlock(); err != nil {
		t.Errorf("a second unlock = %v, want nil", err)
	}
	// Another bottle's lock is independent.
	unlockOther, err := st.Lock(t.Context(), "other")
	if err != nil {
		t.Fatal(err)
	}
	unlockOther()
}

func TestLockProcesses(t *testing.T) {
	st := newStore(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), "BB_STATE_TEST_LOCK_HOLDER="+st.Dir)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("helper said %q, %v; want locked", line, err)
	}
	waitsFor(t, st, func() { stdin.Close() })
	if err := cmd.Wait(); err != nil {
		t.Errorf("helper: %v", err)
	}
}

// Update is a read-modify-write under the lock: concurrent updates are all
// kept.
func TestUpdateConcurrent(t *testing.T) {
	st := newStore(t)
	if err := st.WriteMetadata("demo", Metadata{}); err != nil {
		t.Fatal(err)
	}
	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			err := st.Update(t.Context(), "demo", func(md *Metadata) error {
				md.Images = append(md.Images, Image{Ref: fmt.Sprintf("bb/demo:%d", i)})
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	md, err := st.ReadMetadata("demo")
	if err != nil {
		t.Fatal(err)
	}
	if len(md.Images) != n {
		t.Errorf("%d images after %d concurrent updates, want %d", len(md.Images), n, n)
	}
}

func TestUpdateErrors(t *testing.T) {
	st := newStore(t)
	ctx := t.Context()
	if err := st.Update(ctx, "demo", func(*Metadata) error { return nil }); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Update of a missing bottle = %v, want fs.ErrNotExist", err)
	}
	if _, err := os.Stat(st.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Update of a missing bottle created the state dir")
	}
	if err := st.WriteMetadata("demo", Metadata{Label: "old"}); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := st.Update(ctx, "demo", func(md *Metadata) error {
		md.Label = "new"
		return boom
	})
	if err != boom {
		t.Errorf("Update = %v, want fn's error as is", err)
	}
	if err := st.Update(ctx, "demo", func(md *Metadata) error { md.Slug = "other"; return nil }); err == nil {
		t.Error("Update changing the slug: no error")
	}
	md, _ := st.ReadMetadata("demo")
	if md.Label != "old" || md.Slug != "demo" {
		t.Errorf("metadata changed by failed updates: %+v", md)
	}
	if err := st.Update(ctx, "demo", func(md *Metadata) error { md.Label = "new"; return nil }); err != nil {
		t.Fatal(err)
	}
	if md, _ := st.ReadMetadata("demo"); md.Label != "new" {
		t.Errorf("Label = %q after Update, want new", md.Label)
	}
}

// A waiter whose lock file was removed with its folder (Remove holds the
// lock while it deletes) must not believe it holds the lock of the bottle
// made again after.
func TestLockAfterRemove(t *testing.T) {
	st := newStore(t)
	unlock, err := st.Lock(t.Context(), "demo")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan func() error, 1)
	go func() {
		u, err := st.Lock(t.Context(), "demo")
		if err != nil {
			t.Error(err)
		}
		got <- u
	}()
	time.Sleep(50 * time.Millisecond) // let it wait on the old file
	if err := os.RemoveAll(st.BottleDir("demo")); err != nil {
		t.Fatal(err)
	}
	unlock()
	waiter := <-got
	if waiter == nil {
		t.FailNow()
	}
	defer waiter()
	if _, ok, err := st.tryLock("demo"); ok || err != nil {
		t.Errorf("tryLock while the waiter holds the lock: ok %v, err %v; want it refused", ok, err)
	}
}
