package archive_test

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/archive"
	"kubernaut.ai/datastorage/internal/integrity"
	"kubernaut.ai/datastorage/internal/testenv"
)

// TestCrashAtEachStep kills `datastorage archive run` (SIGKILL, from the
// process itself at the hook) after each step, checks that the month is
// still in PostgreSQL or in a verified, recorded archive, then runs it
// again: the month ends archived once, complete, with no stray files.
func TestCrashAtEachStep(t *testing.T) {
	bin := testenv.ServiceBinary(t)
	for _, step := range []string{archive.StepWatched, archive.StepSorted, archive.StepWritten, archive.StepVerified, archive.StepRecorded, archive.StepDropped} {
		t.Run(step, func(t *testing.T) {
			e := newEnv(t)
			e.fill(30, 8)
			ctx := context.Background()
			root := t.TempDir()
			objs := fileTarget(t, root)
			a := e.archiver(objs)
			cmdEnv := e.cliEnv(t, root)
			want := e.monthEvents()

			cmd := exec.Command(bin, "archive", "run", "--month", archive.MonthString(e.month))
			cmd.Env = append(cmdEnv, "TEST_DATASTORAGE_ARCHIVE_KILL_AFTER="+step)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			require.True(t, errors.As(err, &exit), "the run must be killed, got %v\n%s", err, out)
			ws, ok := exit.Sys().(syscall.WaitStatus)
			require.True(t, ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL, "killed by SIGKILL: %v\n%s", err, out)

			// Never neither: the partition, or a verified archive.
			rec := e.record(e.month)
			if !e.partitionExists(e.month) {
				require.Equal(t, archive.StatusDropped, rec.Status, "partition gone without a record")
				_, err := a.Verify(ctx, e.month)
				require.NoError(t, err)
			}
			switch step {
			case archive.StepWatched, archive.StepSorted, archive.StepWritten, archive.StepVerified:
				assert.True(t, e.partitionExists(e.month))
				assert.Empty(t, rec.Status)
			case archive.StepRecorded:
				assert.True(t, e.partitionExists(e.month))
				assert.Equal(t, archive.StatusVerified, rec.Status)
			case archive.StepDropped:
				assert.False(t, e.partitionExists(e.month))
			}

			// The rerun finishes the month, once.
			cmd = exec.Command(bin, "archive", "run", "--month", archive.MonthString(e.month))
			if step == archive.StepDropped {
				cmd = exec.Command(bin, "archive", "run")
			}
			cmd.Env = cmdEnv
			out, err = cmd.CombinedOutput()
			require.NoError(t, err, "%s", out)
			assert.False(t, e.partitionExists(e.month))
			rec = e.record(e.month)
			assert.Equal(t, archive.StatusDropped, rec.Status)
			recs, err := e.st.ArchiveRecords(ctx)
			require.NoError(t, err)
			n := 0
			for _, r := range recs {
				if r.Month.Equal(e.month) {
					n++
				}
			}
			assert.Equal(t, 1, n, "one record per month")

			m, err := a.Verify(ctx, e.month)
			require.NoError(t, err)
			var got []string
			for _, f := range m.Files {
				obj, err := objs.Open(ctx, f.Key)
				require.NoError(t, err)
				_, err = archive.EachRow(obj, obj.Size(), func(r *archive.Row) error {
					ev, err := r.Event()
					got = append(got, ev.ID.String())
					return err
				})
				obj.Close()
				require.NoError(t, err)
			}
			slices.Sort(got)
			assert.Equal(t, want, got, "every event archived exactly once")
			list, err := objs.List(ctx, archive.MonthPrefix(e.month))
			require.NoError(t, err)
			assert.Len(t, list, len(m.Files)+1, "the files of the manifest and the manifest, nothing else")
			if step == archive.StepDropped {
				cliChecks(t, bin, cmdEnv, root, e.month)
			}
		})
	}
}

// monthEvents are the ids of the env's month's events, sorted.
func (e *env) monthEvents() []string {
	var ids []string
	for _, ev := range e.events {
		if archive.MonthString(ev.Date.Std()) == archive.MonthString(e.month) {
			ids = append(ids, ev.ID.String())
		}
	}
	slices.Sort(ids)
	return ids
}

// testSeed is the signing key of the CLI runs (and of env's signer).
var testSeed = []byte("0123456789abcdef0123456789abcdef")

func testSigner() *integrity.Signer { return integrity.NewSigner(ed25519.NewKeyFromSeed(testSeed)) }

// cliEnv is the environment of a `datastorage archive` child on env's
// database, with root as its file target.
func (e *env) cliEnv(t *testing.T, root string) []string {
	dir := t.TempDir()
	key := filepath.Join(dir, "signing.key")
	require.NoError(t, os.WriteFile(key, []byte(hex.EncodeToString(testSeed)), 0o600))
	hmacKey := filepath.Join(dir, "hmac.key")
	require.NoError(t, os.WriteFile(hmacKey, []byte(testHMACKey+"\n"), 0o600))
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"DATASTORAGE_DATABASE_URL=" + e.url,
		"DATASTORAGE_ARCHIVE_TARGET=file://" + root,
		"DATASTORAGE_INTEGRITY_SIGNING_KEY_FILE=" + key,
		"DATASTORAGE_INTEGRITY_HMAC_KEY_FILE=" + hmacKey,
		"DATASTORAGE_LOGGING_LEVEL=warn",
		"TMPDIR=" + t.TempDir(),
	}
}

// cliChecks runs the other archive commands on an archived month: list,
// verify (with the config), verify-archive (offline, public key only, and
// failing on a changed file), restore.
func cliChecks(t *testing.T, bin string, env []string, root string, month time.Time) {
	run := func(args ...string) (string, error) {
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	ms := archive.MonthString(month)
	out, err := run("archive", "list")
	require.NoError(t, err, out)
	assert.Regexp(t, ms+`\s+dropped\s+\d+`, out)
	out, err = run("archive", "verify", "--month", ms)
	require.NoError(t, err, out)
	assert.Contains(t, out, "OK")
	pub := testSigner().PublicKeyString()
	hmacArg := "--hmac-key-file=" + filepath.Join(t.TempDir(), "hmac")
	require.NoError(t, os.WriteFile(strings.TrimPrefix(hmacArg, "--hmac-key-file="), []byte(testHMACKey), 0o600))
	out, err = run("verify-archive", "--target", "file://"+root, "--month", ms, "--public-key", pub, hmacArg)
	require.NoError(t, err, out)
	assert.Contains(t, out, "signature valid: OK")
	// Offline, with another key: refused.
	other, err := integrity.GenerateSigner()
	require.NoError(t, err)
	out, err = run("verify-archive", "--target", "file://"+root, "--month", ms, "--public-key", other.PublicKeyString(), hmacArg)
	require.Error(t, err)
	assert.Contains(t, out, "FAILED")
	out, err = run("archive", "restore", "--month", ms)
	require.NoError(t, err, out)
	assert.Contains(t, out, "restored")
	out, err = run("archive", "list")
	require.NoError(t, err, out)
	assert.Regexp(t, ms+`\s+restored`, out)
}
