// Package analysisrun is the AnalysisRun controller: it takes each metric's
// measurements when they are due, records them in the run's status (the
// most recent ones, with counts of all), and sets the metric and run
// verdicts. Measurements that produce no evidence (Unknown) are retried on
// a bounded exponential backoff instead of the metric's interval, and
// identical queries of many runs within one interval share one request.
//
// A measurement is only ever a read, so a crash between taking it and
// storing it costs one repeated query and nothing else.
package analysisrun

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"

	"github.com/vigil-dev/vigil/analysis"
	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/controllers/secret"
	"github.com/vigil-dev/vigil/controllers/skeleton"
	"github.com/vigil-dev/vigil/outcome"
)

// +kubebuilder:rbac:groups=vigil.dev,resources=analysisruns,verbs=get;list;watch
// +kubebuilder:rbac:groups=vigil.dev,resources=analysisruns/status,verbs=patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get

// MeasurementsKept is how many measurements of each metric the status
// keeps; older ones are dropped but stay counted.
const MeasurementsKept = 20

// Reconciler reconciles AnalysisRuns.
type Reconciler struct {
	client.Client
	// APIReader reads the Secrets that hold Prometheus credentials, one at
	// a time and uncached, so the controller never watches Secrets.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Clock     clock.PassiveClock
	// Coalescer shares identical queries; nil turns sharing off.
	Coalescer *analysis.Coalescer
	// MaxResponseBytes bounds one Prometheus answer.
	MaxResponseBytes int64
	// Workers is how many runs are measured at once.
	Workers int

	mu      sync.Mutex
	clients map[string]*analysis.Prometheus
}

// Reconcile takes the measurements that are due and records them, on the
// shared skeleton: one status patch with an optimistic lock, and metrics
// and Events only once it is stored.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return skeleton.Loop[vigilv1.AnalysisRun, *vigilv1.AnalysisRun]{
		Kind: "AnalysisRun", Reader: r.Client, Writer: r.Client, Recorder: r.Recorder,
		Status: func(run *vigilv1.AnalysisRun) any { return &run.Status },
	}.Run(ctx, req, r.reconcileRun)
}

// SetupWithManager registers the controller.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.Workers <= 0 {
		r.Workers = 16
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&vigilv1.AnalysisRun{}).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.Workers}).
		Complete(r)
}

func (r *Reconciler) reconcileRun(ctx context.Context, run *vigilv1.AnalysisRun, notes *skeleton.Notes) (ctrl.Result, error) {
	if run.Status.Verdict.Finished() {
		return ctrl.Result{}, nil
	}
	was := run.Status.Verdict
	wake := r.step(ctx, run, r.Clock.Now(), notes)
	announce(run, was, notes)
	if run.Status.Verdict.Finished() || wake <= 0 {
		return ctrl.Result{}, nil
	}
	return ctrl.Result{RequeueAfter: wake}, nil
}

// step measures what is due at now and updates the status; it returns how
// long until the next measurement is due.
func (r *Reconciler) step(ctx context.Context, run *vigilv1.AnalysisRun, now time.Time, notes *skeleton.Notes) time.Duration {
	st := &run.Status
	if st.StartedAt == nil {
		st.StartedAt = &metav1.Time{Time: now}
	}
	st.ObservedGeneration = run.Generation
	results := resultsByName(run)

	var wake time.Duration
	type due struct {
		metric *vigilv1.Metric
		result *vigilv1.MetricResult
	}
	var dues []due
	for i := range run.Spec.Metrics {
		m := &run.Spec.Metrics[i]
		res := results[m.Name]
		if res.Verdict.Finished() || run.Spec.Terminate {
			continue
		}
		at := nextDue(m, res, st.StartedAt.Time)
		if !at.After(now) {
			dues = append(dues, due{m, res})
			continue
		}
		if d := at.Sub(now); wake == 0 || d < wake {
			wake = d
		}
	}

	var wg sync.WaitGroup
	taken := make([]analysis.Measurement, len(dues))
	for i, d := range dues {
		wg.Go(func() { taken[i] = r.measure(ctx, run, d.metric) })
	}
	wg.Wait()
	for i, d := range dues {
		record(d.metric, d.result, taken[i])
		m := taken[i]
		notes.Metric(func() { observe(m) })
		if d.result.Verdict.Finished() {
			continue
		}
		at := nextDue(d.metric, d.result, st.StartedAt.Time)
		if dd := max(at.Sub(now), time.Second); wake == 0 || dd < wake {
			wake = dd
		}
	}
	verdict(run)
	return wake
}

