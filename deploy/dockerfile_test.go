package deploy_test

import (
	"bufio"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	dfparser "github.com/moby/buildkit/frontend/dockerfile/parser"
)

// There is no container engine where these tests run, so the images cannot
// be built here. Each Dockerfile is parsed with BuildKit's own parser (the
// one `docker build` uses) and its stages are checked for what the image must
// be: a static, reproducible, multi-arch build and a non-root runtime.

// dockerfile is one of the project's images and what its runtime base may be.
type dockerfile struct {
	name string
	// runtime matches the final stage's base image.
	runtime *regexp.Regexp
	// shell says whether the runtime base has a shell (RUN is then allowed,
	// though neither image needs one).
	shell bool
	// user is the USER the final stage must set.
	user string
}

// dockerfiles are the images: distroless (the default) and Red Hat UBI 9
// (for OpenShift; group 0 so that an arbitrary UID in group 0 runs it).
var dockerfiles = []dockerfile{
	{name: "Dockerfile", runtime: regexp.MustCompile(`^gcr\.io/distroless/static(-debian\d+)?:nonroot(@sha256:[0-9a-f]{64})?$`), user: "65532:65532"},
	{name: "Dockerfile.ubi9", runtime: regexp.MustCompile(`^registry\.access\.redhat\.com/ubi9/ubi-minimal(:[0-9.]+)?(@sha256:[0-9a-f]{64})?$`), shell: true, user: "65532:0"},
}

func forEachDockerfile(t *testing.T, check func(t *testing.T, df dockerfile, stages []instructions.Stage)) {
	for _, df := range dockerfiles {
		t.Run(df.name, func(t *testing.T) { check(t, df, parseDockerfile(t, df.name)) })
	}
}

