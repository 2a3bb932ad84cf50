package docker

import (
	"strconv"
	"strings"
	"testing"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/manifest"
	"github.com/bb-bottles/bb/lib/state"
)

// What the agent hands back is bounded before the person's repository
// takes any of it: a bundle of more branches than a person could look
// through, or more bytes than the bound, is refused, and nothing of it
// lands in the person's repository.
func TestFetchBounded(t *testing.T) {
	c := needBase(t)
	ws := personCheckout(t)
	slug := newSlug("fetchmax")
	p, raw := shellPlan(t, slug, func(m *manifest.Manifest) { m.Bottle.Workspace = ws })
	st := &state.Store{Dir: t.TempDir()}
	cleanupBottle(t, c, slug)
	if _, err := Launch(t.Context(), c, launchOptions(t, p, raw, st)); err != nil {
		t.Fatal(err)
	}
	sh := func(script string) {
		t.Helper()
		if code, out, errs := execIn(t, c, slug, "sh", "-c", "cd /workspace && "+script); code != 0 {
			t.Fatalf("in the bottle: exit %d\n%s%s", code, out, errs)
		}
	}
	before := personGit(t, ws, "for-each-ref")

	// One branch past the bound, each a ref the person's repository
	// would keep as a file.
	n := backend.MaxFetchBranches + 1
	sh(`git commit -q --allow-empty -m many && h=$(git rev-parse HEAD) &&
i=0; while [ $i -lt ` + itoa(n) + ` ]; do echo "create refs/heads/b$i $h"; i=$((i+1)); done | git update-ref --stdin`)
	_, err := backend.FetchGit(t.Context(), New(c), st, p, "")
	if err == nil || !strings.Contains(err.Error(), "branches") {
		t.Errorf("a bundle of %d branches: %v", n, err)
	}
	if after := personGit(t, ws, "for-each-ref"); after != before {
		t.Errorf("refs landed in the person's repository: %d lines", strings.Count(after, "\n"))
	}

	// Fewer branches, more bytes than the bound (lowered for the test).
	sh(`git for-each-ref --format='delete %(refname)' 'refs/heads/b*' | git update-ref --stdin &&
head -c 3000000 /dev/urandom > big && git add big && git commit -q -m big`)
	defer func(m int64) { backend.MaxBundleBytes = m }(backend.MaxBundleBytes)
	backend.MaxBundleBytes = 2 << 20
	_, err = backend.FetchGit(t.Context(), New(c), st, p, "")
	if err == nil || !strings.Contains(err.Error(), "larger than") || exit.CodeOf(err) == 0 {
		t.Errorf("a bundle past the bound: %v", err)
	}
	if after := personGit(t, ws, "for-each-ref"); after != before {
		t.Errorf("refs landed in the person's repository: %d lines", strings.Count(after, "\n"))
	}
	backend.MaxBundleBytes = 64 << 20
	refs, err := backend.FetchGit(t.Context(), New(c), st, p, "")
	if err != nil || len(refs) != 1 {
		t.Errorf("within the bounds: %q %v", refs, err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