// resultsByName makes sure every metric has a result entry, in spec order,
// and returns them by name.
func resultsByName(run *vigilv1.AnalysisRun) map[string]*vigilv1.MetricResult {
	old := map[string]vigilv1.MetricResult{}
	for _, r := range run.Status.MetricResults {
		old[r.Name] = r
	}
	out := make([]vigilv1.MetricResult, 0, len(run.Spec.Metrics))
	for _, m := range run.Spec.Metrics {
		r, ok := old[m.Name]
		if !ok {
			r = vigilv1.MetricResult{Name: m.Name, Verdict: vigilv1.AnalysisRunning, DryRun: m.DryRun}
		}
		out = append(out, r)
	}
	run.Status.MetricResults = out
	byName := make(map[string]*vigilv1.MetricResult, len(out))
	for i := range run.Status.MetricResults {
		byName[run.Status.MetricResults[i].Name] = &run.Status.MetricResults[i]
	}
	return byName
}

// interval of a metric; the API server defaults it to 1m.
func interval(m *vigilv1.Metric) time.Duration {
	if m.Interval != nil {
		if d, err := m.Interval.Get(); err == nil && d > 0 {
			return d
		}
	}
	return time.Minute
}

// nextDue is when the metric's next measurement is due: after the initial
// delay at first, then an interval after the last measurement began, or,
// after an Unknown one, the backoff delay after it ended.
func nextDue(m *vigilv1.Metric, res *vigilv1.MetricResult, started time.Time) time.Time {
	if len(res.Measurements) == 0 {
		if m.InitialDelay != nil {
			if d, err := m.InitialDelay.Get(); err == nil {
				return started.Add(d)
			}
		}
		return started
	}
	last := res.Measurements[len(res.Measurements)-1]
	if last.Outcome == vigilv1.MeasurementUnknown {
		end := last.StartedAt.Time
		if last.FinishedAt != nil {
			end = last.FinishedAt.Time
		}
		return end.Add(analysis.RetryDelay(res.ConsecutiveUnknown, interval(m)))
	}
	return last.StartedAt.Add(interval(m))
}

// measure takes one measurement of m. Anything that keeps the query from
// being sent (a template that does not render, a missing Secret) is an
// Unknown measurement that says why.
func (r *Reconciler) measure(ctx context.Context, run *vigilv1.AnalysisRun, m *vigilv1.Metric) analysis.Measurement {
	p := m.Provider.Prometheus
	now := r.Clock.Now()
	if p == nil {
		return analysis.Invalid(analysis.CauseInvalidProvider, errors.New("the metric has no prometheus provider"), "", now)
	}
	args := make(map[string]string, len(run.Spec.Args))
	for _, a := range run.Spec.Args {
		args[a.Name] = a.Value
	}
	text, err := analysis.Render(p.Query, args)
	if err != nil {
		return analysis.Invalid(analysis.CauseInvalidQuery, err, p.Query, now)
	}
	cond := conditions(m)
	if err := cond.Validate(); err != nil {
		return analysis.Invalid(analysis.CauseInvalidCondition, err, text, now)
	}
	q, err := query(p, text)
	if err != nil {
		return analysis.Invalid(analysis.CauseInvalidQuery, err, text, now)
	}
	prom, err := r.client(ctx, run.Namespace, p)
	if err != nil {
		return analysis.Invalid(analysis.CauseInvalidProvider, err, text, now)
	}
	return analysis.Measure(ctx, r.Coalescer, prom, q, cond, interval(m), r.Clock.Now)
}

func conditions(m *vigilv1.Metric) analysis.Conditions {
	c := analysis.Conditions{Success: m.SuccessCondition, Failure: m.FailureCondition, NoData: analysis.Unknown}
	if m.NoDataOutcome == vigilv1.NoDataInconclusive {
		c.NoData = analysis.Inconclusive
	}
	return c
}

