//go:build unix && !linux

package testenv

import (
	"errors"
	"syscall"
	"time"
)

// Outside Linux there is no Pdeathsig: servers are stopped by Main and t.Cleanup only.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Credential: cred}
}

func isZombie(int) bool { return false }

func freezeTree(int) []int { return nil }

func descendants(int) []int { return nil }

func groupAlive(pgid int) bool {
	return !errors.Is(syscall.Kill(-pgid, 0), syscall.ESRCH)
}

func waitGone(pgid int, pids []int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func removeStaleSharedMemory(string) bool { return true }
