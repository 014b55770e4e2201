package rollout

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/traffic"
)

// stored is every version of a namespace's Rollouts, ReplicaSets,
// HTTPRoutes and Services that the API server stored, in etcd's order.
type stored struct {
	mu       sync.Mutex
	versions []client.Object
}

func recordStored(t *testing.T, ns string) *stored {
	t.Helper()
	st := &stored{}
	watchNamespace(t, ns, &st.mu, func(o client.Object) {
		st.versions = append(st.versions, o.DeepCopyObject().(client.Object))
	}, &vigilv1.RolloutList{}, &appsv1.ReplicaSetList{}, &gatewayv1.HTTPRouteList{}, &corev1.ServiceList{})
	return st
}

// world is the state of the namespace after one stored version.
type world struct {
	rollout  *vigilv1.Rollout
	sets     map[string]*appsv1.ReplicaSet // by revision
	route    *gatewayv1.HTTPRoute
	services map[string]*corev1.Service
}

// replay calls at with the world after each stored version, in the order
// etcd stored them (resourceVersions order writes across kinds).
func (st *stored) replay(at func(changed client.Object, w *world)) {
	st.mu.Lock()
	versions := slices.Clone(st.versions)
	st.mu.Unlock()
	rv := resourceVersion
	slices.SortStableFunc(versions, func(a, b client.Object) int { return int(rv(a) - rv(b)) })
	w := &world{sets: map[string]*appsv1.ReplicaSet{}, services: map[string]*corev1.Service{}}
	var last int64
	for _, o := range versions {
		if rv(o) == last {
			continue // the same version, seen by two watches
		}
		last = rv(o)
		switch o := o.(type) {
		case *vigilv1.Rollout:
			w.rollout = o
		case *appsv1.ReplicaSet:
			w.sets[revisionOf(o)] = o
		case *gatewayv1.HTTPRoute:
			w.route = o
		case *corev1.Service:
			w.services[o.Name] = o
		}
		at(o, w)
	}
}

// resourceVersion orders stored versions across kinds.
func resourceVersion(o client.Object) int64 {
	n, _ := strconv.ParseInt(o.GetResourceVersion(), 10, 64)
	return n
}

// v3ReplacesV2 changes the template to v3 while v2 waits at its approval
// step, records what the API server stores from then on, approves whatever
// v3 waits for, and returns the record and v3 once it is promoted.
func v3ReplacesV2(t *testing.T, ro *vigilv1.Rollout) (*stored, string) {
	t.Helper()
	st := recordStored(t, ro.Namespace)
	newImage(t, ro, ro.Name+":v3")
	approver(t, ro)
	return st, waitPromoted(t, ro, 60*time.Second).Status.StableRevision
}

// routeWeight is the canary weight a stored HTTPRoute sends.
func routeWeight(r *gatewayv1.HTTPRoute) int32 {
	if r == nil {
		return 0
	}
	view, err := traffic.NewRoute(r, r.Name+"-stable", r.Name+"-canary")
	if err != nil {
		return 0
	}
	w, _ := view.CanaryWeight()
	return w
}

// ready is how many of a stored ReplicaSet's pods are ready for its spec.
func ready(rs *appsv1.ReplicaSet) int32 {
	if rs == nil || rs.Status.ObservedGeneration < rs.Generation {
		return 0
	}
	return rs.Status.ReadyReplicas
}