func query(p *vigilv1.PrometheusProvider, text string) (analysis.Query, error) {
	q := analysis.Query{Text: text, Timeout: 10 * time.Second}
	if p.Timeout != nil {
		d, err := p.Timeout.Get()
		if err != nil {
			return q, err
		}
		q.Timeout = d
	}
	if rg := p.Range; rg != nil {
		window, err := rg.Window.Get()
		if err != nil {
			return q, err
		}
		step := 30 * time.Second
		if rg.Step != nil {
			if step, err = rg.Step.Get(); err != nil {
				return q, err
			}
		}
		if step <= 0 || window/step > 11000 {
			return q, fmt.Errorf("range window %s with step %s has too many points (at most 11000)", window, step)
		}
		q.Range = &analysis.Range{Window: window, Step: step, Reduce: string(rg.Reduce)}
	}
	return q, nil
}

// maxClients bounds the cache of Prometheus clients; past it the cache
// starts over.
const maxClients = 256

// client is a Prometheus client for the provider, with credentials read
// from its Secrets; clients are shared between runs with the same endpoint.
func (r *Reconciler) client(ctx context.Context, ns string, p *vigilv1.PrometheusProvider) (*analysis.Prometheus, error) {
	e := analysis.Endpoint{Address: p.Address}
	var err error
	if ref := p.BearerTokenSecret; ref != nil {
		if e.BearerToken, err = r.secretKey(ctx, ns, ref.Name, ref.Key); err != nil {
			return nil, err
		}
	}
	if b := p.BasicAuth; b != nil {
		if e.Username, err = r.secretKey(ctx, ns, b.SecretName, "username"); err != nil {
			return nil, err
		}
		if e.Password, err = r.secretKey(ctx, ns, b.SecretName, "password"); err != nil {
			return nil, err
		}
	}
	if t := p.TLS; t != nil {
		e.ServerName, e.InsecureSkipVerify = t.ServerName, t.InsecureSkipVerify
		if ref := t.CASecret; ref != nil {
			if e.CA, err = r.secretKey(ctx, ns, ref.Name, ref.Key); err != nil {
				return nil, err
			}
		}
	}
	if len(p.Headers) > 0 {
		e.Headers = make(map[string]string, len(p.Headers))
		for _, h := range p.Headers {
			e.Headers[h.Name] = h.Value
		}
	}
	key := e.Key()
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.clients[key]; ok {
		return c, nil
	}
	c, err := analysis.NewPrometheus(e, r.MaxResponseBytes)
	if err != nil {
		return nil, err
	}
	if r.clients == nil || len(r.clients) >= maxClients {
		r.clients = map[string]*analysis.Prometheus{}
	}
	r.clients[key] = c
	return c, nil
}

// secretKey reads one key of a Secret, trimmed. Errors name the Secret
// and key, never the content.
func (r *Reconciler) secretKey(ctx context.Context, ns, name, key string) (string, error) {
	b, err := secret.Key(ctx, r.APIReader, ns, name, key)
	return strings.TrimSpace(string(b)), err
}

// record adds a measurement to a metric's result and updates its verdict.
func record(m *vigilv1.Metric, res *vigilv1.MetricResult, x analysis.Measurement) {
	t := tally(res)
	t.Add(x.Outcome)
	setTally(res, t)
	reason := x.Reason
	if x.Shared && reason == "" {
		reason = "answer shared with an identical query in the same interval"
	}
	res.Measurements = append(res.Measurements, vigilv1.Measurement{
		Outcome:    vigilv1.MeasurementOutcome(x.Outcome),
		Value:      x.Value,
		Reason:     reason,
		Query:      outcome.Shorten(x.Query, 16000),
		StartedAt:  metav1.Time{Time: x.Started},
		FinishedAt: &metav1.Time{Time: x.Finished},
	})
	if n := len(res.Measurements); n > MeasurementsKept {
		res.Measurements = append([]vigilv1.Measurement(nil), res.Measurements[n-MeasurementsKept:]...)
	}
	v, msg := t.Verdict(limits(m))
	res.Verdict, res.Message = vigilv1.AnalysisVerdict(v), msg
}

