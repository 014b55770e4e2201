package e2e

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/gitops"
	"github.com/vigil-dev/vigil/hack/demo/world"
)

// TestTheStory plays the demo's story and then its failures, in order:
// each chapter starts from where the one before left the Rollout.
func TestTheStory(t *testing.T) {
	chapters := []struct {
		name string
		play func(*testing.T)
	}{
		{"v1 becomes stable, pinned by digest", v1BecomesStable},
		{"v2 is verified, analysed, approved and promoted", v2IsPromoted},
		{"v3 fails analysis and is rolled back", v3IsRolledBack},
		{"v4 is unsigned and gets no pod", v4IsBlocked},
		{"Prometheus dies mid-analysis: pause, never promote, resume after recovery and approval", prometheusDies},
		{"the controller dies mid-rollout and finishes after a restart", controllerDies},
		{"a rewritten history on the watched branch is refused with a clear condition", historyRewritten},
	}
	for _, c := range chapters {
		if !t.Run(c.name, c.play) {
			t.Fatalf("chapter %q failed; the later ones start from its end and are not played", c.name)
		}
	}
}

var ctx = context.Background()

// stable is the revision serving production, as the chapters leave it.
var stable string

func release(t *testing.T, v world.Version) *world.Release {
	t.Helper()
	rel, err := w.Release(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	return rel
}

func watch(t *testing.T, what string, done func(*vigilv1.Rollout) bool) *vigilv1.Rollout {
	t.Helper()
	ro, err := w.Watch(ctx, within, what, done)
	if err != nil {
		t.Fatal(err)
	}
	return ro
}

// replicaSets are the Rollout's ReplicaSets of revision.
func replicaSets(g Gomega, revision string) []appsv1.ReplicaSet {
	var rss appsv1.ReplicaSetList
	g.Expect(w.Client.List(ctx, &rss, client.InNamespace(w.Namespace), client.MatchingLabels{vigilv1.LabelPodTemplateHash: revision})).To(Succeed())
	return rss.Items
}

func rollout(g Gomega) *vigilv1.Rollout {
	ro, err := w.Rollout(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	return ro
}

// approveUntilPromoted waits until rel's canary waits at the last step,
// the approval step, checks it is not stable yet, approves it and waits
// for the promotion.
func approveUntilPromoted(t *testing.T, rel *world.Release) *vigilv1.Rollout {
	g := NewWithT(t)
	ro := watch(t, rel.Name+" to wait for approval at its last step", func(ro *vigilv1.Rollout) bool {
		return world.WaitsForApproval(rel)(ro) && ro.Status.PendingApproval.Step == int32(len(ro.Spec.Strategy.Canary.Steps)-1)
	})
	g.Expect(ro.Status.StableRevision).To(Equal(stable), "not promoted before the approval")
	_, err := w.Approve(ctx, ro, "e2e")
	g.Expect(err).NotTo(HaveOccurred())
	ro = watch(t, rel.Name+" to be promoted", world.Promoted(rel))
	stable = ro.Status.StableRevision
	return ro
}

func v1BecomesStable(t *testing.T) {
	g := NewWithT(t)
	v1 := release(t, world.Version{Name: "v1"})
	ro := watch(t, "v1 to be stable", world.Promoted(v1))
	stable = ro.Status.StableRevision
	rss := replicaSets(g, stable)
	g.Expect(rss).To(HaveLen(1))
	g.Expect(rss[0].Spec.Template.Spec.Containers[0].Image).To(Equal(w.Registry+"/demo/web@"+v1.Digest), "the pod runs the digest, never the tag")
	g.Expect(rss[0].Status.ReadyReplicas).To(BeEquivalentTo(4))
}

func v2IsPromoted(t *testing.T) {
	g := NewWithT(t)
	v2 := release(t, world.Version{Name: "v2"})
	ro := watch(t, "v2 to wait for approval", world.WaitsForApproval(v2))
	g.Expect(ro.Status.Verification).NotTo(BeNil())
	g.Expect(ro.Status.Verification.Result).To(Equal(vigilv1.VerificationPassed))
	g.Expect(ro.Status.Verification.Images).To(ConsistOf(And(
		HaveField("Pinned", w.Registry+"/demo/web@"+v2.Digest),
		HaveField("Signer", "key demo-release-key"),
		HaveField("Builder", world.Builder),
		HaveField("SourceCommit", v2.Source),
	)))
	g.Expect(ro.Status.PendingApproval.Step).To(BeEquivalentTo(4), "both analysis steps passed before the approval step")
	g.Expect(ro.Status.Analysis.Verdict).To(Equal(vigilv1.AnalysisSuccessful))
	g.Consistently(func(g Gomega) {
		g.Expect(rollout(g).Status.StableRevision).To(Equal(stable))
	}, 2*time.Second, 200*time.Millisecond).Should(Succeed(), "an approval step holds without an Approval")
	ro = approveUntilPromoted(t, v2)

	// The evidence of v2, as an SRE reads it after the fact.
	out := evidence(t, g, "Promotion Completed", "show", "web", "--revision", stable)
	g.Expect(out).To(ContainSubstring("commit "+ro.Annotations[gitops.RevisionAnnotation]), "the commit GitSync applied")
	g.Expect(out).To(ContainSubstring("signed by key demo-release-key, built by "+world.Builder+" from "), "signer and builder")
	g.Expect(out).To(ContainSubstring("@"+v2.Source), "the source commit of the provenance")
	g.Expect(strings.Count(out, "Analysis Successful")).To(Equal(2), "both analysis verdicts:\n%s", out)
	g.Expect(out).To(MatchRegexp(`Approval Approve\s+by vigil-dev-admin `), "the approver")
}

// evidence runs kubectl vigil evidence with args until it succeeds and
// prints until (the last entry is written a reconcile after what the
// chapters watch for).
func evidence(t *testing.T, g Gomega, until string, args ...string) string {
	t.Helper()
	var out string
	g.Eventually(func(g Gomega) {
		var err error
		out, err = w.Vigil(ctx, append([]string{"evidence"}, args...)...)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(out).To(ContainSubstring(until))
	}, 20*time.Second, 200*time.Millisecond).Should(Succeed())
	t.Logf("kubectl vigil evidence %s:\n%s", strings.Join(args, " "), out)
	return out
}

func v3IsRolledBack(t *testing.T) {
	g := NewWithT(t)
	before := stable
	v3 := release(t, world.Version{Name: "v3", ErrorRate: 0.08})
	var canary string
	ro := watch(t, "v3 to be rolled back", func(ro *vigilv1.Rollout) bool {
		if world.Applied(v3)(ro) && ro.Status.CanaryRevision != "" {
			canary = ro.Status.CanaryRevision
		}
		g.Expect(ro.Status.StableRevision).To(Equal(before), "a bad build is never promoted")
		return world.RolledBack(v3)(ro)
	})
	g.Expect(ro.Status.Rollback).NotTo(BeNil())
	g.Expect(ro.Status.Rollback.Trigger).To(Equal(vigilv1.RollbackTrigger("AnalysisFailed")))
	g.Expect(ro.Status.Analysis.Measurements).To(ContainElement(And(
		HaveField("Metric", "error-rate"), HaveField("Outcome", vigilv1.MeasurementOutcome("Failed")),
		HaveField("Value", WithTransform(func(v string) (float64, error) { return strconv.ParseFloat(v, 64) }, BeNumerically("~", 0.08, 0.005))))),
		"the deciding measurement is v3's 8% error rate")
	g.Expect(ro.Status.Conditions.Conditions).To(ContainElement(And(
		HaveField("Type", vigilv1.ConditionStalled), HaveField("Reason", vigilv1.ReasonRolledBack))))
	g.Expect(canary).NotTo(BeEmpty())
	g.Eventually(func(g Gomega) {
		for _, rs := range replicaSets(g, canary) {
			g.Expect(*rs.Spec.Replicas).To(BeZero(), "the bad canary is scaled to 0")
		}
		rss := replicaSets(g, before)
		g.Expect(rss).To(HaveLen(1))
		g.Expect(rss[0].Status.ReadyReplicas).To(BeEquivalentTo(4), "stable serves everything again")
	}, time.Minute, 200*time.Millisecond).Should(Succeed())
	out := evidence(t, g, "Rollback Completed", "show", "web", "--revision", canary)
	g.Expect(out).To(MatchRegexp(`Analysis Failed\s+.*error-rate=0\.0[78]\d* Failed`), "the failing measurement")
	g.Expect(out).To(MatchRegexp(`Rollback Started\s+.*trigger AnalysisFailed`), "the rollback trigger")
	times, err := w.EventTimes(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	t.Logf("rollback: %s from the failed measurement to RolledBack (RollingBack → RolledBack %s)",
		times[vigilv1.ReasonRolledBack].Sub(times[vigilv1.ReasonAnalysisFailed]), times[vigilv1.ReasonRolledBack].Sub(times[vigilv1.ReasonRollingBack]))
}

func v4IsBlocked(t *testing.T) {
	g := NewWithT(t)
	v4 := release(t, world.Version{Name: "v4", Unsigned: true})
	ro := watch(t, "v4 to be blocked", world.Blocked(v4))
	cond := meta.FindStatusCondition(ro.Status.Conditions.Conditions, vigilv1.ConditionVerified)
	g.Expect(cond).NotTo(BeNil())
	g.Expect(cond.Status).To(Equal(metav1.ConditionFalse))
	g.Expect(cond.Reason).To(Equal("Unsigned"))
	g.Expect(cond.Message).To(ContainSubstring("no signature of " + v4.Digest))
	revision := ro.Status.Verification.Revision
	g.Consistently(func(g Gomega) {
		g.Expect(replicaSets(g, revision)).To(BeEmpty(), "no ReplicaSet, so no pod, for an unsigned image")
		g.Expect(rollout(g).Status.StableRevision).To(Equal(stable))
	}, 3*time.Second, 200*time.Millisecond).Should(Succeed())
	out := evidence(t, g, "Verified Failed", "show", "web", "--revision", revision)
	g.Expect(out).To(MatchRegexp(`Verified Failed\s+.*Unsigned under policy`), "the refusal reason")
	evidence(t, g, "OK: ", "verify", "web") // the whole chain verifies
}

func prometheusDies(t *testing.T) {
	g := NewWithT(t)
	v5 := release(t, world.Version{Name: "v5"})
	watch(t, "v5's first analysis to run", func(ro *vigilv1.Rollout) bool {
		a := ro.Status.Analysis
		return world.Applied(v5)(ro) && a != nil && a.Revision == ro.Status.CanaryRevision && running(a)
	})
	g.Expect(w.Procs.Kill("prometheus")).To(Succeed())
	ro := watch(t, "v5 to pause on Unknown", func(ro *vigilv1.Rollout) bool {
		g.Expect(ro.Status.StableRevision).To(Equal(stable), "never promoted on Unknown")
		return ro.Status.Phase == vigilv1.RolloutPhasePaused && ro.Status.PendingApproval != nil
	})
	g.Expect(ro.Status.Analysis.Verdict).To(Equal(vigilv1.AnalysisUnknown))
	paused := *ro.Status.CurrentStepIndex
	g.Expect(w.StartPrometheus()).To(Succeed())
	g.Expect(w.WaitForTraffic(ctx, ro.Status.CanaryRevision, time.Minute)).To(Succeed(), "Prometheus scrapes again")
	g.Consistently(func(g Gomega) {
		ro := rollout(g)
		g.Expect(ro.Status.Phase).To(Equal(vigilv1.RolloutPhasePaused), "recovery alone does not resume: a person decides")
		g.Expect(*ro.Status.CurrentStepIndex).To(Equal(paused))
	}, 3*time.Second, 200*time.Millisecond).Should(Succeed())
	_, err := w.Approve(ctx, ro, "Prometheus is back")
	g.Expect(err).NotTo(HaveOccurred())
	ro = approveUntilPromoted(t, v5)
	g.Expect(ro.Status.Analysis.Verdict).To(Equal(vigilv1.AnalysisSuccessful))
}

func controllerDies(t *testing.T) {
	g := NewWithT(t)
	v6 := release(t, world.Version{Name: "v6"})
	watch(t, "v6's second analysis to run", func(ro *vigilv1.Rollout) bool {
		a := ro.Status.Analysis
		return world.Applied(v6)(ro) && a != nil && a.Step != nil && *a.Step == 3 && a.Revision == ro.Status.CanaryRevision && running(a)
	})
	g.Expect(w.Procs.Kill("vigil-controller")).To(Succeed())
	g.Expect(w.StartController(ctx)).To(Succeed())
	ro := approveUntilPromoted(t, v6)
	var runs vigilv1.AnalysisRunList
	g.Expect(w.Client.List(ctx, &runs, client.InNamespace(w.Namespace))).To(Succeed())
	var ofV6 []string
	for _, r := range runs.Items {
		if strings.HasPrefix(r.Name, "web-"+ro.Status.StableRevision+"-") {
			ofV6 = append(ofV6, r.Name)
		}
	}
	g.Expect(ofV6).To(ConsistOf("web-"+stable+"-step1-0", "web-"+stable+"-step3-0"), "the restarted controller adopted the running analysis instead of starting another")
	g.Expect(controllerMetric(g, "vigil_invariant_violations_total")).NotTo(ContainSubstring("} 1"), "no invariant was broken after the restart")
}

// controllerMetric returns the lines of the controller's metrics that start
// with name.
func controllerMetric(g Gomega, name string) string {
	resp, err := http.Get(w.ControllerMetrics)
	g.Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	g.Expect(err).NotTo(HaveOccurred())
	var lines []string
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, name) {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

func historyRewritten(t *testing.T) {
	g := NewWithT(t)
	gs := &vigilv1.GitSync{}
	g.Expect(w.Client.Get(ctx, client.ObjectKey{Namespace: w.Namespace, Name: "web"}, gs)).To(Succeed())
	applied := gs.Status.LastAppliedRevision
	head, err := w.RewriteHistory(ctx, "deploy: web v6 (amended)")
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(func(g Gomega) {
		g.Expect(w.Client.Get(ctx, client.ObjectKey{Namespace: w.Namespace, Name: "web"}, gs)).To(Succeed())
		ready := meta.FindStatusCondition(gs.Status.Conditions.Conditions, vigilv1.ConditionReady)
		g.Expect(ready).NotTo(BeNil())
		g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(ready.Reason).To(Equal(gitops.ReasonHistoryRewritten))
		g.Expect(ready.Message).To(And(ContainSubstring(applied), ContainSubstring(head)))
		g.Expect(meta.IsStatusConditionTrue(gs.Status.Conditions.Conditions, vigilv1.ConditionStalled)).To(BeTrue())
	}, within, 200*time.Millisecond).Should(Succeed())
	g.Expect(gs.Status.LastAppliedRevision).To(Equal(applied), "the rewritten commit is not applied")
	g.Expect(rollout(g).Status.StableRevision).To(Equal(stable))
}

// running: the analysis has not reached a verdict yet.
func running(a *vigilv1.RolloutAnalysis) bool {
	return a.Verdict == "" || a.Verdict == vigilv1.AnalysisRunning
}
