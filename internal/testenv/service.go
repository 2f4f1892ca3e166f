package testenv

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// FreePort returns a free loopback port in [15000, 32000), below Linux's
// ephemeral range, that no other caller in this process is handed until the
// process ends. Tests use it for the ports of the datastorage binary they run.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := pickPort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// servicePackage is the import path of the service's binary.
const servicePackage = "kubernaut.ai/datastorage/cmd/datastorage"

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// ServiceBinary builds cmd/datastorage once per test binary and returns its
// path; the black-box tests (test/e2e, test/fault, the SDK's restart test)
// run it as a child process. The file lives in a temporary directory that
// Main removes.
func ServiceBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		// Named like the server directories, so a crashed test binary's
		// build is swept away by the next one.
		dir, err := makeServerDir("bin", false)
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "datastorage")
		out, err := exec.Command("go", "build", "-o", buildPath, servicePackage).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("testenv: go build %s: %v\n%s", servicePackage, err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// StartChild starts cmd (typically the ServiceBinary) so that it dies with
// the test binary: Pdeathsig is set, and the fork happens on the package's
// one long-lived thread, because Linux sends Pdeathsig when the forking
// thread exits, not the process (go.dev/issue/27505). The child gets its own
// process group, so a terminal's Ctrl-C reaches only the test binary.
// Stdout, Stderr and Env are the caller's to set before.
func StartChild(cmd *exec.Cmd) error {
	cmd.SysProcAttr = sysProcAttr(nil)
	var err error
	onSpawnerThread(func() { err = cmd.Start() })
	return err
}