func parseDockerfile(t *testing.T, name string) []instructions.Stage {
	t.Helper()
	f, err := os.Open(repo(name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := dfparser.Parse(f)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	for _, w := range res.Warnings {
		t.Errorf("%s: %s", name, w.Short)
	}
	stages, metaArgs, err := instructions.Parse(res.AST, nil)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if !slices.ContainsFunc(metaArgs, func(a instructions.ArgCommand) bool {
		return slices.ContainsFunc(a.Args, func(kv instructions.KeyValuePairOptional) bool { return kv.Key == "GO_VERSION" })
	}) {
		t.Error("the Go version is a build argument (ARG GO_VERSION) before the first FROM")
	}
	return stages
}

func TestDockerfileBuildStage(t *testing.T) { forEachDockerfile(t, checkBuildStage) }

func checkBuildStage(t *testing.T, _ dockerfile, stages []instructions.Stage) {
	if len(stages) < 2 {
		t.Fatalf("want a multi-stage build (builder and runtime), have %d stage(s)", len(stages))
	}
	build := stages[0]
	if build.Platform != "$BUILDPLATFORM" {
		t.Errorf("the builder should run on the build machine: FROM --platform=$BUILDPLATFORM, have %q", build.Platform)
	}
	if !strings.HasPrefix(build.BaseName, "golang:") {
		t.Errorf("the builder is %s, want a golang image", build.BaseName)
	}
	args := map[string]bool{}
	var buildCmd string
	for _, cmd := range build.Commands {
		switch c := cmd.(type) {
		case *instructions.ArgCommand:
			for _, kv := range c.Args {
				args[kv.Key] = true
			}
		case *instructions.EnvCommand:
			for _, kv := range c.Env {
				if kv.Key == "CGO_ENABLED" && kv.Value != "0" {
					t.Errorf("ENV CGO_ENABLED=%s, want 0", kv.Value)
				}
			}
		case *instructions.RunCommand:
			line := strings.Join(c.CmdLine, " ")
			if strings.Contains(line, "go build") {
				buildCmd = line
			}
		}
	}
	for _, a := range []string{"TARGETOS", "TARGETARCH", "VERSION"} {
		if !args[a] {
			t.Errorf("the builder should declare ARG %s", a)
		}
	}
	if buildCmd == "" {
		t.Fatal("no RUN … go build in the builder")
	}
	for _, want := range []string{"CGO_ENABLED=0", "GOOS=$TARGETOS", "GOARCH=$TARGETARCH", "-trimpath",
		"-X kubernaut.ai/datastorage/internal/version.Version=${VERSION}", "./cmd/datastorage"} {
		if !strings.Contains(buildCmd, want) {
			t.Errorf("the go build command lacks %q:\n%s", want, buildCmd)
		}
	}
	// The version the linker sets must exist.
	src, err := os.ReadFile(repo("internal", "version", "version.go"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^var Version\b`).Match(src) {
		t.Error("internal/version has no `var Version` for -X to set")
	}
}

func TestDockerfileRuntimeStage(t *testing.T) { forEachDockerfile(t, checkRuntimeStage) }

func checkRuntimeStage(t *testing.T, df dockerfile, stages []instructions.Stage) {
	final := stages[len(stages)-1]
	base := final.BaseName
	if !df.runtime.MatchString(base) {
		t.Errorf("the runtime image is %s, want one matching %s", base, df.runtime)
	}
	var user string
	var entrypoint *instructions.EntrypointCommand
	labels := map[string]string{}
	copied := false
	exposed := map[string]bool{}
	for _, cmd := range final.Commands {
		switch c := cmd.(type) {
		case *instructions.UserCommand:
			user = c.User
		case *instructions.EntrypointCommand:
			entrypoint = c
		case *instructions.LabelCommand:
			for _, kv := range c.Labels {
				labels[kv.Key] = kv.Value
			}
		case *instructions.CopyCommand:
			if c.From == stages[0].Name && stages[0].Name != "" {
				copied = true
			}
		case *instructions.ExposeCommand:
			for _, p := range c.Ports {
				exposed[p] = true
			}
		case *instructions.RunCommand:
			if !df.shell {
				t.Errorf("RUN in the runtime stage: a distroless image has no shell (%s)", strings.Join(c.CmdLine, " "))
			}
		}
	}
	uid, _, _ := strings.Cut(user, ":")
	switch {
	case user == "":
		t.Error("the runtime stage sets no USER: the image would run as root")
	case uid == "0" || uid == "root":
		t.Errorf("USER %s is root", user)
	case !regexp.MustCompile(`^[1-9][0-9]*$`).MatchString(uid):
		t.Errorf("USER %s: use a numeric id, so Kubernetes can check runAsNonRoot", user)
	}
	if user != df.user {
		t.Errorf("USER %s, want %s (the manifests run as 65532)", user, df.user)
	}
	if entrypoint == nil || entrypoint.PrependShell {
		t.Error("ENTRYPOINT must be in exec form (no shell in the image)")
	} else if entrypoint.CmdLine[0] != "/usr/local/bin/datastorage" {
		t.Errorf("ENTRYPOINT %v", entrypoint.CmdLine)
	}
	if !copied {
		t.Error("the runtime stage copies nothing from the builder")
	}
	for _, l := range []string{"title", "description", "source", "version", "revision", "licenses"} {
		if labels["org.opencontainers.image."+l] == "" {
			t.Errorf("OCI label org.opencontainers.image.%s missing", l)
		}
	}
	for _, p := range []string{"8080", "9090"} {
		if !exposed[p] {
			t.Errorf("EXPOSE %s missing (server.port and server.metricsPort)", p)
		}
	}
	for _, s := range stages {
		for _, cmd := range s.Commands {
			if u, ok := cmd.(*instructions.UserCommand); ok && (u.User == "root" || strings.HasPrefix(u.User, "0")) && s.Name == final.Name {
				t.Errorf("stage %s switches to root", s.Name)
			}
		}
	}
}

// TestDockerignore checks that the build context leaves out what does not
// belong in it, and keeps what the build needs.
func TestDockerignore(t *testing.T) {
	f, err := os.Open(repo(".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var patterns []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, strings.TrimPrefix(line, "/"))
		}
	}
	ignored := func(p string) bool {
		for _, pat := range patterns {
			pat = strings.TrimPrefix(pat, "**/")
			if ok, _ := path.Match(pat, p); ok {
				return true
			}
			if ok, _ := path.Match(pat, path.Base(p)); ok && strings.Contains(pat, "*") {
				return true
			}
			if strings.HasPrefix(p, pat+"/") {
				return true
			}
		}
		return false
	}
	for _, p := range []string{".git", ".dev", "deploy", "bin"} {
		if !ignored(p) {
			t.Errorf(".dockerignore should leave out %s", p)
		}
	}
	for _, p := range []string{"go.mod", "go.sum", "api/openapi.yaml", "cmd/datastorage/main.go",
		"internal/store/migrations/00001_audit_events.sql", "internal/httpapi/timeline.html.tmpl"} {
		if ignored(p) {
			t.Errorf(".dockerignore leaves out %s, which the build needs", p)
		}
	}
}
