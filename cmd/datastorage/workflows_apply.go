package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"gopkg.in/yaml.v3"

	"kubernaut.ai/datastorage/client"
)

// applyOutcome is what apply did with one file.
type applyOutcome struct {
	File         string            `json:"file"`
	WorkflowName string            `json:"workflow_name,omitempty"`
	Version      string            `json:"version,omitempty"`
	WorkflowID   string            `json:"workflow_id,omitempty"`
	Outcome      string            `json:"outcome"` // created, unchanged, conflict, error
	Detail       string            `json:"detail,omitempty"`
	FieldErrors  map[string]string `json:"field_errors,omitempty"`
}

// The outcomes of one file.
const (
	applyCreated   = "created"
	applyUnchanged = "unchanged"
	applyConflict  = "conflict"
	applyError     = "error"
)

func cmdWorkflowsApply(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	f := newWorkflowFlags("apply", environ, stderr, "apply -f FILE|DIR [flags]")
	var paths multiString
	f.fs.Var(&paths, "f", "a workflow file (.yaml, .yml, .json) or a directory of them, read recursively (repeatable)")
	if _, err := f.parse(args, 0); err != nil {
		return err
	}
	if len(paths) == 0 {
		f.fs.Usage()
		return errUsage
	}
	files, err := workflowFiles(paths)
	if err != nil {
		return err
	}
	c, err := f.client()
	if err != nil {
		return err
	}
	results := make([]applyOutcome, 0, len(files))
	for _, file := range files {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		results = append(results, applyFile(ctx, c, file))
	}
	counts := map[string]int{}
	for _, r := range results {
		counts[r.Outcome]++
	}
	if *f.output == "json" {
		if err := writeJSONOut(stdout, map[string]any{"results": results, "summary": counts}); err != nil {
			return err
		}
	} else if err := applyTable(stdout, results, counts); err != nil {
		return err
	}
	if n := counts[applyConflict] + counts[applyError]; n > 0 {
		return fmt.Errorf("apply: %d conflict(s), %d error(s)", counts[applyConflict], counts[applyError])
	}
	return nil
}

func applyTable(w io.Writer, results []applyOutcome, counts map[string]int) error {
	col := newColorizer(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, r := range results {
		outcome := r.Outcome
		switch outcome {
		case applyCreated:
			outcome = col.paint("32", outcome)
		case applyConflict, applyError:
			outcome = col.red(outcome)
		}
		name := r.WorkflowName
		if r.Version != "" {
			name += "@" + r.Version
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", outcome, name, r.File)
		if r.Detail != "" {
			fmt.Fprintf(tw, "\t  %s\t\n", r.Detail)
		}
		for _, k := range sortedMapKeys(r.FieldErrors) {
			fmt.Fprintf(tw, "\t  %s: %s\t\n", k, r.FieldErrors[k])
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\n%d file(s): %d created, %d unchanged, %d conflict(s), %d error(s)\n", len(results),
		counts[applyCreated], counts[applyUnchanged], counts[applyConflict], counts[applyError])
	return nil
}

// applyFile registers one file. The file's own JSON is what is sent, so the
// server judges every value as written; the local decode only refuses keys
// the server would silently ignore (a typo such as custom_label) and reads
// the name and version for the report.
func applyFile(ctx context.Context, c *client.Client, file string) applyOutcome {
	out := applyOutcome{File: file, Outcome: applyError}
	raw, spec, err := readWorkflowFile(file)
	out.WorkflowName, out.Version = spec.WorkflowName, spec.Version
	if err != nil {
		out.Detail = err.Error()
		return out
	}
	res, err := c.RegisterWorkflowJSON(ctx, raw)
	var p *client.Problem
	switch {
	case err == nil:
		out.WorkflowID = res.Workflow.WorkflowID.String()
		out.Outcome = applyUnchanged
		if res.Created {
			out.Outcome = applyCreated
		}
	case errors.As(err, &p) && p.Status == 409:
		out.Outcome = applyConflict
		out.WorkflowID = client.WorkflowID(spec.WorkflowName, spec.Version).String()
		out.Detail = p.Detail
	case errors.As(err, &p):
		out.Detail = fmt.Sprintf("%d %s", p.Status, p.Title)
		if p.Detail != "" {
			out.Detail += ": " + p.Detail
		}
		out.FieldErrors = p.FieldErrors
	default:
		out.Detail = err.Error()
	}
	return out
}

// readWorkflowFile reads one workflow file (YAML or JSON, one document)
// and returns it as JSON, with the spec decoded from it.
func readWorkflowFile(file string) (json.RawMessage, client.WorkflowSpec, error) {
	var spec client.WorkflowSpec
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, spec, err
	}
	var doc any
	if strings.EqualFold(filepath.Ext(file), ".json") {
		if err := json.Unmarshal(b, &doc); err != nil {
			return nil, spec, fmt.Errorf("not valid JSON: %w", err)
		}
	} else {
		dec := yaml.NewDecoder(bytes.NewReader(b))
		if err := dec.Decode(&doc); err != nil {
			return nil, spec, fmt.Errorf("not valid YAML: %w", err)
		}
		var extra any
		if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
			return nil, spec, errors.New("more than one YAML document: put one workflow version in each file")
		}
	}
	if _, ok := doc.(map[string]any); !ok {
		return nil, spec, errors.New("not an object of the create keys (workflow_name, version, title, …)")
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		return nil, spec, fmt.Errorf("cannot be sent as JSON: %w", err)
	}
	// Read the name and version leniently first, so that a file with a
	// mistake is still reported under its name.
	_ = json.Unmarshal(raw, &struct {
		WorkflowName *string `json:"workflow_name"`
		Version      *string `json:"version"`
	}{&spec.WorkflowName, &spec.Version})
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		return nil, spec, fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "json: "))
	}
	return raw, spec, nil
}

// workflowFiles expands the -f arguments into the workflow files, each
// directory's in lexical order, so that a run is repeatable.
func workflowFiles(paths []string) ([]string, error) {
	var files []string
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("-f: %w", err)
		}
		if !fi.IsDir() {
			files = append(files, p)
			continue
		}
		var found []string
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && path != p && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			switch strings.ToLower(filepath.Ext(path)) {
			case ".yaml", ".yml", ".json":
				if !d.IsDir() {
					found = append(found, path)
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("-f %s: %w", p, err)
		}
		if len(found) == 0 {
			return nil, fmt.Errorf("-f %s: no .yaml, .yml or .json file in it", p)
		}
		sort.Strings(found)
		files = append(files, found...)
	}
	return files, nil
}

// multiString collects a repeatable string flag.
type multiString []string

func (m *multiString) String() string     { return strings.Join(*m, ",") }
func (m *multiString) Set(v string) error { *m = append(*m, v); return nil }
