package edge_test

import (
	"os/exec"
	"syscall"
)

// dieWithTest makes the kernel kill a process the test started if the test process dies
// without stopping it (a crashed or killed run), so no node or workerd outlives it.
func dieWithTest(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
