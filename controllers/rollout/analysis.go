package rollout

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/vigil-dev/vigil/analysis"
	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
)

// Analysis of a canary runs as AnalysisRuns the Rollout owns, named from
// the Rollout, the revision, what the analysis is for (step index or
// "background") and an attempt number. The name is stored in the status
// before the run is created, so a restart adopts the run instead of
// starting another.

// backgroundKey is the analysis label value of background analysis.
const backgroundKey = "background"

// maxAttempts bounds the Retry policy: past it, the Rollout pauses for a
// person instead.
const maxAttempts = 10

// runName is the AnalysisRun name of an analysis attempt.
func runName(ro *vigilv1.Rollout, revision, key string, attempt int32) string {
	name := ro.Name
	if len(name) > 200 {
		name = name[:200]
	}
	if key != backgroundKey {
		key = "step" + key
	}
	return fmt.Sprintf("%s-%s-%s-%d", name, revision, key, attempt)
}

func stepKey(i int32) string { return strconv.Itoa(int(i)) }

// newAnalysis starts the bookkeeping of an analysis: the first attempt
// whose name no AnalysisRun has yet.
func newAnalysis(s *scope, step *int32) *vigilv1.RolloutAnalysis {
	key := backgroundKey
	if step != nil {
		key = stepKey(*step)
	}
	rev := s.rollout.Status.CanaryRevision
	var attempt int32
	for s.runs[runName(s.rollout, rev, key, attempt)] != nil {
		attempt++
	}
	return &vigilv1.RolloutAnalysis{
		Run: runName(s.rollout, rev, key, attempt), Revision: rev, Step: step,
		Attempt: attempt, Verdict: vigilv1.AnalysisRunning,
	}
}

// terminated tells whether the run behind a was terminated because the
// Rollout stopped wanting it (its template moved away while spec.paused,
// say). What such a run ends with is not evidence: if the analysis is
// wanted again, a new attempt runs.
func terminated(s *scope, a *vigilv1.RolloutAnalysis) bool {
	run := s.runs[a.Run]
	return run != nil && run.Spec.Terminate
}

// analysisKey names what an analysis is for, in messages.
func analysisKey(a *vigilv1.RolloutAnalysis) string {
	if a.Step == nil {
		return "background analysis"
	}
	return fmt.Sprintf("analysis of step %d", *a.Step)
}

// summarize copies the run's verdict and the measurements that decided it
// into the Rollout's bookkeeping.
func summarize(a *vigilv1.RolloutAnalysis, run *vigilv1.AnalysisRun) {
	a.Verdict = run.Status.Verdict
	if a.Verdict == "" {
		a.Verdict = vigilv1.AnalysisRunning
	}
	a.Message = run.Status.Message
	var out []vigilv1.DecidingMeasurement
	for _, res := range run.Status.MetricResults {
		if res.DryRun {
			continue
		}
		// A finished run shows the measurements of the metrics that decided
		// it; a running one, the latest of each metric.
		if a.Verdict.Finished() && res.Verdict != a.Verdict {
			continue
		}
		ms := res.Measurements
		if !a.Verdict.Finished() && len(ms) > 1 {
			ms = ms[len(ms)-1:]
		}
		for _, m := range ms {
			out = append(out, vigilv1.DecidingMeasurement{Metric: res.Name, Outcome: m.Outcome, Value: m.Value, Reason: m.Reason, Time: m.StartedAt})
		}
	}
	if len(out) > 8 {
		out = out[len(out)-8:]
	}
	a.Measurements = out
}

// policy is what the Rollout does about a finished, bad verdict.
func policy(s *scope, v vigilv1.AnalysisVerdict) vigilv1.RollbackAction {
	p := s.rollout.Spec.Rollback
	switch v {
	case vigilv1.AnalysisFailed:
		if p != nil && p.OnFailed != "" {
			return p.OnFailed
		}
		return vigilv1.RollbackActionRollback
	case vigilv1.AnalysisInconclusive:
		if p != nil && p.OnInconclusive != "" {
			return p.OnInconclusive
		}
	case vigilv1.AnalysisUnknown:
		if p != nil && p.OnUnknownExhausted != "" {
			return p.OnUnknownExhausted
		}
	}
	return vigilv1.RollbackActionPause
}

// trigger is the rollback trigger of a bad verdict.
func trigger(v vigilv1.AnalysisVerdict) vigilv1.RollbackTrigger {
	switch v {
	case vigilv1.AnalysisInconclusive:
		return vigilv1.RollbackTriggerAnalysisInconclusive
	case vigilv1.AnalysisUnknown:
		return vigilv1.RollbackTriggerAnalysisUnknown
	}
	return vigilv1.RollbackTriggerAnalysisFailed
}