// checkStepsPassedWithTheirPods replays what was stored and checks that
// every step revision passed had, at that instant, the ready canary pods
// its weight needs, traffic where the step wanted it (behind a router),
// and no other non-stable revision with pods. It returns how many steps of
// revision it saw pass.
func checkStepsPassedWithTheirPods(t *testing.T, st *stored, revision string, need func(weight int32) int32) int {
	t.Helper()
	passed := 0
	var prevStep int32 = -1
	var prevStable string
	st.replay(func(changed client.Object, w *world) {
		ro, ok := changed.(*vigilv1.Rollout)
		if !ok {
			return
		}
		s := ro.Status
		stable := prevStable // the stable revision while the step ran
		prevStable = s.StableRevision
		step := ptr.Deref(s.CurrentStepIndex, -1)
		if s.CanaryRevision != revision && !(s.StableRevision == revision && s.CanaryRevision == "") {
			prevStep = -1
			if s.CanaryRevision == revision {
				prevStep = step
			}
			return
		}
		if s.CanaryRevision == "" {
			step = int32(len(ro.Spec.Strategy.Canary.Steps)) + 1 // promoted
		}
		if prevStep >= 0 && step > prevStep {
			weight := weightAt(ro.Spec.Strategy.Canary.Steps, prevStep)
			canary := w.sets[revision]
			if got := ready(canary); got < need(weight) {
				t.Errorf("step %d of %s (%d%%) passed with %d ready canary pods; it needs %d", prevStep, revision, weight, got, need(weight))
			}
			if w.route != nil {
				if got := routeWeight(w.route); got != weight {
					t.Errorf("step %d of %s passed with the route at %d%%, not %d%%", prevStep, revision, got, weight)
				}
			}
			for rev, rs := range w.sets {
				if rev != revision && rev != stable && (specReplicas(rs) > 0 || rs.Status.ReadyReplicas > 0) {
					t.Errorf("step %d of %s passed while revision %s still had %d pods (%d ready)", prevStep, revision, rev, specReplicas(rs), rs.Status.ReadyReplicas)
				}
			}
			passed++
		}
		prevStep = step
	})
	return passed
}

// midCanaryRollout is the acceptance Rollout: 5 replicas, maxSurge 1,
// maxUnavailable 0, steps 20% / 40% / approval / 80%.
func midCanaryRollout(ns, name string) *vigilv1.Rollout {
	return newRollout(ns, name, 5, name+":v1", weightStep(20), weightStep(40), approvalStep(), weightStep(80))
}

// v2WaitingForApproval promotes v1, then waits until v2 waits at its
// approval step, and returns both revisions.
func v2WaitingForApproval(t *testing.T, g Gomega, ro *vigilv1.Rollout) (v1, v2 string) {
	t.Helper()
	g.Expect(k8s.Create(context.Background(), ro)).To(Succeed())
	v1 = waitPromoted(t, ro, 20*time.Second).Status.StableRevision
	newImage(t, ro, ro.Name+":v2")
	g.Eventually(func(g Gomega) {
		cur := get(g, ro)
		g.Expect(cur.Status.PendingApproval).NotTo(BeNil())
		g.Expect(cur.Status.PendingApproval.Step).To(Equal(int32(2)))
		v2 = cur.Status.CanaryRevision
	}, 20*time.Second, 20*time.Millisecond).Should(Succeed())
	return v1, v2
}

func TestANewRevisionMidCanaryPassesItsStepsOnlyWithItsPods(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	kubelet(t, ns, nil)
	startManager(t, nil)
	before := violations()
	ro := midCanaryRollout(ns, "shop")
	v1, v2 := v2WaitingForApproval(t, g, ro)
	g.Expect(replicaSets(g, ro)[v2].Spec.Replicas).To(HaveValue(Equal(int32(2))), "40% of 5 replicas")

	st, v3 := v3ReplacesV2(t, ro)
	g.Expect(v3).NotTo(BeElementOf(v1, v2))
	g.Eventually(func(g Gomega) {
		sets := replicaSets(g, ro)
		g.Expect(sets[v2].Spec.Replicas).To(HaveValue(BeZero()), "the abandoned canary reached 0")
		g.Expect(sets[v3].Spec.Replicas).To(HaveValue(Equal(int32(5))))
	}, 10*time.Second, 20*time.Millisecond).Should(Succeed())

	passed := checkStepsPassedWithTheirPods(t, st, v3, func(w int32) int32 { c, _ := traffic.Split(5, w); return c })
	g.Expect(passed).To(Equal(5), "v3 passed its four steps and was promoted, each seen in a stored status")
	// At most one canary ReplicaSet wanted pods at any instant, and v2
	// went to zero before v3 had any.
	var v2Zero, v3First int64
	st.replay(func(changed client.Object, w *world) {
		rs, ok := changed.(*appsv1.ReplicaSet)
		if !ok {
			return
		}
		rv := resourceVersion(rs)
		if w.sets[v2] != nil && w.sets[v3] != nil && specReplicas(w.sets[v2]) > 0 && specReplicas(w.sets[v3]) > 0 {
			t.Errorf("v2 (%d) and v3 (%d) both wanted pods at resourceVersion %d", specReplicas(w.sets[v2]), specReplicas(w.sets[v3]), rv)
		}
		if revisionOf(rs) == v2 && specReplicas(rs) == 0 && v2Zero == 0 {
			v2Zero = rv
		}
		if revisionOf(rs) == v3 && specReplicas(rs) > 0 && v3First == 0 {
			v3First = rv
		}
	})
	g.Expect(v2Zero).NotTo(BeZero())
	g.Expect(v2Zero).To(BeNumerically("<", v3First), "the abandoned canary went to zero before the new one got a pod")
	g.Expect(violations()).To(Equal(before), "no invariant was violated")
}

