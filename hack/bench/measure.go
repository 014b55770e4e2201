package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
)

// trigger brings release n of ro to the moment a rollback is due, makes it
// due, and returns when it did and the channel told when the rollback
// reached its ReplicaSets. It calls mark where the run's window for
// counting conflicts in the controller's log begins.
type trigger func(ctx context.Context, ro *vigilv1.Rollout, n int, mark func()) (time.Time, chan time.Time, error)

const reactionReplicas = 10

// reactions times n rollbacks of one Rollout of 10 replicas whose canary
// is at 50%.
func (b *bench) reactions(ctx context.Context, name string, n int, t trigger) (string, error) {
	steps := []vigilv1.CanaryStep{{SetWeight: ptr.To[int32](50)}, {Approval: &vigilv1.ApprovalStep{}}}
	if name == "failed-analysis" {
		steps[1] = vigilv1.CanaryStep{Analysis: &vigilv1.AnalysisStep{Templates: []vigilv1.AnalysisTemplateRef{{Name: "always-fails"}}}}
	}
	ro := rollout(ns, name, reactionReplicas, steps...)
	if err := b.c.Create(ctx, ro); err != nil {
		return "", err
	}
	if err := b.until(ctx, ro, 2*time.Minute, "its first revision promoted", func(ro *vigilv1.Rollout) bool {
		return ro.Status.Phase == vigilv1.RolloutPhasePromoted && ro.Status.ReadyReplicas == reactionReplicas
	}); err != nil {
		return "", err
	}
	var took []time.Duration
	conflicts := 0
	for i := 1; i <= n; i++ {
		before := -1
		at, done, err := t(ctx, ro, i, func() { before, _ = b.conflictsLogged() })
		if err != nil {
			return "", fmt.Errorf("%s %d: %w", name, i, err)
		}
		select {
		case end := <-done:
			took = append(took, end.Sub(at))
		case <-time.After(time.Minute):
			return "", fmt.Errorf("%s %d: the ReplicaSets did not reach stable %d and canary 0 within a minute", name, i, reactionReplicas)
		}
		// The run ends when the status says RolledBack: the reconciles
		// of the rollback are over, and so are their log lines.
		if err := b.until(ctx, ro, time.Minute, "RolledBack", func(ro *vigilv1.Rollout) bool {
			return ro.Status.Phase == vigilv1.RolloutPhaseRolledBack
		}); err != nil {
			return "", err
		}
		after, err := b.conflictsLogged()
		if err != nil || before < 0 {
			return "", fmt.Errorf("reading the controller's log: %v", err)
		}
		conflicts += after - before
		fmt.Printf("bench: %s %d/%d: rolled back in %s\n", name, i, n, took[len(took)-1].Round(time.Millisecond))
	}
	p50, p99, most := percentiles(took)
	return fmt.Sprintf("%s → stable %d and canary 0 (spec), %d runs: p50 %s, p99 %s, max %s; conflict errors logged from %s to RolledBack: %d",
		name, reactionReplicas, n, p50, p99, most, map[string]string{"abort": "the abort", "failed-analysis": "the canary's start"}[name], conflicts), nil
}

// canaryAt releases revision n of ro and waits until its canary serves
// half the pods at the step after setWeight.
func (b *bench) canaryAt(ctx context.Context, ro *vigilv1.Rollout, n int) error {
	if err := b.release(ctx, ro, n); err != nil {
		return err
	}
	return b.until(ctx, ro, 2*time.Minute, "its canary at step 1", func(ro *vigilv1.Rollout) bool {
		return ro.Status.CanaryRevision != "" && ptr.Deref(ro.Status.CurrentStepIndex, 0) >= 1 && ro.Status.Rollback == nil
	})
}

// abort rejects release n at its approval step, as kubectl vigil abort
// does; the reaction counts from just before the Approval is sent.
func (b *bench) abort(ctx context.Context, ro *vigilv1.Rollout, n int, mark func()) (time.Time, chan time.Time, error) {
	if err := b.canaryAt(ctx, ro, n); err != nil {
		return time.Time{}, nil, err
	}
	st := ro.Status
	done := b.await(rolledBack(ro.Name, st.StableRevision, st.CanaryRevision, reactionReplicas))
	a := &vigilv1.Approval{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("%s-abort-%d", ro.Name, n)},
		Spec: vigilv1.ApprovalSpec{RolloutRef: vigilv1.LocalObjectReference{Name: ro.Name}, Revision: st.CanaryRevision,
			Step: ptr.Deref(st.CurrentStepIndex, 0), Decision: vigilv1.ApprovalReject, Scope: vigilv1.ApprovalScopeStep, Reason: "bench"},
	}
	mark()
	at := time.Now()
	return at, done, b.c.Create(ctx, a)
}

