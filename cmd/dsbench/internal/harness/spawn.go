package harness

import (
	"os/exec"
	"runtime"
	"sync"
)

// Linux sends Pdeathsig when the thread that forked the child exits, not the
// process, so the server is started from one OS thread that lives as long as
// dsbench.
var (
	spawnOnce sync.Once
	spawnCh   chan func()
)

func startOnSpawnerThread(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnCh = make(chan func())
		go func() {
			runtime.LockOSThread() // never unlocked: the thread ends with the process
			for f := range spawnCh {
				f()
			}
		}()
	})
	var err error
	done := make(chan struct{})
	spawnCh <- func() { err = cmd.Start(); close(done) }
	<-done
	return err
}
