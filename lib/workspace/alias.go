package workspace

import (
	"fmt"
	"os"
	"path/filepath"
	"unicode"
)

// A mount over <workdir>/.git masks that name only. On a disk that ignores
// case (macOS's, by default, which Docker Desktop and Apple's containers
// share as it is), .GIT, .Git and the other spellings are the same entry,
// so the agent would reach the person's .git (or the folder bb made for its
// own repository) through them, and write what git on the host runs. So
// every spelling the disk takes is masked as .git is. A disk that ignores
// more than case (HFS+ passes over some invisible characters) takes names
// past counting, and is refused.

// caseSpellings are the names that are .git on a disk that ignores case.
func caseSpellings() []string {
	var out []string
	for m := 1; m < 8; m++ {
		b := []byte(".git")
		for i := 0; i < 3; i++ {
			if m&(1<<i) != 0 {
				b[i+1] -= 'a' - 'A'
			}
		}
		out = append(out, string(b))
	}
	return out
}

// GitAliases are the names other than .git under ws by which ws/.git is
// found, as the disk answers now (none where it is case-sensitive, or ws
// has no .git).
func GitAliases(ws string) []string {
	git, err := os.Lstat(filepath.Join(ws, ".git"))
	if err != nil {
		// None yet (a backend that mounts before it makes one): where
		// the disk ignores case, every spelling will be .git.
		if ignoresCase(ws) {
			return caseSpellings()
		}
		return nil
	}
	var out []string
	for _, n := range caseSpellings() {
		if fi, err := os.Lstat(filepath.Join(ws, n)); err == nil && os.SameFile(fi, git) {
			out = append(out, n)
		}
	}
	return out
}

// ignorable are characters HFS+ passes over in a name.
var ignorable = []string{"\u200c", "\u200d", "\u200e", "\u202a", "\u206a", "\ufeff"}

// checkIgnoring refuses ws on a disk that passes over characters in names:
// its own name, with one of them inside, is still found as itself.
func checkIgnoring(ws string) error {
	self, err := os.Lstat(ws)
	if err != nil {
		return nil
	}
	dir, base := filepath.Split(ws)
	for _, c := range ignorable {
		if fi, err := os.Lstat(filepath.Join(dir, c+base)); err == nil && os.SameFile(fi, self) {
			return &Refusal{ws, fmt.Sprintf("its disk passes over invisible characters in names (U+%04X; HFS+ does): "+
				"the agent could reach the folder's .git under names bb cannot mask; put the workspace on an APFS volume or a Linux disk",
				[]rune(c)[0])}
		}
	}
	return nil
}

// ignoresCase reports whether ws's disk finds ws under its name in another
// case (false when its name has no letters to tell by).
func ignoresCase(ws string) bool {
	self, err := os.Lstat(ws)
	if err != nil {
		return false
	}
	dir, base := filepath.Split(ws)
	swapped := []rune(base)
	for i, r := range swapped {
		switch {
		case unicode.IsUpper(r):
			swapped[i] = unicode.ToLower(r)
		case unicode.IsLower(r):
			swapped[i] = unicode.ToUpper(r)
		}
	}
	if string(swapped) == base {
		return false
	}
	fi, err := os.Lstat(filepath.Join(dir, string(swapped)))
	return err == nil && os.SameFile(fi, self)
}