// observeAnalysis follows the run behind a and reports whether it has a
// verdict; a verdict it sees for the first time is announced.
func observeAnalysis(s *scope, a *vigilv1.RolloutAnalysis) (finished bool) {
	run := s.runs[a.Run]
	if run == nil {
		return false
	}
	was := a.Verdict
	summarize(a, run)
	if a.Verdict.Finished() && was != a.Verdict {
		warning := a.Verdict != vigilv1.AnalysisSuccessful
		reason := vigilv1.ReasonAnalysisFailed
		if !warning {
			reason = vigilv1.ReasonAnalysisPassed
		}
		s.record(warning, reason, "Analyze", "%s of revision %s: %s (AnalysisRun %s): %s%s",
			capitalize(analysisKey(a)), a.Revision, a.Verdict, a.Run, a.Message, withMeasurements(a))
	}
	return a.Verdict.Finished()
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// measurementsText lists the deciding measurements, as "metric=value
// (outcome)", for Events and messages.
func measurementsText(a *vigilv1.RolloutAnalysis) string {
	parts := make([]string, 0, len(a.Measurements))
	for _, m := range a.Measurements {
		v := m.Value
		if v == "" {
			v = m.Reason
		}
		parts = append(parts, fmt.Sprintf("%s=%s (%s)", m.Metric, v, m.Outcome))
	}
	return strings.Join(parts, " ")
}

// withMeasurements appends the deciding measurements to a message.
func withMeasurements(a *vigilv1.RolloutAnalysis) string {
	if len(a.Measurements) == 0 {
		return ""
	}
	return "; measurements: " + measurementsText(a)
}

// actOnVerdict applies the Rollout's policy to a bad verdict of a, at step
// i: roll back, run the analysis again, or pause until an Approval of step
// i runs it again (a Reject of step i rolls back).
func actOnVerdict(s *scope, a **vigilv1.RolloutAnalysis, i int32) {
	st := &s.rollout.Status
	cur := *a
	action := policy(s, cur.Verdict)
	if action == vigilv1.RollbackActionRetry && cur.Attempt+1 >= maxAttempts {
		action = vigilv1.RollbackActionPause
	}
	switch action {
	case vigilv1.RollbackActionRollback:
		rollback(s, trigger(cur.Verdict), fmt.Sprintf("%s was %s: %s%s", analysisKey(cur), cur.Verdict, cur.Message, withMeasurements(cur)))
	case vigilv1.RollbackActionRetry:
		*a = newAnalysis(s, cur.Step)
		s.decided = true
		s.record(false, vigilv1.ReasonAnalysisRetry, "Retry", "%s was %s; running it again as AnalysisRun %s", capitalize(analysisKey(cur)), cur.Verdict, (*a).Run)
		setPhase(s, vigilv1.RolloutPhaseProgressing, "Canary %s at step %d: %s retried", st.CanaryRevision, i, analysisKey(cur))
	default:
		p := st.PendingApproval
		waiting := p != nil && p.Step == i && p.Revision == st.CanaryRevision && p.Effect == vigilv1.EffectRunAnalysisAgain
		if approvals := s.counting(vigilv1.ApprovalApprove); waiting && len(approvals) > 0 {
			s.use(approvals[0])
			*a = newAnalysis(s, cur.Step)
			s.decided = true
			st.PendingApproval = nil
			s.record(false, vigilv1.ReasonAnalysisRetry, "Retry", "Approval %s by %s runs the %s again as AnalysisRun %s", approvals[0].a.Name, approvals[0].id.User, analysisKey(cur), (*a).Run)
			setPhase(s, vigilv1.RolloutPhaseProgressing, "Canary %s at step %d: %s approved to run again", st.CanaryRevision, i, analysisKey(cur))
			return
		}
		if !waiting {
			s.record(true, vigilv1.ReasonAnalysisPaused, "Pause", "Canary %s paused at step %d: %s was %s. Approve step %d to run it again, or reject it to roll back",
				st.CanaryRevision, i, analysisKey(cur), cur.Verdict, i)
		}
		s.waitFor(st.CanaryRevision, i, vigilv1.EffectRunAnalysisAgain, 0, 1)
		setPhase(s, vigilv1.RolloutPhasePaused, "Canary %s paused at step %d: %s was %s (%s). Approve step %d to run it again, or reject it to roll back",
			st.CanaryRevision, i, analysisKey(cur), cur.Verdict, cur.Message, i)
	}
}

// decideAnalysisStep runs the gate of analysis step i: start the analysis,
// wait for its verdict, and advance on Successful only.
func decideAnalysisStep(s *scope, i int32) {
	st := &s.rollout.Status
	a := st.Analysis
	if a == nil || a.Revision != st.CanaryRevision || a.Step == nil || *a.Step != i || terminated(s, a) {
		st.Analysis = newAnalysis(s, ptr.To(i))
		s.decided = true
		s.record(false, vigilv1.ReasonAnalysisStarted, "Analyze", "Analysis of step %d of revision %s starts as AnalysisRun %s", i, st.CanaryRevision, st.Analysis.Run)
		setPhase(s, vigilv1.RolloutPhaseProgressing, "Canary %s at step %d: analysis starting", st.CanaryRevision, i)
		return
	}
	if !observeAnalysis(s, a) {
		waitForAnalysis(s, a, i)
		return
	}
	if a.Verdict == vigilv1.AnalysisSuccessful {
		advance(s, i+1)
		return
	}
	actOnVerdict(s, &st.Analysis, i)
}

// waitForAnalysis reports a running analysis, or one whose run cannot be
// made.
func waitForAnalysis(s *scope, a *vigilv1.RolloutAnalysis, i int32) {
	st := &s.rollout.Status
	st.PendingApproval = nil
	if err := s.runErrors[a.Run]; err != nil {
		s.wakeIn(invalidAnalysisRetry)
		setPhase(s, vigilv1.RolloutPhasePaused, "Canary %s at step %d: %s cannot start: %v", st.CanaryRevision, i, analysisKey(a), err)
		return
	}
	msg := "running"
	if len(a.Measurements) > 0 {
		msg = "running; latest: " + measurementsText(a)
	}
	setPhase(s, vigilv1.RolloutPhaseProgressing, "Canary %s at step %d: %s %s", st.CanaryRevision, i, analysisKey(a), msg)
}

// decideBackground follows the background analysis, and acts on a bad
// verdict at step i. It reports whether it decided the reconcile.
func decideBackground(s *scope, i int32) bool {
	st := &s.rollout.Status
	if s.rollout.Spec.Strategy.Canary.Analysis == nil {
		return false
	}
	b := st.BackgroundAnalysis
	if b == nil || b.Revision != st.CanaryRevision || terminated(s, b) {
		st.BackgroundAnalysis = newAnalysis(s, nil)
		s.decided = true
		s.record(false, vigilv1.ReasonAnalysisStarted, "Analyze", "Background analysis of revision %s starts as AnalysisRun %s", st.CanaryRevision, st.BackgroundAnalysis.Run)
		setPhase(s, vigilv1.RolloutPhaseProgressing, "Canary %s at step %d: background analysis starting", st.CanaryRevision, i)
		return true
	}
	if !observeAnalysis(s, b) || b.Verdict == vigilv1.AnalysisSuccessful {
		return false
	}
	actOnVerdict(s, &st.BackgroundAnalysis, i)
	return true
}

// backgroundHasEvidence tells whether background analysis lets the canary
// be promoted: every deciding metric has produced evidence and none is
// waiting out an Unknown. Vigil never promotes on Unknown.
func backgroundHasEvidence(s *scope) (bool, string) {
	b := s.rollout.Status.BackgroundAnalysis
	if s.rollout.Spec.Strategy.Canary.Analysis == nil {
		return true, ""
	}
	if b == nil {
		return false, "background analysis has not started"
	}
	run := s.runs[b.Run]
	if run == nil {
		return false, fmt.Sprintf("AnalysisRun %s does not exist yet", b.Run)
	}
	for _, res := range run.Status.MetricResults {
		switch {
		case res.DryRun:
		case res.ConsecutiveUnknown > 0:
			return false, fmt.Sprintf("background metric %s has %d Unknown measurements in a row", res.Name, res.ConsecutiveUnknown)
		case res.Successful+res.Failed+res.Inconclusive == 0:
			return false, fmt.Sprintf("background metric %s has no measurement yet", res.Name)
		}
	}
	if len(run.Status.MetricResults) == 0 {
		return false, "background analysis has no measurement yet"
	}
	return true, ""
}

// wantedRuns are the AnalysisRuns that should be running now.
func wantedRuns(s *scope) []*vigilv1.RolloutAnalysis {
	st := s.rollout.Status
	if st.CanaryRevision == "" || st.Rollback != nil || s.revision != st.CanaryRevision {
		return nil
	}
	var out []*vigilv1.RolloutAnalysis
	if a := st.Analysis; a != nil && a.Revision == st.CanaryRevision && a.Step != nil && *a.Step == s.stepIndex() && !a.Verdict.Finished() {
		out = append(out, a)
	}
	if b := st.BackgroundAnalysis; b != nil && b.Revision == st.CanaryRevision && s.rollout.Spec.Strategy.Canary.Analysis != nil && !b.Verdict.Finished() {
		out = append(out, b)
	}
	return out
}

// planAnalysis creates the runs the status names and terminates running
// ones it no longer wants.
func planAnalysis(s *scope) []change {
	var out []change
	wanted := map[string]bool{}
	for _, a := range wantedRuns(s) {
		wanted[a.Run] = true
		if s.runs[a.Run] == nil && s.runSpecs[a.Run] != nil {
			out = append(out, change{kind: createAnalysisRun, run: s.runSpecs[a.Run]})
		}
	}
	names := make([]string, 0, len(s.runs))
	for name := range s.runs {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		run := s.runs[name]
		if !wanted[name] && !run.Spec.Terminate && !run.Status.Verdict.Finished() {
			out = append(out, change{kind: terminateAnalysisRun, run: run})
		}
	}
	return out
}

// invalidAnalysisRetry is how often a Rollout looks again at analysis it
// could not start (a missing template, say).
const invalidAnalysisRetry = 15 * time.Second

// observeAnalysisRuns lists the Rollout's AnalysisRuns and builds the ones
// its status wants but that do not exist yet.
func (r *Reconciler) observeAnalysisRuns(ctx context.Context, s *scope) error {
	ro := s.rollout
	var runs vigilv1.AnalysisRunList
	mine := []client.ListOption{client.InNamespace(ro.Namespace), client.MatchingLabels{vigilv1.LabelRollout: ro.Name}}
	if err := r.listFresh(ctx, s, "AnalysisRun", &runs, mine, mine); err != nil {
		return fmt.Errorf("listing AnalysisRuns: %w", err)
	}
	s.runs = map[string]*vigilv1.AnalysisRun{}
	for i := range runs.Items {
		if ownedBy(&runs.Items[i], ro) {
			s.runs[runs.Items[i].Name] = &runs.Items[i]
		}
	}
	s.runSpecs, s.runErrors = map[string]*vigilv1.AnalysisRun{}, map[string]error{}
	c := ro.Spec.Strategy.Canary
	for _, a := range wantedRuns(s) {
		step := c.Analysis
		key := backgroundKey
		if a.Step != nil {
			key = stepKey(*a.Step)
			if int(*a.Step) >= len(c.Steps) || c.Steps[*a.Step].Analysis == nil {
				continue // the spec changed under the status; decide moves on
			}
			step = c.Steps[*a.Step].Analysis
		}
		if step == nil {
			continue
		}
		if existing := s.runs[a.Run]; existing != nil {
			r.checkRun(ctx, s, a, key, step, existing)
			continue
		}
		run, err := r.buildRun(ctx, s, a, key, step)
		if err != nil {
			s.runErrors[a.Run] = err
			continue
		}
		s.runSpecs[a.Run] = run
	}
	return nil
}

// buildRun resolves the templates and arguments of an analysis into the
// AnalysisRun that runs it.
func (r *Reconciler) buildRun(ctx context.Context, s *scope, a *vigilv1.RolloutAnalysis, key string, step *vigilv1.AnalysisStep) (*vigilv1.AnalysisRun, error) {
	ro := s.rollout
	metrics, declared, err := r.templates(ctx, ro.Namespace, step.Templates)
	if err != nil {
		return nil, err
	}
	args, err := runArgs(ro, step.Args, declared)
	if err != nil {
		return nil, err
	}
	for _, m := range metrics {
		if err := (analysis.Conditions{Success: m.SuccessCondition, Failure: m.FailureCondition}).Validate(); err != nil {
			return nil, fmt.Errorf("metric %s: %w", m.Name, err)
		}
		if m.Provider.Prometheus != nil {
			if _, err := analysis.Render(m.Provider.Prometheus.Query, args); err != nil {
				return nil, fmt.Errorf("metric %s: %w", m.Name, err)
			}
		}
	}
	run := &vigilv1.AnalysisRun{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ro.Namespace,
			Name:      a.Run,
			Labels: map[string]string{
				vigilv1.LabelRollout:         ro.Name,
				vigilv1.LabelPodTemplateHash: a.Revision,
				vigilv1.LabelAnalysis:        key,
			},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(ro, vigilv1.GroupVersion.WithKind("Rollout"))},
		},
		Spec: vigilv1.AnalysisRunSpec{
			RolloutRef: &vigilv1.LocalObjectReference{Name: ro.Name},
			Revision:   a.Revision,
			Metrics:    metrics,
		},
	}
	for _, name := range slices.Sorted(maps.Keys(args)) {
		run.Spec.Args = append(run.Spec.Args, vigilv1.AnalysisArgument{Name: name, Value: args[name]})
	}
	return run, nil
}

