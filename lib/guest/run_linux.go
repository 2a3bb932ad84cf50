package guest

import (
	"errors"
	"fmt"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// Run becomes argv with no new privileges: a setuid program or a file's
// capabilities give the command nothing (bb-launch exec runs its commands
// through it).
func Run(argv, env []string) error {
	if len(argv) == 0 {
		return errors.New("no command: want bb-egress guest run -- CMD [ARG...]")
	}
	if _, _, e := syscall.AllThreadsSyscall(syscall.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); e != 0 {
		return fmt.Errorf("setting no new privileges: %w", e)
	}
	bin, err := exec.LookPath(argv[0])
	if err != nil {
		return err
	}
	return syscall.Exec(bin, argv, env)
}
