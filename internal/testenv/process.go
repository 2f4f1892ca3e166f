package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Ports are chosen in [portMin, portMax): below Linux's ephemeral range (32768–60999), so an
// outgoing connection never holds the port a server is about to listen on.
const (
	portMin = 15000
	portMax = 32000
)

// dirPrefix names every temporary directory this package creates; the owner's pid follows it,
// so a later process can remove directories left behind by a test binary that crashed.
const dirPrefix = "datastorage-testenv-"

// portsHeld are the ports handed to servers of this process and not yet released; parallel
// starts in one process never pick the same port even before either server has bound it.
var (
	portsMu   sync.Mutex
	portsHeld = map[int]bool{}
)

// pickPort returns a free loopback port in [portMin, portMax), reserved until releasePort.
// Another process may still take it before our server binds it; callers retry on bind errors.
func pickPort() (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 500 {
		port := portMin + rand.IntN(portMax-portMin)
		if portsHeld[port] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		_ = l.Close()
		portsHeld[port] = true
		return port, nil
	}
	return 0, errors.New("testenv: no free port found in [15000, 32000)")
}

// holdPort marks a caller-chosen port as used by this process.
func holdPort(port int) {
	portsMu.Lock()
	portsHeld[port] = true
	portsMu.Unlock()
}

func releasePort(port int) {
	portsMu.Lock()
	delete(portsHeld, port)
	portsMu.Unlock()
}

// spawner runs every fork of this package on one OS thread that never exits. Linux delivers
// Pdeathsig when the thread that forked the child dies, not the process (go.dev/issue/27505),
// so forking from a thread the runtime could retire would kill servers early; this thread
// lives exactly as long as the test binary.
var (
	spawnOnce sync.Once
	spawnCh   chan func()
)

func onSpawnerThread(f func()) {
	spawnOnce.Do(func() {
		spawnCh = make(chan func())
		go func() {
			runtime.LockOSThread() // never unlocked: the thread dies with the process
			for f := range spawnCh {
				f()
			}
		}()
	})
	done := make(chan struct{})
	spawnCh <- func() { f(); close(done) }
	<-done
}

// process is one running server (or initdb) started by this package.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited and been reaped
	err  error         // exit status, valid after done is closed
}

// command prepares cmd so that the child runs in its own process group (so killing the group
// reaches every process it forks, and a terminal's Ctrl-C does not), dies with the test binary
// (Pdeathsig on Linux), and optionally runs as another user.
func command(name string, args []string, dir string, env []string, cred *syscall.Credential) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.SysProcAttr = sysProcAttr(cred)
	return cmd
}

// startProcess starts cmd with stdout and stderr appended to logPath.
func startProcess(cmd *exec.Cmd, logPath string) (*process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child holds its own copy
	cmd.Stdout, cmd.Stderr = logf, logf
	onSpawnerThread(func() { err = cmd.Start() })
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// runToCompletion runs a short-lived command (initdb) with the same process attributes and
// returns its combined output.
func runToCompletion(cmd *exec.Cmd) ([]byte, error) {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	var err error
	onSpawnerThread(func() { err = cmd.Start() })
	if err != nil {
		return nil, err
	}
	err = cmd.Wait()
	return out.Bytes(), err
}

func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait reports whether the process exited within d.
func (p *process) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.done:
		return true
	case <-t.C:
		return false
	}
}

func (p *process) signal(sig syscall.Signal) {
	_ = syscall.Kill(p.pid(), sig)
}

// kill sends SIGKILL to the process, its process group and all its descendants, as a crash
// would, and waits until every one of them is gone.
func (p *process) kill() {
	tree := freezeTree(p.pid())
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	_ = syscall.Kill(p.pid(), syscall.SIGKILL)
	for _, pid := range tree {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	<-p.done
	waitGone(p.pid(), tree, 10*time.Second)
}

// stop sends sig to the main process, waits up to grace for it to exit, then kills everything.
// Either way it returns once no process of the server is left.
func (p *process) stop(sig syscall.Signal, grace time.Duration) {
	if !p.exited() {
		p.signal(sig)
		if !p.wait(grace) {
			p.kill()
			return
		}
	}
	// The main process is gone; anything it left in its group goes too.
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	waitGone(p.pid(), nil, 10*time.Second)
}

// logSize returns the current size of a log file (0 if it does not exist), so a later read can
// look only at what one start attempt wrote.
func logSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// readLogFrom returns the log's content from offset on (at most the last 64 KiB of it).
func readLogFrom(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	size := logSize(path)
	if size-offset > 64<<10 {
		offset = size - 64<<10
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// logTail returns the last n lines of a log file, for error messages.
func logTail(path string, n int) string {
	s := readLogFrom(path, max(0, logSize(path)-16<<10))
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// withLogTail appends the tail of a server log to err.
func withLogTail(err error, path string) error {
	tail := logTail(path, 30)
	if tail == "" {
		return fmt.Errorf("%w (log %s is empty)", err, path)
	}
	return fmt.Errorf("%w\n--- last lines of %s ---\n%s\n---", err, path, tail)
}

// tempBase returns the directory under which server directories are created. When the server
// runs as another user (PostgreSQL when we are root), every ancestor must be searchable by it;
// and PostgreSQL's Unix socket path must stay short. /tmp satisfies both when TMPDIR does not.
func tempBase(forOtherUser bool) string {
	base := os.TempDir()
	if len(base) > 60 || (forOtherUser && !searchableByOthers(base)) {
		return "/tmp"
	}
	return base
}

func searchableByOthers(dir string) bool {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	for {
		fi, err := os.Stat(dir)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return true
		}
		dir = parent
	}
}

// makeServerDir creates a fresh directory for one server, named after this process so that
// sweepStale can recognise it once this process is gone.
func makeServerDir(kind string, forOtherUser bool) (string, error) {
	base := tempBase(forOtherUser)
	sweepOnce.Do(func() { sweepStale(base) })
	return os.MkdirTemp(base, fmt.Sprintf("%s%s-%d-", dirPrefix, kind, os.Getpid()))
}

var sweepOnce sync.Once

// sweepStale removes server directories whose owning test binary no longer runs (it crashed
// or was killed before it could clean up; its servers died with it through Pdeathsig).
func sweepStale(base string) {
	entries, err := os.ReadDir(base)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || !strings.HasPrefix(name, dirPrefix) {
			continue
		}
		// datastorage-testenv-<kind>-<pid>-<random>
		parts := strings.Split(strings.TrimPrefix(name, dirPrefix), "-")
		if len(parts) != 3 {
			continue
		}
		pid, err := strconv.Atoi(parts[1])
		if err != nil || pid == os.Getpid() || processAlive(pid) {
			continue
		}
		dir := filepath.Join(base, name)
		if parts[0] == "pg" && !removeStaleSharedMemory(dir) {
			continue // its processes are still going down; a later sweep takes it
		}
		_ = os.RemoveAll(dir)
	}
}

// processAlive reports whether pid exists and is not a zombie.
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	return !isZombie(pid)
}
