package docker

import (
	"cmp"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/bb-bottles/bb/lib/state"
)

// Two launches of one slug at once: the one that loses the race for the
// lock fails, and leaves the winner's state (and bottle) as they were.
func TestLaunchRaceKeepsWinnersState(t *testing.T) {
	c := needBase(t)
	slug := newSlug("race")
	p, raw := shellPlan(t, slug, nil)
	st := &state.Store{Dir: t.TempDir()}
	cleanupBottle(t, c, slug)
	// Both reach the state's step together: the trace line of the step
	// before it waits for the other launch.
	var ready sync.WaitGroup
	ready.Add(2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range errs {
		o := launchOptions(t, p, raw, st)
		o.Trace = barrier{"reading the tokens", &ready}
		wg.Go(func() { _, errs[i] = Launch(t.Context(), c, o) })
	}
	wg.Wait()
	if (errs[0] == nil) == (errs[1] == nil) {
		t.Fatalf("want one launch to fail: %v; %v", errs[0], errs[1])
	}
	lost := cmp.Or(errs...)
	if !strings.Contains(lost.Error(), "already exists") {
		t.Errorf("the second launch = %v, want: already exists", lost)
	}
	if _, err := st.ReadMetadata(slug); err != nil {
		t.Errorf("the winner's metadata: %v", err)
	}
	for _, f := range []string{state.PlanFile, LaunchFile, filepath.Join(state.EgressDirName, state.CAKeyFile)} {
		if _, err := os.Stat(filepath.Join(st.BottleDir(slug), f)); err != nil {
			t.Errorf("the winner's state: %v", err)
		}
	}
	if code, _, _ := execIn(t, c, slug, "true"); code != 0 {
		t.Errorf("the winner's bottle: exit %d", code)
	}
}

// barrier is a trace that holds the launch at the end of one step until
// every launch it counts got there.
type barrier struct {
	step string
	wg   *sync.WaitGroup
}

func (b barrier) Write(p []byte) (int, error) {
	if strings.HasPrefix(string(p), "bb-launch: "+b.step) {
		b.wg.Done()
		b.wg.Wait()
	}
	return len(p), nil
}
