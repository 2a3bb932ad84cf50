package cli

import (
	"errors"
	"fmt"
	"strings"

	ucli "github.com/urfave/cli/v2"
)

// ErrHelpShown ends an action that printed its help instead of running.
var ErrHelpShown = errors.New("help shown")

// Positional returns c's positional arguments, setting on c any flags found
// among them: urfave/cli stops parsing flags at the first positional
// argument, but 'bb-launch stop SLUG --rm' is how people type. "--" ends
// the flags. A -h or --help among them shows the command's help and returns
// ErrHelpShown.
func Positional(c *ucli.Context) ([]string, error) {
	args := c.Args().Slice()
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(pos, args[i+1:]...), nil
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := lookupFlag(c.Command.Flags, name)
		if f == nil {
			return nil, commandUsage(c, fmt.Errorf("flag provided but not defined: -%s", name))
		}
		if _, isBool := f.(*ucli.BoolFlag); isBool {
			if name == "help" || name == "h" {
				// ucli.ShowCommandHelp looks the command up among the
				// context's own subcommands, finds nothing from inside a
				// leaf command, and says "No help topic": print it directly.
				tmpl := c.Command.CustomHelpTemplate
				if tmpl == "" {
					tmpl = ucli.CommandHelpTemplate
				}
				ucli.HelpPrinter(c.App.Writer, tmpl, c.Command)
				return nil, ErrHelpShown
			}
			if !hasVal {
				val = "true"
			}
		} else if !hasVal {
			if i+1 == len(args) {
				return nil, commandUsage(c, fmt.Errorf("flag needs an argument: -%s", name))
			}
			i++
			val = args[i]
		}
		if err := c.Set(name, val); err != nil {
			return nil, commandUsage(c, fmt.Errorf("invalid value %q for flag -%s: %w", val, name, err))
		}
	}
	return pos, nil
}

// commandUsage marks err as bad usage of c's command, pointing at its help.
func commandUsage(c *ucli.Context, err error) error {
	return Usage(err, "run '"+c.Command.HelpName+" --help' for usage")
}

func lookupFlag(flags []ucli.Flag, name string) ucli.Flag {
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				return f
			}
		}
	}
	return nil
}