// templates reads an analysis' templates and gathers their metrics (whose
// names must be unique) and the arguments they declare (the first
// declaration of a name wins).
func (r *Reconciler) templates(ctx context.Context, ns string, refs []vigilv1.AnalysisTemplateRef) ([]vigilv1.Metric, []analysis.Argument, error) {
	var metrics []vigilv1.Metric
	var declared []analysis.Argument
	seenMetric, seenArg := map[string]string{}, map[string]bool{}
	for _, ref := range refs {
		var spec vigilv1.AnalysisTemplateSpec
		kind := "AnalysisTemplate"
		if ref.ClusterScope {
			kind = "ClusterAnalysisTemplate"
			t := &vigilv1.ClusterAnalysisTemplate{}
			if err := r.Get(ctx, types.NamespacedName{Name: ref.Name}, t); err != nil {
				return nil, nil, templateError(kind, ref.Name, err)
			}
			spec = t.Spec
		} else {
			t := &vigilv1.AnalysisTemplate{}
			if err := r.Get(ctx, types.NamespacedName{Namespace: ns, Name: ref.Name}, t); err != nil {
				return nil, nil, templateError(kind, ref.Name, err)
			}
			spec = t.Spec
		}
		for _, m := range spec.Metrics {
			if other, ok := seenMetric[m.Name]; ok {
				return nil, nil, fmt.Errorf("metric %s is in both %s and %s; metric names must be unique across an analysis' templates", m.Name, other, ref.Name)
			}
			seenMetric[m.Name] = ref.Name
			metrics = append(metrics, m)
		}
		for _, arg := range spec.Args {
			if !seenArg[arg.Name] {
				seenArg[arg.Name] = true
				declared = append(declared, analysis.Argument{Name: arg.Name, Default: arg.Value})
			}
		}
	}
	if len(metrics) > 64 {
		return nil, nil, fmt.Errorf("the templates have %d metrics; an analysis can have at most 64", len(metrics))
	}
	return metrics, declared, nil
}