func TestANewRevisionMidCanaryBehindARouterMovesTrafficWithReadyPods(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	kubelet(t, ns, nil)
	startManager(t, nil)
	before := violations()
	ro := midCanaryRollout(ns, "web")
	gatewayObjects(t, ro)
	_, v2 := v2WaitingForApproval(t, g, ro)
	g.Expect(canaryWeight(g, ro)).To(Equal(int32(40)))

	st, v3 := v3ReplacesV2(t, ro)
	g.Eventually(func(g Gomega) {
		g.Expect(replicaSets(g, ro)[v2].Spec.Replicas).To(HaveValue(BeZero()))
		g.Expect(canaryWeight(g, ro)).To(BeZero())
	}, 10*time.Second, 20*time.Millisecond).Should(Succeed())

	passed := checkStepsPassedWithTheirPods(t, st, v3, func(w int32) int32 { return traffic.CanaryReplicas(5, w) })
	g.Expect(passed).To(Equal(5))
	var weightOffV2, v2Shrank int64
	st.replay(func(changed client.Object, w *world) {
		rv := resourceVersion(changed)
		canarySvc := w.services["web-canary"]
		if canarySvc == nil {
			return
		}
		to, weight := selectedRevision(canarySvc), routeWeight(w.route)
		// Traffic reaches a revision only through its ready pods.
		if weight > 0 {
			if rs := w.sets[to]; ready(rs) < traffic.CanaryReplicas(5, weight) && to != selectedRevision(w.services["web-stable"]) {
				t.Errorf("at resourceVersion %d the route sent %d%% to revision %s with %d ready pods", rv, weight, to, ready(rs))
			}
		}
		if weightOffV2 == 0 && (to != v2 || weight == 0) {
			weightOffV2 = rv
		}
		if rs, ok := changed.(*appsv1.ReplicaSet); ok && revisionOf(rs) == v2 && specReplicas(rs) < 2 && v2Shrank == 0 {
			v2Shrank = rv
		}
	})
	g.Expect(v2Shrank).NotTo(BeZero())
	g.Expect(weightOffV2).To(BeNumerically("<", v2Shrank), "the abandoned canary lost its route weight before its pods")
	g.Expect(violations()).To(Equal(before), "no invariant was violated")
}

