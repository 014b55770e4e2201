package rollout

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	proof "github.com/vigil-dev/vigil/evidence"
)

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// errInjected is what a faulty transport returns instead of the answer.
var errInjected = fmt.Errorf("injected fault: %w", context.DeadlineExceeded)

func isWrite(r *http.Request) bool {
	return r.Method != http.MethodGet && r.Method != http.MethodHead
}

// violations sums vigil_invariant_violations_total over every invariant.
func violations() float64 {
	var sum float64
	for _, inv := range []string{invariantWeightsSum, invariantCanaryWeight, invariantStableCapacity, invariantGate, invariantSingleCanary} {
		sum += testutil.ToFloat64(invariantViolations.WithLabelValues(inv))
	}
	return sum
}

// approver plays the SRE: whenever the Rollout waits for an approval, it
// approves exactly that revision and step, under a name fixed by both, so
// asking twice makes no second Approval.
func approver(t *testing.T, ro *vigilv1.Rollout) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			cur := &vigilv1.Rollout{}
			if k8s.Get(ctx, client.ObjectKeyFromObject(ro), cur) != nil || cur.Status.PendingApproval == nil || cur.Status.Rollback != nil {
				continue
			}
			p := cur.Status.PendingApproval
			a := &vigilv1.Approval{
				ObjectMeta: metav1.ObjectMeta{Namespace: ro.Namespace, Name: fmt.Sprintf("approve-%s-%d", p.Revision, p.Step)},
				Spec:       vigilv1.ApprovalSpec{RolloutRef: vigilv1.LocalObjectReference{Name: ro.Name}, Revision: p.Revision, Step: p.Step, Decision: vigilv1.ApprovalApprove},
			}
			_ = k8s.Create(ctx, a) // AlreadyExists: it was made on an earlier tick
		}
	}()
}

// history records every version of a Rollout's step and phase, and every
// consumedAt of its Approvals, as the API server stored them.
type history struct {
	mu       sync.Mutex
	steps    map[string][]int32 // step indexes per canary revision
	phases   []vigilv1.RolloutPhase
	consumed map[string][]metav1.Time // consumedAt values per Approval
}

func watchHistory(t *testing.T, ro *vigilv1.Rollout) *history {
	h := &history{steps: map[string][]int32{}, consumed: map[string][]metav1.Time{}}
	watchNamespace(t, ro.Namespace, &h.mu, func(o client.Object) {
		switch o := o.(type) {
		case *vigilv1.Rollout:
			h.rollout(ro.Name, o)
		case *vigilv1.Approval:
			if c := o.Status.ConsumedAt; c != nil && !slices.ContainsFunc(h.consumed[o.Name], func(t metav1.Time) bool { return t.Equal(c) }) {
				h.consumed[o.Name] = append(h.consumed[o.Name], *c)
			}
		}
	}, &vigilv1.RolloutList{}, &vigilv1.ApprovalList{})
	return h
}

// rollout records one stored version of the Rollout.
func (h *history) rollout(name string, cur *vigilv1.Rollout) {
	if cur.Name != name {
		return
	}
	st := cur.Status
	if steps := h.steps[st.CanaryRevision]; st.CanaryRevision != "" && st.CurrentStepIndex != nil &&
		(len(steps) == 0 || steps[len(steps)-1] != *st.CurrentStepIndex) {
		h.steps[st.CanaryRevision] = append(steps, *st.CurrentStepIndex)
	}
	if len(h.phases) == 0 || h.phases[len(h.phases)-1] != st.Phase {
		h.phases = append(h.phases, st.Phase)
	}
}

// canaryRun rolls ro out to image and checks the end state every run must
// reach, whatever failed on the way.
func canaryRun(t *testing.T, g Gomega, ro *vigilv1.Rollout, image string, timeout time.Duration, during func(done func() bool)) string {
	t.Helper()
	oldStable := get(g, ro).Status.StableRevision
	newImage(t, ro, image)
	finished := func() bool {
		cur := &vigilv1.Rollout{}
		if k8s.Get(context.Background(), client.ObjectKeyFromObject(ro), cur) != nil {
			return false
		}
		return cur.Status.Phase == vigilv1.RolloutPhasePromoted && cur.Status.StableRevision != oldStable &&
			readyCondition(cur) == metav1.ConditionTrue && cur.Status.ObservedGeneration == cur.Generation
	}
	if during != nil {
		during(finished)
	}
	final := waitPromoted(t, ro, timeout)
	rev := final.Status.StableRevision
	g.Expect(rev).NotTo(Equal(oldStable))
	g.Eventually(func(g Gomega) {
		sets := replicaSets(g, ro)
		checksum := sets[rev].Annotations[vigilv1.AnnotationTemplateChecksum]
		same := 0
		for _, rs := range sets {
			if rs.Annotations[vigilv1.AnnotationTemplateChecksum] == checksum {
				same++
			}
			if revisionOf(rs) != rev {
				g.Expect(rs.Spec.Replicas).To(HaveValue(BeZero()), "old ReplicaSet %s is scaled down", rs.Name)
			}
		}
		g.Expect(same).To(Equal(1), "exactly one ReplicaSet runs the new template")
		g.Expect(sets[rev].Spec.Replicas).To(HaveValue(Equal(*ro.Spec.Replicas)))
		g.Expect(canaryWeight(g, ro)).To(BeZero())
		g.Expect(serviceRevision(g, ro.Namespace, ro.Name+"-stable")).To(Equal(rev))
		g.Expect(serviceRevision(g, ro.Namespace, ro.Name+"-canary")).To(Equal(rev))
		cur := get(g, ro)
		g.Expect(cur.Status.UsedApprovals).To(BeEmpty())
		g.Expect(cur.Status.CanaryWeight).To(BeZero())
		g.Expect(cur.Status.StableWeight).To(Equal(int32(100)))
		g.Expect(approvalConsumed(g, ro.Namespace, fmt.Sprintf("approve-%s-2", rev))).To(BeTrue())
	}, 20*time.Second, 20*time.Millisecond).Should(Succeed())
	return rev
}

