package harness

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// childAttr puts the server in its own process group and has the kernel kill
// it if dsbench dies, so a crashed benchmark leaves nothing running.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// clockTicks is USER_HZ, the unit of the CPU times in /proc/<pid>/stat; it
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

// statFields returns the fields of /proc/<pid>/stat after the command name
// (which may itself hold spaces and parentheses): state is [0], ppid [1],
// utime [11], stime [12], cutime [13], cstime [14]. Nil if pid is gone.
func statFields(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

// ticks sums the fields at the given indices, in seconds.
func ticks(f []string, idx ...int) float64 {
	var total float64
	for _, i := range idx {
		if i >= len(f) {
			return 0
		}
		v, _ := strconv.ParseFloat(f[i], 64)
		total += v
	}
	return total / clockTicks
}

// ProcCPU returns the user+system CPU seconds pid has used.
func ProcCPU(pid int) float64 { return ticks(statFields(pid), 11, 12) }

// TreeCPU returns the CPU seconds of pid and its direct children (the
// postmaster and its backends), plus what already-exited children left in
// the parent's cutime/cstime.
func TreeCPU(pid int) float64 {
	total := ProcCPU(pid) + childrenDone(pid)
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return total
	}
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil || child == pid {
			continue
		}
		if parentOf(child) == pid {
			total += ProcCPU(child)
		}
	}
	return total
}

func parentOf(pid int) int {
	f := statFields(pid)
	if len(f) < 2 {
		return 0
	}
	p, _ := strconv.Atoi(f[1])
	return p
}

func childrenDone(pid int) float64 { return ticks(statFields(pid), 13, 14) }

// SelfCPU returns the CPU seconds this process has used.
func SelfCPU() float64 { return ProcCPU(os.Getpid()) }

// PeakRSS returns VmHWM of pid in bytes.
func PeakRSS(pid int) int64 { return statusKB(pid, "VmHWM:") * 1024 }

func statusKB(pid int, key string) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// ResetPeakRSS restarts VmHWM at the current RSS (clear_refs 5), so each
// scenario reports its own peak.
func ResetPeakRSS(pid int) {
	_ = os.WriteFile("/proc/"+strconv.Itoa(pid)+"/clear_refs", []byte("5"), 0)
}

// MachineCPU returns the busy and steal CPU seconds of the whole machine
// since boot, from the first line of /proc/stat.
func MachineCPU() (busy, steal float64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	// cpu user nice system idle iowait irq softirq steal guest guest_nice
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0
	}
	v := make([]float64, len(f))
	for i := 1; i < len(f); i++ {
		v[i], _ = strconv.ParseFloat(f[i], 64)
	}
	busy = v[1] + v[2] + v[3] + v[6] + v[7]
	return busy / clockTicks, v[8] / clockTicks
}

// ContextSwitches returns the voluntary and involuntary context switches of
// all of pid's threads so far (/proc/<pid>/task/*/status). A voluntary one
// is a thread that blocked (for the network, a futex: a goroutine hand-off
// that parked the thread), so per event it counts the wake-ups a request
// costs. Threads that exited are not counted; Go keeps its threads.
func ContextSwitches(pid int) (voluntary, involuntary int64) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0
	}
	for _, e := range entries {
		b, err := os.ReadFile(dir + "/" + e.Name() + "/status")
		if err != nil {
			continue // the thread exited meanwhile
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
				n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				voluntary += n
			} else if v, ok := strings.CutPrefix(line, "nonvoluntary_ctxt_switches:"); ok {
				n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				involuntary += n
			}
		}
	}
	return voluntary, involuntary
}