func TestAForegroundDeletedRolloutGetsNoWritesButItsCleanup(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	kubelet(t, ns, nil)
	startManager(t, nil)
	ro := midCanaryRollout(ns, "gone")
	gatewayObjects(t, ro)
	_, v2 := v2WaitingForApproval(t, g, ro)
	g.Expect(get(g, ro).Finalizers).To(ContainElement(vigilv1.FinalizerRollout))
	g.Expect(serviceRevision(g, ns, "gone-canary")).To(Equal(v2))

	st := recordStored(t, ns)
	g.Expect(k8s.Delete(ctx, get(g, ro), client.PropagationPolicy(metav1.DeletePropagationForeground))).To(Succeed())
	var deleting *vigilv1.Rollout
	g.Eventually(func(g Gomega) {
		deleting = get(g, ro)
		g.Expect(deleting.DeletionTimestamp).NotTo(BeNil())
	}).Should(Succeed())
	// Someone removes the canary's ReplicaSet while the Rollout goes: a
	// live Rollout would make it again.
	g.Expect(k8s.Delete(ctx, replicaSets(g, ro)[v2])).To(Succeed())

	g.Eventually(func(g Gomega) {
		for _, name := range []string{"gone-stable", "gone-canary"} {
			g.Expect(serviceRevision(g, ns, name)).To(BeEmpty(), "Service %s no longer has Vigil's key", name)
		}
		g.Expect(get(g, ro).Finalizers).NotTo(ContainElement(vigilv1.FinalizerRollout))
	}, 10*time.Second, 20*time.Millisecond).Should(Succeed())
	g.Consistently(func(g Gomega) {
		g.Expect(replicaSets(g, ro)).NotTo(HaveKey(v2), "no ReplicaSet is made for a Rollout being deleted")
	}, 2*time.Second, 50*time.Millisecond).Should(Succeed())

	g.Expect(get(g, ro).Status).To(Equal(deleting.Status), "the status of a Rollout being deleted is not written")
	seen := map[string]int32{}
	st.replay(func(changed client.Object, _ *world) {
		rs, ok := changed.(*appsv1.ReplicaSet)
		if !ok || rs.DeletionTimestamp != nil {
			return
		}
		if prev, ok := seen[rs.Name]; (!ok && rs.CreationTimestamp.After(deleting.DeletionTimestamp.Time)) || ok && specReplicas(rs) > prev {
			t.Errorf("ReplicaSet %s was created or scaled up to %d after the deletion began", rs.Name, specReplicas(rs))
		}
		seen[rs.Name] = specReplicas(rs)
	})
}

func TestAPodTemplateTheServerRefusesStallsTheRollout(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	kubelet(t, ns, nil)
	requests := &requestLog{}
	startManager(t, requests.wrap)
	ro := newRollout(ns, "huge", 2, "huge:v1", weightStep(50))
	g.Expect(k8s.Create(context.Background(), ro)).To(Succeed())
	waitPromoted(t, ro, 20*time.Second)

	// An annotation over the server's 256 KiB limit: the Rollout is
	// accepted, its ReplicaSet never will be.
	st := recordStored(t, ns)
	g.Eventually(func(g Gomega) {
		cur := get(g, ro)
		cur.Spec.Template.Annotations = map[string]string{"example.com/blob": strings.Repeat("x", 300<<10)}
		g.Expect(k8s.Update(context.Background(), cur)).To(Succeed())
	}).Should(Succeed())
	var stalled *metav1.Condition
	g.Eventually(func(g Gomega) {
		stalled = findCondition(get(g, ro), vigilv1.ConditionStalled)
		g.Expect(stalled).NotTo(BeNil())
		g.Expect(stalled.Reason).To(Equal(vigilv1.ReasonWriteRefused))
	}, 10*time.Second, 20*time.Millisecond).Should(Succeed())
	g.Expect(stalled.Message).To(And(ContainSubstring("refused to create the ReplicaSet"), ContainSubstring("Too long")), "the server's own message")
	g.Expect(findCondition(get(g, ro), vigilv1.ConditionReconciling)).To(BeNil())
	// Within one reconcile: the status stored right after the one that
	// started the canary (a decision is stored before it is acted on) is
	// already Stalled.
	var statuses []vigilv1.RolloutStatus
	g.Eventually(func() int { // the watch that records them may lag the read above
		statuses = canaryStatuses(st)
		return len(statuses)
	}, 5*time.Second, 20*time.Millisecond).Should(BeNumerically(">=", 2))
	g.Expect(statuses[0].Conditions.Conditions).NotTo(ContainElement(HaveField("Reason", vigilv1.ReasonWriteRefused)), "the canary's start")
	g.Expect(meta.FindStatusCondition(statuses[1].Conditions.Conditions, vigilv1.ConditionStalled)).To(HaveField("Reason", vigilv1.ReasonWriteRefused), "the next stored status, one reconcile later")

	requests.start()
	made := requests.made
	g.Consistently(func(g Gomega) {
		g.Expect(len(made())).To(BeNumerically("<=", 4), "no hot retry: %v", made())
	}, 3*time.Second, 100*time.Millisecond).Should(Succeed())
	t.Logf("requests in the 3 s after Stalled: %d %v", len(made()), made())
	// Events are sent after the status patch, by the recorder's own goroutine.
	g.Eventually(func(g Gomega) { g.Expect(eventReasons(g, ro)).To(ContainElement(vigilv1.ReasonWriteRefused)) }, 10*time.Second, 50*time.Millisecond).Should(Succeed())

	// Fixing the template un-stalls it.
	g.Eventually(func(g Gomega) {
		cur := get(g, ro)
		cur.Spec.Template.Annotations = nil
		cur.Spec.Template.Spec.Containers[0].Image = "huge:v2"
		g.Expect(k8s.Update(context.Background(), cur)).To(Succeed())
	}).Should(Succeed())
	waitPromoted(t, ro, 20*time.Second)
}