// failAnalysis lets release n reach its analysis, which fails; the
// reaction counts from the watch's receipt of the Failed verdict.
func (b *bench) failAnalysis(ctx context.Context, ro *vigilv1.Rollout, n int, mark func()) (time.Time, chan time.Time, error) {
	stable := ro.Status.StableRevision
	b.mu.Lock()
	old := map[string]bool{}
	for _, rs := range b.sets {
		old[rs.Labels[vigilv1.LabelPodTemplateHash]] = true
	}
	b.mu.Unlock()
	// One wait, in two parts: the Failed verdict of the new revision's
	// run, then its rollback. Its variables are written under b.mu, and
	// read once done has been told.
	var (
		canary   string
		failedAt time.Time
	)
	done := b.await(func(b *bench, obj client.Object, at time.Time) bool {
		if canary == "" {
			if run, ok := obj.(*vigilv1.AnalysisRun); ok && run.Labels[vigilv1.LabelRollout] == ro.Name &&
				!old[run.Spec.Revision] && run.Status.Verdict == vigilv1.AnalysisFailed {
				canary, failedAt = run.Spec.Revision, at
			}
			return false
		}
		return rolledBack(ro.Name, stable, canary, reactionReplicas)(b, obj, at)
	})
	if err := b.release(ctx, ro, n); err != nil {
		return time.Time{}, nil, err
	}
	// The window for conflicts begins once the controller has stored the
	// new canary: a status patch racing the release's own spec write is
	// the release's, not the rollback's.
	if err := b.until(ctx, ro, time.Minute, "its new canary stored", func(ro *vigilv1.Rollout) bool {
		return ro.Status.ObservedGeneration == ro.Generation && ro.Status.CanaryRevision != "" && !old[ro.Status.CanaryRevision]
	}); err != nil {
		return time.Time{}, nil, err
	}
	mark()
	select {
	case end := <-done:
		out := make(chan time.Time, 1)
		out <- end
		return failedAt, out, nil
	case <-time.After(2 * time.Minute):
		return time.Time{}, nil, fmt.Errorf("no Failed verdict and rollback within 2 minutes")
	}
}

// percentiles are the median, 99th percentile (nearest rank) and maximum.
func percentiles(d []time.Duration) (p50, p99, most time.Duration) {
	s := slices.Clone(d)
	slices.Sort(s)
	rank := func(p float64) time.Duration {
		i := int(float64(len(s))*p+0.999999) - 1
		return s[max(0, min(i, len(s)-1))].Round(time.Millisecond)
	}
	return rank(0.5), rank(0.99), s[len(s)-1].Round(time.Millisecond)
}

// usage is the controller's CPU seconds and RSS from /proc.
type usage struct {
	cpu float64
	rss int64 // bytes
}

func (b *bench) usage() (usage, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", b.pid))
	if err != nil {
		return usage{}, err
	}
	// Fields after the command's closing parenthesis: utime and stime
	// are the 12th and 13th of them, in clock ticks (100 a second).
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	u := usage{cpu: (ut + st) / 100}
	file, err := os.Open(fmt.Sprintf("/proc/%d/status", b.pid))
	if err != nil {
		return usage{}, err
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			u.rss = kb * 1024
		}
	}
	return u, sc.Err()
}

// requests are the requests the controller's clients sent, by method,
// and its counters of writes by kind (series named by their labels).
func (b *bench) requests(ctx context.Context) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.w.ControllerMetrics, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	families, err := parseMetrics(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	if f := families["rest_client_requests_total"]; f != nil {
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if l.GetName() == "method" {
					out[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	for _, name := range []string{"vigil_rollout_api_writes_total", "vigil_evidence_entries_total", "vigil_status_patch_failures_total", "vigil_rollout_cache_behind_total", "vigil_status_patches_total"} {
		f := families[name]
		if f == nil {
			continue
		}
		for _, m := range f.Metric {
			var labels []string
			for _, l := range m.Label {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			out[name+"{"+strings.Join(labels, ",")+"}"] += m.GetCounter().GetValue()
		}
	}
	return out, nil
}

func parseMetrics(r io.Reader) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(r)
}
