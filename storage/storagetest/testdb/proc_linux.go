package testdb

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal makes the kernel kill a server this process started if this process dies
// without stopping it (a crashed or killed test run).
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
