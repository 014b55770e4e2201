package rollout

// Gate integrity: an AnalysisRun is evidence for a Rollout only if it is
// the run Vigil built for the analysis its status names.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
)

// checkRun makes sure an AnalysisRun that exists under the name of
// analysis a is the run Vigil built for it: its spec is the one recorded
// when Vigil created it, or, when none is recorded (the status that would
// have recorded it was lost), the one Vigil builds now. Anyone who may
// create AnalysisRuns could otherwise make one in advance, under the name
// Vigil will use and with a condition that always passes, and have it
// adopted as the gate. A run that is not Vigil's is never evidence: the
// Rollout holds, saying why, until it is deleted.
func (r *Reconciler) checkRun(ctx context.Context, s *scope, a *vigilv1.RolloutAnalysis, key string, step *vigilv1.AnalysisStep, existing *vigilv1.AnalysisRun) {
	got := specHash(&existing.Spec)
	want := a.SpecHash
	if want == "" {
		built, err := r.buildRun(ctx, s, a, key, step)
		if err != nil {
			delete(s.runs, a.Run)
			s.runErrors[a.Run] = fmt.Errorf("AnalysisRun %s exists, and the run Vigil would build to compare it with cannot be built: %w", a.Run, err)
			return
		}
		want = specHash(&built.Spec)
	}
	if got != want {
		delete(s.runs, a.Run)
		s.runErrors[a.Run] = fmt.Errorf("AnalysisRun %s exists, but its spec is not the one Vigil built for this analysis (spec hash %.12s, want %.12s): "+
			"it was not made by Vigil and is not used as evidence; delete it and Vigil creates the run", a.Run, got, want)
		return
	}
	a.SpecHash = got
}

// specHash is the SHA-256 of an AnalysisRun's spec as JSON.
func specHash(spec *vigilv1.AnalysisRunSpec) string {
	b, _ := json.Marshal(spec) // a struct of strings, numbers and lists always marshals
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// recordSpecHash records in status the spec of the run Vigil created for
// an analysis, so the run is recognised as Vigil's later, whatever the
// templates say by then.
func recordSpecHash(s *scope, run *vigilv1.AnalysisRun) {
	for _, a := range []*vigilv1.RolloutAnalysis{s.rollout.Status.Analysis, s.rollout.Status.BackgroundAnalysis} {
		if a != nil && a.Run == run.Name {
			a.SpecHash = specHash(&run.Spec)
		}
	}
}