// canaryStatuses are the distinct statuses stored of a Rollout with a
// canary, in the order they were stored.
func canaryStatuses(st *stored) []vigilv1.RolloutStatus {
	var statuses []vigilv1.RolloutStatus
	st.replay(func(changed client.Object, _ *world) {
		if o, ok := changed.(*vigilv1.Rollout); ok && o.Status.CanaryRevision != "" {
			if n := len(statuses); n == 0 || !equality.Semantic.DeepEqual(statuses[n-1], o.Status) {
				statuses = append(statuses, o.Status)
			}
		}
	})
	return statuses
}

// requestLog records the requests (not watches) a manager sends once
// started.
type requestLog struct {
	mu       sync.Mutex
	counting bool
	requests []string
}

func (l *requestLog) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		l.mu.Lock()
		if l.counting && r.URL.Query().Get("watch") != "true" {
			l.requests = append(l.requests, r.Method+" "+r.URL.Path)
		}
		l.mu.Unlock()
		return rt.RoundTrip(r)
	})
}

func (l *requestLog) start() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.counting = true
}

func (l *requestLog) made() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.requests)
}

func TestTwoApprovalsOfOneStepAdvanceItOnceAndEachIsRecorded(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	kubelet(t, ns, nil)
	stop := startManager(t, nil)
	ro := newRollout(ns, "pair", 2, "pair:v1", approvalStep(), approvalStep(), weightStep(50))
	g.Expect(k8s.Create(context.Background(), ro)).To(Succeed())
	waitPromoted(t, ro, 20*time.Second)
	newImage(t, ro, "pair:v2")
	var v2 string
	g.Eventually(func(g Gomega) {
		cur := get(g, ro)
		g.Expect(cur.Status.PendingApproval).NotTo(BeNil())
		v2 = cur.Status.CanaryRevision
	}, 20*time.Second, 20*time.Millisecond).Should(Succeed())

	// Both arrive while the controller is down: one reconcile sees both.
	stop()
	approve(t, ro, "alice", v2, 0, vigilv1.ApprovalApprove)
	approve(t, ro, "bob", v2, 0, vigilv1.ApprovalApprove)
	startManager(t, nil)
	g.Eventually(func(g Gomega) {
		cur := get(g, ro)
		g.Expect(cur.Status.PendingApproval).NotTo(BeNil())
		g.Expect(cur.Status.PendingApproval.Step).To(Equal(int32(1)))
	}, 20*time.Second, 20*time.Millisecond).Should(Succeed())
	g.Consistently(func(g Gomega) {
		cur := get(g, ro)
		g.Expect(cur.Status.CurrentStepIndex).To(HaveValue(Equal(int32(1))), "the next approval step still waits")
		g.Expect(cur.Status.Phase).To(Equal(vigilv1.RolloutPhasePaused))
	}, time.Second, 50*time.Millisecond).Should(Succeed())
	g.Eventually(func(g Gomega) {
		used := map[string]string{}
		for _, e := range rolloutEvents(g, ro) {
			if e.Reason == vigilv1.ReasonApprovalUsed && e.Related != nil {
				used[e.Related.Name] = e.Message
			}
		}
		g.Expect(used).To(HaveLen(2), "one Event per used Approval")
		g.Expect(used["alice"]).To(MatchRegexp(`Used Approval alice by \S+ \(Approve of revision ` + v2 + ` at step 0\)`))
		g.Expect(used["bob"]).To(ContainSubstring("Used Approval bob by "))
		g.Expect(approvalConsumed(g, ns, "alice")).To(BeTrue())
		g.Expect(approvalConsumed(g, ns, "bob")).To(BeTrue())
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())
}
