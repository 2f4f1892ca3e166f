package testenv

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		Setpgid:    true,            // own process group: kill(-pid) reaches its children, Ctrl-C does not
		Pdeathsig:  syscall.SIGKILL, // dies with the test binary, even on panic or SIGKILL
		Credential: cred,            // Go applies Pdeathsig after the credential change, so it survives it
	}
}

// procStat returns the state, parent and process group of pid from /proc/<pid>/stat.
func procStat(pid int) (state byte, ppid, pgrp int, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, 0, false
	}
	// "pid (comm) state ppid pgrp ..."; comm may contain spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 3 {
		return 0, 0, 0, false
	}
	ppid, err1 := strconv.Atoi(f[1])
	pgrp, err2 := strconv.Atoi(f[2])
	if err1 != nil || err2 != nil {
		return 0, 0, 0, false
	}
	return f[0][0], ppid, pgrp, true
}

// allProcs calls fn for every process in /proc.
func allProcs(fn func(pid int, state byte, ppid, pgrp int)) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if state, ppid, pgrp, ok := procStat(pid); ok {
			fn(pid, state, ppid, pgrp)
		}
	}
}

// freezeTree stops pid (SIGSTOP, so it cannot fork any more) and returns all its descendants.
// PostgreSQL's backends and auxiliary processes call setsid(), so they are not in the
// postmaster's process group and only the process tree finds them.
func freezeTree(pid int) []int {
	_ = syscall.Kill(pid, syscall.SIGSTOP)
	return descendants(pid)
}

// descendants returns the children of pid, their children, and so on.
func descendants(pid int) []int {
	children := map[int][]int{}
	allProcs(func(p int, _ byte, ppid, _ int) { children[ppid] = append(children[ppid], p) })
	var out []int
	for queue := children[pid]; len(queue) > 0; queue = queue[1:] {
		out = append(out, queue[0])
		queue = append(queue, children[queue[0]]...)
	}
	return out
}

func isZombie(pid int) bool {
	state, _, _, ok := procStat(pid)
	return ok && (state == 'Z' || state == 'X')
}

// waitGone waits until no live (non-zombie) process is left in process group pgid or among
// pids, killing them again while waiting. PostgreSQL's backends keep the shared memory of a
// killed postmaster attached until they are gone, and a restart fails while they are there.
func waitGone(pgid int, pids []int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		alive := false
		allProcs(func(p int, state byte, _, pgrp int) {
			if state == 'Z' || state == 'X' {
				return
			}
			if pgrp == pgid || slices.Contains(pids, p) {
				alive = true
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
		})
		if !alive {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// groupAlive reports whether a live process is left in process group pgid.
func groupAlive(pgid int) bool {
	alive := false
	allProcs(func(_ int, state byte, _, pgrp int) {
		if pgrp == pgid && state != 'Z' && state != 'X' {
			alive = true
		}
	})
	return alive
}

// removeStaleSharedMemory removes the System V shared memory segment of a PostgreSQL cluster
// whose postmaster was killed and will not be started again. PostgreSQL removes it itself on a
// clean shutdown or on its next start; a data directory deleted after a SIGKILL would leak it.
// The segment is removed only if its key and id match postmaster.pid and nothing is attached.
// It reports whether the data directory can go: no segment is left, or the directory is not
// a cluster's (no postmaster.pid). It reports false while the postmaster or one of its
// backends is still alive.
func removeStaleSharedMemory(dataDir string) bool {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return true
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 7 {
		return true // written only partly: the server died before creating its segment
	}
	if pid, err := strconv.Atoi(strings.TrimSpace(lines[0])); err != nil || processAlive(pid) {
		return false
	}
	keyID := strings.Fields(lines[6])
	if len(keyID) != 2 {
		return true
	}
	table, err := os.ReadFile("/proc/sysvipc/shm")
	if err != nil {
		return true
	}
	for _, row := range strings.Split(string(table), "\n")[1:] {
		// key shmid perms size cpid lpid nattch ...
		f := strings.Fields(row)
		if len(f) < 7 || f[0] != keyID[0] || f[1] != keyID[1] {
			continue
		}
		id, err := strconv.Atoi(f[1])
		if err != nil || f[6] != "0" {
			return false // backends of the dead postmaster still attached: try later
		}
		const ipcRMID = 0
		_, _, errno := syscall.Syscall(syscall.SYS_SHMCTL, uintptr(id), ipcRMID, 0)
		return errno == 0
	}
	return true
}