// checkHistory checks that every canary went through its steps one by one:
// none skipped, none repeated, never back; that no rollback happened; and
// that each approval was consumed exactly once.
func checkHistory(g Gomega, h *history, revisions []string, steps int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	want := make([]int32, steps+1)
	for i := range want {
		want[i] = int32(i)
	}
	for _, rev := range revisions {
		g.Expect(h.steps[rev]).To(Equal(want), "revision %s passed its steps in order, each once", rev)
	}
	g.Expect(h.phases).NotTo(ContainElement(vigilv1.RolloutPhaseRollingBack))
	for name, times := range h.consumed {
		g.Expect(times).To(HaveLen(1), "Approval %s was consumed once", name)
	}
}

func TestCrashAtRandomPointsEndsInTheSameState(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	kubelet(t, ns, nil) // stands in for the kubelet: every ReplicaSet's pods turn ready
	ro := newRollout(ns, "crashy", 4, "crashy:v1", acceptanceSteps()...)
	ro.Spec.ReleaseRecordLimit = ptr.To(int32(200)) // every run's record is checked
	gatewayObjects(t, ro)
	g.Expect(k8s.Create(context.Background(), ro)).To(Succeed())
	stop := startManagerIn(t, ns, nil)
	waitPromoted(t, ro, 20*time.Second)
	stop()
	approver(t, ro)
	h := watchHistory(t, ro)
	before := violations()

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	crashes := 0
	var revisions []string
	for run := 2; crashes < 30 || run <= 3; run++ {
		var last func()
		rev := canaryRun(t, g, ro, fmt.Sprintf("crashy:v%d", run), 60*time.Second, func(finished func() bool) {
			for !finished() {
				if crashAtAWrite(t, ns, rng, finished) {
					crashes++
				}
			}
			last = startManagerIn(t, ns, nil) // the last restart sees the run to its end
		})
		// and stops with it: each run's crashes hit the one controller
		// that runs, as leader election makes it in a cluster.
		last()
		revisions = append(revisions, rev)
	}
	t.Logf("%d crashes over %d canary runs", crashes, len(revisions))
	g.Expect(crashes).To(BeNumerically(">=", 30))
	checkHistory(g, h, revisions, len(acceptanceSteps()))
	g.Expect(violations()).To(Equal(before), "no invariant was violated")
	checkEvidence(g, ro, revisions)
}

// crashAtAWrite runs a manager (watching ns) that crashes at its n-th write (n random,
// 1 to 4): sometimes before the write reaches the API server, sometimes
// after it was stored but before the controller hears back. It reports
// whether the crash came before the canary run finished.
func crashAtAWrite(t *testing.T, ns string, rng *rand.Rand, finished func() bool) bool {
	n, afterWrite := int64(1+rng.IntN(4)), rng.IntN(2) == 0
	crashed := make(chan struct{})
	var writes atomic.Int64
	var once sync.Once
	stopNow := startManagerIn(t, ns, func(rt http.RoundTripper) http.RoundTripper {
		return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
			if !isWrite(r) || writes.Add(1) != n {
				return rt.RoundTrip(r)
			}
			if afterWrite {
				if resp, err := rt.RoundTrip(r); err == nil {
					resp.Body.Close()
				}
			}
			once.Do(func() { close(crashed) })
			return nil, errInjected
		})
	})
	NewWithT(t).Eventually(func() bool {
		select {
		case <-crashed:
			return true
		default:
			return finished()
		}
	}, 30*time.Second, 10*time.Millisecond).Should(BeTrue())
	stopNow()
	select {
	case <-crashed:
		return true
	default:
		return false
	}
}

