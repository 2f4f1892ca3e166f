package testenv

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// VersityGWVersion is the release of github.com/versity/versitygw (Apache-2.0) that [StartS3]
// builds from the Go module proxy and runs.
const VersityGWVersion = "v1.8.0"

// versityGWPackage is the command built by [versityGWBinary].
const versityGWPackage = "github.com/versity/versitygw/cmd/versitygw"

// EnvVersityGW names an existing versitygw binary to use instead of building one.
const EnvVersityGW = "DATASTORAGE_TEST_VERSITYGW"

// versityGWBuildTimeout bounds the one build per machine; on a loaded two-core machine it
// takes several minutes.
const versityGWBuildTimeout = 12 * time.Minute

// S3 is a private S3-compatible server owned by one test process: versitygw serving its own
// directory over HTTP on 127.0.0.1, with one account and one bucket created at start. The
// fields are read-only. All methods are safe for concurrent use.
type S3 struct {
	Endpoint  string // http://127.0.0.1:port
	Port      int
	Region    string // us-east-1
	AccessKey string
	SecretKey string
	Bucket    string // created by StartS3
	Dir       string // objects below Dir/data, metadata below Dir/meta, and LogFile
	LogFile   string

	bin  string
	args []string

	mu     sync.Mutex
	proc   *process
	closed bool
}

// StartS3 starts versitygw (built on first use, see [versityGWBinary]) in a fresh temporary
// directory, waits until it answers HTTP and creates the bucket. The caller must Close it.
// Tests usually want [NewS3].
func StartS3() (*S3, error) {
	bin, err := versityGWBinary()
	if err != nil {
		return nil, err
	}
	dir, err := makeServerDir("s3", false)
	if err != nil {
		return nil, fmt.Errorf("testenv: s3 dir: %w", err)
	}
	s := &S3{
		Region: "us-east-1", AccessKey: "testenv-" + randomHex(4), SecretKey: randomHex(16), Bucket: "datastorage-test",
		Dir: dir, LogFile: filepath.Join(dir, "versitygw.log"), bin: bin,
	}
	data, meta := filepath.Join(dir, "data"), filepath.Join(dir, "meta")
	for _, d := range []string{data, meta} {
		if err := os.Mkdir(d, 0o700); err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("testenv: s3 dir: %w", err)
		}
	}
	// A sidecar directory for metadata, so the server does not depend on the temporary file
	// system's support for extended attributes.
	s.args = []string{"posix", "--sidecar", meta, data}
	if s.Port, err = pickPort(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fail := func(err error) (*S3, error) {
		if s.proc != nil {
			s.proc.kill()
		}
		releasePort(s.Port)
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if err := s.startLocked(true); err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if _, err := s.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(s.Bucket)}); err != nil {
		return fail(withLogTail(fmt.Errorf("testenv: s3: creating bucket %s: %w", s.Bucket, err), s.LogFile))
	}
	return s, nil
}

// NewS3 starts a private S3 server for this test alone and closes it in t.Cleanup. It needs
// no [Main]. Under go test -short the test is skipped.
func NewS3(t testing.TB) *S3 {
	t.Helper()
	skipIfShort(t, "an S3 server")
	s, err := StartS3()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// Client returns an S3 client of the server's account, for tests that look at the bucket
// behind the code under test.
func (s *S3) Client() *s3.Client {
	return s3.New(s3.Options{
		BaseEndpoint: aws.String(s.Endpoint),
		Region:       s.Region,
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
	})
}

// Running reports whether the server process is up.
func (s *S3) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil && !s.proc.exited()
}

// Start starts a stopped or killed server again on the same port and directory (the objects
// are still there) and waits until it answers. It does nothing if the server is running.
func (s *S3) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("testenv: s3: Start after Close")
	}
	if s.proc != nil && !s.proc.exited() {
		return nil
	}
	s.proc = nil
	return s.startLocked(false)
}

// Stop shuts the server down (SIGTERM) and waits for it. It returns an error if the server
// had already died on its own.
func (s *S3) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked()
}

func (s *S3) stopLocked() error {
	proc := s.proc
	if proc == nil {
		return nil
	}
	s.proc = nil
	if proc.exited() {
		proc.stop(syscall.SIGKILL, 0)
		return withLogTail(fmt.Errorf("testenv: s3 on port %d had exited by itself: %v", s.Port, proc.err), s.LogFile)
	}
	proc.stop(syscall.SIGTERM, stopTimeout)
	return nil
}

// Kill sends SIGKILL to the server, as a crash would, and waits until it is gone.
func (s *S3) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		s.proc.kill()
		s.proc = nil
	}
	return nil
}

// Close stops the server and removes its directory. Closing twice is harmless.
func (s *S3) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	err := s.stopLocked()
	releasePort(s.Port)
	if rmErr := os.RemoveAll(s.Dir); rmErr != nil && err == nil {
		err = rmErr
	}
	return err
}