func tally(res *vigilv1.MetricResult) analysis.Tally {
	return analysis.Tally{
		Successful: res.Successful, Failed: res.Failed, Inconclusive: res.Inconclusive, Unknown: res.Unknown,
		ConsecutiveUnknown: res.ConsecutiveUnknown, ConsecutiveSuccessful: res.ConsecutiveSuccessful,
	}
}

func setTally(res *vigilv1.MetricResult, t analysis.Tally) {
	res.Successful, res.Failed, res.Inconclusive, res.Unknown = t.Successful, t.Failed, t.Inconclusive, t.Unknown
	res.ConsecutiveUnknown, res.ConsecutiveSuccessful = t.ConsecutiveUnknown, t.ConsecutiveSuccessful
}

func limits(m *vigilv1.Metric) analysis.Limits {
	l := analysis.Limits{Failure: m.FailureLimit, Inconclusive: m.InconclusiveLimit, Unknown: m.UnknownLimit}
	if m.ConsecutiveSuccessLimit != nil {
		l.ConsecutiveSuccess = *m.ConsecutiveSuccessLimit
	}
	if m.Count != nil {
		l.Count = *m.Count
	}
	return l
}

// verdict sets the run's verdict from its metrics'. Dry-run metrics are
// measured and shown but never decide; a terminated run ends with what was
// measured.
func verdict(run *vigilv1.AnalysisRun) {
	st := &run.Status
	var deciding []analysis.Outcome
	var worst *vigilv1.MetricResult
	dryRunning := false
	for i := range run.Spec.Metrics {
		m := &run.Spec.Metrics[i]
		res := &st.MetricResults[i]
		if run.Spec.Terminate && !res.Verdict.Finished() {
			v, msg := tally(res).Final(limits(m))
			res.Verdict, res.Message = vigilv1.AnalysisVerdict(v), msg
		}
		if m.DryRun {
			dryRunning = dryRunning || !res.Verdict.Finished()
			continue
		}
		deciding = append(deciding, analysis.Outcome(res.Verdict))
	}
	v := analysis.Combine(deciding)
	if v == analysis.Successful && dryRunning {
		v = analysis.Running
	}
	for i := range st.MetricResults {
		res := &st.MetricResults[i]
		if !res.DryRun && string(res.Verdict) == string(v) && worst == nil {
			worst = res
		}
	}
	st.Verdict = vigilv1.AnalysisVerdict(v)
	switch {
	case v == analysis.Running:
		st.Message = "Measuring"
	case v == analysis.Successful:
		st.Message = "Every metric passed"
	case worst != nil:
		st.Message = outcome.Shorten(fmt.Sprintf("metric %s: %s", worst.Name, worst.Message), 1024)
	}
	if run.Spec.Terminate && v != analysis.Running {
		st.Message = outcome.Shorten("Terminated; "+st.Message, 1024)
	}
	ready := metav1.ConditionFalse
	if v == analysis.Successful {
		ready = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&st.Conditions.Conditions, metav1.Condition{Type: vigilv1.ConditionReady, Status: ready, Reason: string(v), Message: st.Message, ObservedGeneration: run.Generation})
	if v == analysis.Running {
		meta.SetStatusCondition(&st.Conditions.Conditions, metav1.Condition{Type: vigilv1.ConditionReconciling, Status: metav1.ConditionTrue, Reason: string(v), Message: st.Message, ObservedGeneration: run.Generation})
	} else {
		meta.RemoveStatusCondition(&st.Conditions.Conditions, vigilv1.ConditionReconciling)
	}
}

// announce notes the Event and metric of a new verdict.
func announce(run *vigilv1.AnalysisRun, was vigilv1.AnalysisVerdict, notes *skeleton.Notes) {
	v := run.Status.Verdict
	if !v.Finished() || was == v {
		return
	}
	notes.Metric(verdicts.WithLabelValues(string(v)).Inc)
	reason := vigilv1.ReasonAnalysisFailed
	if v == vigilv1.AnalysisSuccessful {
		reason = vigilv1.ReasonAnalysisPassed
	}
	notes.Event(run, nil, v != vigilv1.AnalysisSuccessful, reason, "Analyze", "Verdict %s: %s", v, run.Status.Message)
}
