package deploy_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rhysd/actionlint"
	"sigs.k8s.io/yaml"
)

// The GitHub Actions workflows cannot run here; they are checked the way a
// runner would first read them: actionlint's parser and checks (syntax,
// expressions, action inputs, and the run: scripts through shellcheck when
// it is installed — scripts/deps.sh installs it for `make test`), then the
// few facts the project relies on.

func workflowFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(repo(".github", "workflows", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no workflow in .github/workflows")
	}
	return files
}

func TestWorkflowsPassActionlint(t *testing.T) {
	var out bytes.Buffer
	opts := &actionlint.LinterOptions{Oneline: true}
	if sc, err := exec.LookPath("shellcheck"); err == nil {
		opts.Shellcheck = sc
	} else {
		t.Log("shellcheck is not installed: run: scripts are not checked (scripts/deps.sh installs it)")
	}
	l, err := actionlint.NewLinter(&out, opts)
	if err != nil {
		t.Fatal(err)
	}
	errs, err := l.LintFiles(workflowFiles(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range errs {
		t.Errorf("%s:%d:%d: %s [%s]", e.Filepath, e.Line, e.Column, e.Message, e.Kind)
	}
}

// TestActionlintFindsABrokenWorkflow makes sure the check above can fail: a
// workflow with an undefined expression context and a missing runs-on.
func TestActionlintFindsABrokenWorkflow(t *testing.T) {
	dir := t.TempDir()
	broken := filepath.Join(dir, ".github", "workflows", "broken.yaml")
	if err := os.MkdirAll(filepath.Dir(broken), 0o755); err != nil {
		t.Fatal(err)
	}
	src := "on: push\njobs:\n  x:\n    steps:\n      - run: echo ${{ nosuch.value }}\n"
	if err := os.WriteFile(broken, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := actionlint.NewLinter(&bytes.Buffer{}, &actionlint.LinterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	errs, err := l.LintFiles([]string{broken}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(errs) < 2 {
		t.Errorf("actionlint found %d problems in a broken workflow, want at least 2", len(errs))
	}
}

// workflow is the part of a workflow file these tests read.
type workflow struct {
	On map[string]any `json:"on"`
	// OnAsTrue is the same key as a YAML 1.1 reader sees it: the bare word
	// on is a boolean there, and GitHub's reader is the only one that knows
	// better.
	OnAsTrue map[string]any `json:"true"`
	Jobs     map[string]struct {
		RunsOn   string `json:"runs-on"`
		Strategy struct {
			Matrix struct {
				Image []struct {
					Dockerfile string `json:"dockerfile"`
				} `json:"image"`
			} `json:"matrix"`
		} `json:"strategy"`
		Steps []struct {
			Uses string            `json:"uses"`
			Run  string            `json:"run"`
			With map[string]string `json:"with"`
		} `json:"steps"`
	} `json:"jobs"`
}

func readWorkflow(t *testing.T, name string) workflow {
	t.Helper()
	raw, err := os.ReadFile(repo(".github", "workflows", name))
	if err != nil {
		t.Fatal(err)
	}
	var w workflow
	if err := yaml.Unmarshal(raw, &w); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if w.On == nil {
		w.On = w.OnAsTrue
	}
	for _, ev := range []string{"push", "pull_request"} {
		if _, ok := w.On[ev]; !ok {
			t.Errorf("%s does not run on %s", name, ev)
		}
	}
	return w
}

func TestCIWorkflowRunsTheProjectsOwnEntryPointAndVet(t *testing.T) {
	w := readWorkflow(t, "ci.yaml")
	var runs []string
	for name, j := range w.Jobs {
		if !strings.HasPrefix(j.RunsOn, "ubuntu-") {
			t.Errorf("job %s runs on %q, want an Ubuntu runner", name, j.RunsOn)
		}
		for _, s := range j.Steps {
			runs = append(runs, strings.TrimSpace(s.Run))
		}
	}
	for _, want := range []string{"bash .ci/run", "make vet"} {
		if !slices.Contains(runs, want) {
			t.Errorf("ci.yaml has no step that runs %q", want)
		}
	}
}

func TestImagesWorkflowBuildsBothImagesForBothArchitecturesAndPushesOnlyTags(t *testing.T) {
	w := readWorkflow(t, "images.yaml")
	j, ok := w.Jobs["build"]
	if !ok {
		t.Fatal("images.yaml has no build job")
	}
	var files []string
	for _, im := range j.Strategy.Matrix.Image {
		files = append(files, im.Dockerfile)
	}
	for _, df := range dockerfiles {
		if !slices.Contains(files, df.name) {
			t.Errorf("images.yaml does not build %s", df.name)
		}
	}
	built := false
	for _, s := range j.Steps {
		if !strings.HasPrefix(s.Uses, "docker/build-push-action@") {
			continue
		}
		built = true
		if s.With["platforms"] != "linux/amd64,linux/arm64" {
			t.Errorf("platforms %q, want linux/amd64,linux/arm64", s.With["platforms"])
		}
		if s.With["push"] != "${{ startsWith(github.ref, 'refs/tags/v') }}" {
			t.Errorf("push %q: images are pushed for version tags only", s.With["push"])
		}
		if s.With["file"] != "${{ matrix.image.dockerfile }}" {
			t.Errorf("file %q does not follow the matrix", s.With["file"])
		}
	}
	if !built {
		t.Error("images.yaml never runs docker/build-push-action")
	}
}