func TestAmbiguousWritesStillConverge(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	kubelet(t, ns, nil) // stands in for the kubelet: every ReplicaSet's pods turn ready
	// Two Rollouts released at once, so that the manager's workers (8 by
	// default) reconcile them side by side.
	ro := newRollout(ns, "flaky", 4, "flaky:v1", acceptanceSteps()...)
	other := newRollout(ns, "flaky-b", 2, "flaky-b:v1", acceptanceSteps()...)
	var hs []*history
	for _, r := range []*vigilv1.Rollout{ro, other} {
		gatewayObjects(t, r)
		g.Expect(k8s.Create(context.Background(), r)).To(Succeed())
		approver(t, r)
		hs = append(hs, watchHistory(t, r))
	}
	before := violations()

	// About one write in five is applied by the API server, but the
	// controller is told it timed out.
	rng := rand.New(rand.NewPCG(42, 7))
	var mu sync.Mutex
	var writes, lost int
	startManagerIn(t, ns, func(rt http.RoundTripper) http.RoundTripper {
		return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
			if !isWrite(r) {
				return rt.RoundTrip(r)
			}
			resp, err := rt.RoundTrip(r)
			mu.Lock()
			defer mu.Unlock()
			writes++
			if err != nil || rng.IntN(5) != 0 {
				return resp, err
			}
			lost++
			resp.Body.Close()
			return nil, errInjected
		})
	})
	waitPromoted(t, ro, 30*time.Second)
	waitPromoted(t, other, 30*time.Second)
	var revisions, others []string
	for run := 2; run <= 4; run++ {
		revisions = append(revisions, canaryRun(t, g, ro, fmt.Sprintf("flaky:v%d", run), 60*time.Second, func(func() bool) {
			others = append(others, canaryRun(t, g, other, fmt.Sprintf("flaky-b:v%d", run), 60*time.Second, nil))
		}))
	}
	mu.Lock()
	t.Logf("%d of %d writes answered with a timeout after they were applied", lost, writes)
	g.Expect(lost).To(BeNumerically(">=", writes/10), "the transport lost a good share of the answers")
	mu.Unlock()
	checkHistory(g, hs[0], revisions, len(acceptanceSteps()))
	checkHistory(g, hs[1], others, len(acceptanceSteps()))
	g.Expect(violations()).To(Equal(before), "no invariant was violated")
	g.Expect(testutil.ToFloat64(reconcileErrors.WithLabelValues("WriteUnknown"))).To(BeNumerically(">", 0), "lost answers were handled as Unknown")
	checkEvidence(g, ro, revisions)
	checkEvidence(g, other, others)
}

// TestCrashAroundRollbacksLeavesOneRecordOfEach rejects canaries while the
// manager crashes at random writes, record writes included: each rejected
// revision is rolled back, and its record holds the Reject, the rollback
// started and completed, each once, in a chain that verifies.
func TestCrashAroundRollbacksLeavesOneRecordOfEach(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	kubelet(t, ns, nil)
	ro := newRollout(ns, "rejected", 2, "rejected:v1", approvalStep(), weightStep(50))
	ro.Spec.Rollback = &vigilv1.RollbackPolicy{AbortScaleDownDelaySeconds: ptr.To(int32(0))}
	g.Expect(k8s.Create(context.Background(), ro)).To(Succeed())
	stop := startManagerIn(t, ns, nil)
	waitPromoted(t, ro, 20*time.Second)
	stop()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	crashes := 0
	var rejected []string
	for run := 2; crashes < 15 || run <= 3; run++ {
		newImage(t, ro, fmt.Sprintf("rejected:v%d", run))
		var rev string
		rolledBack := func() bool {
			cur := &vigilv1.Rollout{}
			if k8s.Get(context.Background(), client.ObjectKeyFromObject(ro), cur) != nil {
				return false
			}
			if p := cur.Status.PendingApproval; p != nil && p.Step == 0 && p.Effect == vigilv1.EffectPassStep && rev == "" {
				rev = p.Revision
				approve(t, ro, "reject-"+rev, rev, 0, vigilv1.ApprovalReject)
			}
			return rev != "" && cur.Status.Phase == vigilv1.RolloutPhaseRolledBack && cur.Status.CanaryRevision == rev
		}
		for !rolledBack() {
			if crashAtAWrite(t, ns, rng, rolledBack) {
				crashes++
			}
		}
		rejected = append(rejected, rev)
	}
	startManagerIn(t, ns, nil)
	t.Logf("%d crashes over %d rejected canaries", crashes, len(rejected))
	g.Expect(crashes).To(BeNumerically(">=", 15))
	g.Eventually(func(g Gomega) {
		cur := get(g, ro)
		recs := records(g, ro)
		rep := proof.Verify(ns, ro.Name, cur.Status.Evidence, cur.Status.EvidenceCheckpoint, recs)
		g.Expect(rep.Broken).To(BeNil())
		for _, rev := range rejected {
			i := slices.IndexFunc(recs, func(r vigilv1.ReleaseRecord) bool { return r.Spec.Revision == rev })
			g.Expect(i).NotTo(BeNumerically("<", 0), "revision %s has a record", rev)
			got := entries(recs[i])
			for _, once := range []string{"Observed", "Approval Reject by ", "Rollback Started", "Rollback Completed"} {
				n := len(slices.DeleteFunc(slices.Clone(got), func(e string) bool { return !strings.HasPrefix(e, once) }))
				g.Expect(n).To(Equal(1), "revision %s has one %q entry: %v", rev, once, got)
			}
		}
	}, 20*time.Second, 50*time.Millisecond).Should(Succeed())
}