// runArgs gives each declared argument its value: the step's, else a
// built-in one (rollout, namespace, revision, stableRevision) for templates
// that declare it, else the template's default.
func runArgs(ro *vigilv1.Rollout, stepArgs []vigilv1.AnalysisArgument, declared []analysis.Argument) (map[string]string, error) {
	given := map[string]string{}
	for _, arg := range stepArgs {
		given[arg.Name] = arg.Value
	}
	builtins := map[string]string{
		"rollout": ro.Name, "namespace": ro.Namespace,
		"revision": ro.Status.CanaryRevision, "stableRevision": ro.Status.StableRevision,
	}
	for _, d := range declared {
		if v, ok := builtins[d.Name]; ok {
			if _, set := given[d.Name]; !set {
				given[d.Name] = v
			}
		}
	}
	return analysis.ResolveArgs(declared, given)
}

func templateError(kind, name string, err error) error {
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("%s %s does not exist", kind, name)
	}
	return fmt.Errorf("reading %s %s: %w", kind, name, err)
}

// createRun creates an AnalysisRun, adopting one of the same name that
// this Rollout owns (an earlier create whose answer was lost).
func (r *Reconciler) createRun(ctx context.Context, s *scope, run *vigilv1.AnalysisRun) error {
	err := r.Create(ctx, run.DeepCopy())
	if err == nil {
		recordSpecHash(s, run)
		return nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating AnalysisRun %s: %w", run.Name, err)
	}
	existing := &vigilv1.AnalysisRun{}
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(run), existing); err != nil {
		return fmt.Errorf("reading AnalysisRun %s after AlreadyExists: %w", run.Name, err)
	}
	if ownedBy(existing, s.rollout) && specHash(&existing.Spec) == specHash(&run.Spec) {
		recordSpecHash(s, run)
		return nil // adopted: the run this reconcile would have made
	}
	return fmt.Errorf("AnalysisRun %s exists and is not the run Vigil built for Rollout %s", run.Name, s.rollout.Name)
}
