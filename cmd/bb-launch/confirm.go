package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"github.com/mattn/go-isatty"

	"github.com/bb-bottles/bb/lib/terminal"
)

// confirm asks the person at the terminal a yes-or-no question after
// showing them show, on stderr, reading the answer from /dev/tty (stdin is
// the plan). With no terminal there is no one to ask: nil, and the launch
// refuses what it would have asked about, naming the flag that answers it.
func (d *deps) confirm() func(show, question string) (bool, error) {
	f, ok := d.Err.(*os.File)
	if !ok || !isatty.IsTerminal(f.Fd()) {
		return nil
	}
	return func(show, question string) (bool, error) {
		t, err := terminal.Open()
		if err != nil {
			return false, nil
		}
		defer t.Close()
		fmt.Fprintf(d.Err, "bb-launch: %s%s [y/N] ", show, question)
		line, err := bufio.NewReader(t).ReadString('\n')
		if err != nil {
			fmt.Fprintln(d.Err)
			return false, nil
		}
		a := strings.ToLower(strings.TrimSpace(line))
		return a == "y" || a == "yes", nil
	}
}
