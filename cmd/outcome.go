package cmd

import (
	"errors"
	"fmt"
	"io"

	"github.com/deployctl/deployctl/deploy"
)

// jsonOutcome is the --json document of a run that changes the app
// (rollout, rollback, scale): exactly one on stdout, on every exit path.
// The run functions defer finish with their error, so that a failure
// before the engine's result (bad input, Docker or Traefik unreachable)
// is a document too. A dry run prints its plan instead: off.
type jsonOutcome struct {
	w     io.Writer
	on    bool
	wrote bool
}

func newJSONOutcome(w io.Writer, json, dryRun bool) *jsonOutcome {
	return &jsonOutcome{w: w, on: json && !dryRun}
}

// result writes the run's result or failure as the document.
func (j *jsonOutcome) result(res *deploy.Result, err error) {
	if j.on && !j.wrote {
		writeJSONResult(j.w, res, err)
		j.wrote = true
	}
}

// value writes v as the document (a no-op run's plan).
func (j *jsonOutcome) value(v any) error {
	j.wrote = true
	return writeJSON(j.w, v)
}

// finish writes err as the document when none was written.
func (j *jsonOutcome) finish(err error) {
	if err != nil {
		j.result(nil, err)
	}
}

// reportFailure is a failed run's error: printed on stderr as "deployctl:
// <what> failed: ...", except a usage error, left for Main to print (with
// its exit code 2).
func reportFailure(stderr io.Writer, what string, err error) error {
	var de *deploy.Error
	if errors.As(err, &de) && de.Kind == deploy.KindUsage {
		return err
	}
	fmt.Fprintf(stderr, "deployctl: %s failed: %v\n", what, err)
	return &reportedError{err}
}
