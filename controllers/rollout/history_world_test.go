package rollout

import (
	"fmt"
	"maps"
	"slices"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"pgregory.net/rapid"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	proof "github.com/vigil-dev/vigil/evidence"
)

// What happens to a Rollout in the generated histories (history_test.go):
// each is an action of the model cluster, followed there by the reconciles
// it triggers.

// kubelet moves one ReplicaSet's pods: some turn ready or unready, and its
// status may or may not have caught up with its spec.
func (c *cluster) kubelet(t *rapid.T) {
	if len(c.sets) == 0 {
		return
	}
	rs := c.sets[rapid.SampledFrom(slices.Sorted(maps.Keys(c.sets))).Draw(t, "replicaSet")]
	spec := specReplicas(rs)
	ready := rapid.Int32Range(0, max(spec, rs.Status.ReadyReplicas)).Draw(t, "ready")
	if rapid.Bool().Draw(t, "caughtUp") {
		ready = min(ready, spec)
		rs.Status.ObservedGeneration = rs.Generation
	}
	rs.Status.Replicas, rs.Status.ReadyReplicas, rs.Status.AvailableReplicas = max(spec, ready), ready, ready
}

// allReady makes every pod wanted ready.
func (c *cluster) allReady() {
	for _, rs := range c.sets {
		n := specReplicas(rs)
		rs.Status = appsv1.ReplicaSetStatus{Replicas: n, ReadyReplicas: n, AvailableReplicas: n, ObservedGeneration: rs.Generation}
	}
}

func (c *cluster) tick(t *rapid.T) {
	c.now = c.now.Add(rapid.SampledFrom([]time.Duration{time.Second, 5 * time.Second, 30 * time.Second, 2 * time.Minute, 11 * time.Minute}).Draw(t, "tick"))
}

// edit changes the template: a new image, or one used before.
func (c *cluster) edit(t *rapid.T) {
	if c.ro.DeletionTimestamp != nil {
		return
	}
	image := fmt.Sprintf("app:v%d", len(c.images))
	if rapid.IntRange(0, 3).Draw(t, "revert") == 0 {
		image = rapid.SampledFrom(c.images).Draw(t, "image")
	} else {
		c.images = append(c.images, image)
	}
	c.ro.Spec.Template.Spec.Containers[0].Image = image
	c.ro.Generation++
}

func (c *cluster) scale(t *rapid.T) {
	if c.ro.DeletionTimestamp != nil {
		return
	}
	c.ro.Spec.Replicas = ptr.To(rapid.Int32Range(0, 6).Draw(t, "newReplicas"))
	c.ro.Generation++
}

func (c *cluster) togglePause(*rapid.T) {
	if c.ro.DeletionTimestamp != nil {
		return
	}
	c.ro.Spec.Paused = !c.ro.Spec.Paused
	c.ro.Generation++
}

// decision makes an Approval or a Reject: of what the Rollout waits for,
// or of any step of its canary.
func (c *cluster) decision(t *rapid.T, d vigilv1.ApprovalDecision) {
	st := c.ro.Status
	rev, step := st.CanaryRevision, rapid.Int32Range(0, int32(len(c.ro.Spec.Strategy.Canary.Steps))).Draw(t, "approvalStep")
	if p := st.PendingApproval; p != nil && rapid.Bool().Draw(t, "ofThePendingStep") {
		rev, step = p.Revision, p.Step
	}
	if rev == "" {
		return
	}
	scope := vigilv1.ApprovalScopeStep
	if rapid.IntRange(0, 4).Draw(t, "full") == 0 {
		scope = vigilv1.ApprovalScopeFull
	}
	c.approve(rapid.SampledFrom([]string{"alice", "bob"}).Draw(t, "approver"), rev, step, d, scope)
}

// approve is what creating an Approval does with Vigil's admission webhook
// installed: one that names what the Rollout waits for is sealed for that
// wait. Any other the webhook refuses; the model keeps it unsealed, as if
// made while the webhook was not installed, and it must count for nothing.
func (c *cluster) approve(user, rev string, step int32, d vigilv1.ApprovalDecision, scope vigilv1.ApprovalScope) {
	c.made++
	a := vigilv1.Approval{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprintf("a%d", c.made), UID: types.UID(fmt.Sprintf("a%d", c.made)), CreationTimestamp: metav1.NewTime(c.now)},
		Spec: vigilv1.ApprovalSpec{RolloutRef: vigilv1.LocalObjectReference{Name: "app"}, Revision: rev, Step: step, Decision: d, Scope: scope,
			Reason: "generated"},
	}
	if w, why := proof.WaitOf(c.ro, d); why == "" && w.Names(a.Spec) {
		sealAs(&a, user, c.now, w.Since)
	}
	c.approvals = append(c.approvals, a)
}

// verdict gives an AnalysisRun a verdict, or a measurement while it runs.
func (c *cluster) verdict(t *rapid.T) {
	if len(c.runs) == 0 {
		return
	}
	run := c.runs[rapid.SampledFrom(slices.Sorted(maps.Keys(c.runs))).Draw(t, "run")]
	v := rapid.SampledFrom([]vigilv1.AnalysisVerdict{vigilv1.AnalysisRunning, vigilv1.AnalysisSuccessful, vigilv1.AnalysisFailed,
		vigilv1.AnalysisInconclusive, vigilv1.AnalysisUnknown}).Draw(t, "verdict")
	setVerdict(run, v, rapid.Bool().Draw(t, "lastUnknown"))
}

// setVerdict gives run a verdict and one metric whose counts agree with it.
func setVerdict(run *vigilv1.AnalysisRun, v vigilv1.AnalysisVerdict, lastUnknown bool) {
	m := vigilv1.MetricResult{Name: "error-rate", Verdict: v}
	switch v {
	case vigilv1.AnalysisFailed:
		m.Failed = 1
	case vigilv1.AnalysisInconclusive:
		m.Inconclusive = 1
	case vigilv1.AnalysisUnknown:
		m.Unknown, m.ConsecutiveUnknown = 3, 3
	default:
		m.Successful = 1
		if lastUnknown && v == vigilv1.AnalysisRunning {
			m.Unknown, m.ConsecutiveUnknown = 1, 1
		}
	}
	run.Status.Verdict, run.Status.MetricResults = v, []vigilv1.MetricResult{m}
}

// delete deletes the Rollout in the foreground: it stays, with a deletion
// timestamp, until its finalizers are gone (the model runs no garbage
// collector, so foregroundDeletion stays).
func (c *cluster) delete(t *rapid.T) {
	if c.ro.DeletionTimestamp != nil || rapid.IntRange(0, 7).Draw(t, "deleteNow") != 0 {
		return // most histories should see their Rollout live on
	}
	c.ro.DeletionTimestamp = ptr.To(metav1.NewTime(c.now))
	if c.seen != nil {
		c.seen.deletions++
	}
	c.ro.Finalizers = append(c.ro.Finalizers, metav1.FinalizerDeleteDependents)
}