// LogTail returns the last n lines of the server log, for failure messages in tests.
func (s *S3) LogTail(n int) string { return logTail(s.LogFile, n) }

func (s *S3) startLocked(first bool) error {
	deadline := time.Now().Add(startTimeout)
	for {
		s.Endpoint = "http://" + "127.0.0.1:" + strconv.Itoa(s.Port)
		offset := logSize(s.LogFile)
		env := append(os.Environ(), "ROOT_ACCESS_KEY_ID="+s.AccessKey, "ROOT_SECRET_ACCESS_KEY="+s.SecretKey)
		args := append([]string{"--port", "127.0.0.1:" + strconv.Itoa(s.Port), "--region", s.Region}, s.args...)
		proc, err := startProcess(command(s.bin, args, s.Dir, env, nil), s.LogFile)
		if err != nil {
			return fmt.Errorf("testenv: s3: %w", err)
		}
		err = waitHTTPReady(proc, s.Endpoint, deadline)
		if err == nil {
			s.proc = proc
			return nil
		}
		proc.kill()
		retryable := strings.Contains(readLogFrom(s.LogFile, offset), "address already in use")
		if !retryable || time.Now().After(deadline) {
			return withLogTail(fmt.Errorf("testenv: versitygw did not start on port %d: %w", s.Port, err), s.LogFile)
		}
		if first {
			releasePort(s.Port)
			if s.Port, err = pickPort(); err != nil {
				return err
			}
		} else {
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// waitHTTPReady sends GET / until the server answers anything over HTTP (versitygw answers
// an anonymous request with 403), the process dies or the deadline passes.
func waitHTTPReady(proc *process, endpoint string, deadline time.Time) error {
	client := &http.Client{Timeout: 2 * time.Second}
	var lastErr error
	for {
		if proc.exited() {
			return fmt.Errorf("server exited: %v", proc.err)
		}
		resp, err := client.Get(endpoint + "/")
		if err == nil {
			_ = resp.Body.Close()
			return nil
		}
		lastErr = err
		if time.Now().After(deadline) {
			return fmt.Errorf("no HTTP answer after %s: %w", startTimeout, lastErr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var (
	versityGWOnce sync.Once
	versityGWPath string
	versityGWErr  error
)

// versityGWBinary returns the path of a versitygw binary: $DATASTORAGE_TEST_VERSITYGW if set,
// else one built once per machine into the user cache directory, keyed by version, with `go
// install pkg@version` run outside this module, so go.mod never sees versitygw's dependencies.
// A file lock makes parallel test binaries wait for one build instead of racing.
func versityGWBinary() (string, error) {
	versityGWOnce.Do(func() { versityGWPath, versityGWErr = buildVersityGW(VersityGWVersion) })
	return versityGWPath, versityGWErr
}

// buildVersityGW returns the binary of version, building it if needed.
func buildVersityGW(version string) (string, error) {
	if p := os.Getenv(EnvVersityGW); p != "" {
		if !isExecutable(p) {
			return "", fmt.Errorf("testenv: %s=%s is not an executable file", EnvVersityGW, p)
		}
		return p, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("testenv: versitygw: no user cache directory to build it into: %w", err)
	}
	dir := filepath.Join(cache, "kubernaut-datastorage", "testenv", "versitygw-"+version)
	bin := filepath.Join(dir, "versitygw")
	if isExecutable(bin) {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("testenv: versitygw: %w", err)
	}
	unlock, err := lockFile(filepath.Join(dir, ".lock"))
	if err != nil {
		return "", fmt.Errorf("testenv: versitygw: %w", err)
	}
	defer unlock()
	if isExecutable(bin) { // built by another test binary while we waited for the lock
		return bin, nil
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("testenv: versitygw is built with the go command, which is not on PATH (or set %s): %w", EnvVersityGW, err)
	}
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", fmt.Errorf("testenv: versitygw: %w", err)
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), versityGWBuildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool, "install", versityGWPackage+"@"+version)
	// Run from the empty build directory with GOWORK off and the caller's GOFLAGS dropped, so
	// neither this module nor flags meant for the tests (-race) reach the build.
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOWORK=off", "GOFLAGS=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("testenv: building versitygw %s (go install %s@%s, needs the Go module proxy) failed: %w\n%s",
			version, versityGWPackage, version, err, tail(string(out), 30))
	}
	if err := os.Rename(filepath.Join(tmp, "versitygw"), bin); err != nil {
		return "", fmt.Errorf("testenv: versitygw: %w", err)
	}
	return bin, nil
}

// lockFile takes an exclusive flock on path, waiting for other processes that hold it.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		_ = f.Close()
	}, nil
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
