package rollout

import (
	"flag"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"pgregory.net/rapid"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/traffic"
)

// Generated histories. TestGeneratedHistories drives the pure core of a
// reconcile (resolve, decide, plan, check) through random sequences of
// what happens to a Rollout: template edits at any step, scale changes,
// spec.paused, approvals and rejections, analysis verdicts including
// Unknown, pods turning ready and flapping, time passing, writes that fail
// or whose answers are lost, status patches that are lost, and deletion.
// The cluster is a small model (ReplicaSets, an HTTPRoute and its two
// Services, Approvals, AnalysisRuns, a clock). After every reconcile the
// model's own reckoning, not the controller's, checks each invariant; at
// the end of each history a cooperative world (pods ready, approvals
// given, analyses passing) must bring the current template to stable.
//
// `make test` runs historyChecks cases; `make fuzz` runs many more
// (RAPID_CHECKS). A failure prints the smallest history rapid found and
// the seed that replays it (-rapid.seed).

// historyChecks is how many histories `go test` runs when neither
// -rapid.checks nor RAPID_CHECKS says otherwise.
const historyChecks = 2000

// debugHistory logs every reconcile of a failing history (HISTORY_DEBUG=1).
var debugHistory = os.Getenv("HISTORY_DEBUG") != ""

func TestGeneratedHistories(t *testing.T) {
	if !flagSet("rapid.checks", "RAPID_CHECKS") {
		if err := flag.Set("rapid.checks", fmt.Sprint(historyChecks)); err != nil {
			t.Fatal(err)
		}
	}
	if !flagSet("rapid.steps", "RAPID_STEPS") {
		if err := flag.Set("rapid.steps", "60"); err != nil {
			t.Fatal(err)
		}
	}
	var seen tally
	rapid.Check(t, func(t *rapid.T) {
		c := newCluster(t)
		c.seen = &seen
		// Each action is something that happens to the Rollout, followed
		// by the reconciles it triggers (none to a few, some with faults).
		then := func(act func(*rapid.T)) func(*rapid.T) {
			return func(t *rapid.T) {
				act(t)
				for n := rapid.IntRange(0, 3).Draw(t, "reconciles"); n > 0; n-- {
					c.reconcileAction(t)
				}
			}
		}
		t.Repeat(map[string]func(*rapid.T){
			"kubelet":  then(c.kubelet),
			"allReady": then(func(*rapid.T) { c.allReady() }),
			"tick":     then(c.tick),
			"edit":     then(c.edit),
			"scale":    then(c.scale),
			"pause":    then(c.togglePause),
			"approve":  then(func(t *rapid.T) { c.decision(t, vigilv1.ApprovalApprove) }),
			"reject":   then(func(t *rapid.T) { c.decision(t, vigilv1.ApprovalReject) }),
			"verdict":  then(c.verdict),
			"delete":   then(c.delete),
		})
		c.settle(t)
	})
	t.Logf("over every history: %d reconciles, %d steps passed, %d promotions, %d canaries replaced mid-canary, %d rollbacks, %d deletions, %d ReleaseRecords pruned",
		seen.reconciles, seen.steps, seen.promotions, seen.replaced, seen.rollbacks, seen.deletions, seen.pruned)
	if seen.steps == 0 || seen.promotions == 0 || seen.replaced == 0 || seen.rollbacks == 0 || seen.deletions == 0 || seen.pruned == 0 {
		t.Errorf("the histories missed a kind of event they exist to cover")
	}
}

// tally counts what the generated histories went through, so that a
// change to the generators that stops covering something is noticed.
type tally struct {
	reconciles, steps, promotions, replaced, rollbacks, deletions, pruned int
}

// flagSet tells whether a flag was given on the command line, or its
// variable in the environment rapid reads.
func flagSet(name, env string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	_, inEnv := os.LookupEnv(env)
	return set || inEnv
}

// cluster is the model the generated histories run against.
type cluster struct {
	now            time.Time
	ro             *vigilv1.Rollout
	gone           bool // deleted and its finalizers removed
	sets           map[string]*appsv1.ReplicaSet
	route          *gatewayv1.HTTPRoute // nil with replica ratio
	stable, canary *corev1.Service
	approvals      []vigilv1.Approval
	runs           map[string]*vigilv1.AnalysisRun
	images         []string
	made           int // objects made, for unique names
	seen           *tally
	records        []vigilv1.ReleaseRecord
}

func newCluster(t *rapid.T) *cluster {
	steps := rapid.SliceOfN(rapid.OneOf(
		rapid.Map(rapid.SampledFrom([]int32{0, 1, 10, 20, 25, 33, 40, 50, 60, 80, 99, 100}), weightStep),
		rapid.Map(rapid.SampledFrom([]string{"0s", "5s", "1m"}), pauseStep),
		rapid.Just(approvalStep()),
		rapid.Just(analysisStep("slo", "app")),
	), 1, 5).Draw(t, "steps")
	ro := newRollout("ns", "app", rapid.Int32Range(0, 6).Draw(t, "replicas"), "app:v0", steps...)
	ro.UID, ro.Generation = "rollout-uid", 1
	ro.Spec.ReleaseRecordLimit = ptr.To(rapid.SampledFrom([]int32{2, 3, 20}).Draw(t, "releaseRecordLimit"))
	surge, unavailable := rapid.Int32Range(0, 2).Draw(t, "maxSurge"), rapid.Int32Range(0, 2).Draw(t, "maxUnavailable")
	if surge == 0 && unavailable == 0 {
		surge = 1 // the API refuses both zero
	}
	cs := &ro.Spec.Strategy.Canary
	cs.MaxSurge, cs.MaxUnavailable = ptr.To(intstr.FromInt32(surge)), ptr.To(intstr.FromInt32(unavailable))
	if rapid.Bool().Draw(t, "backgroundAnalysis") {
		cs.Analysis = analysisStep("slo", "app").Analysis
	}
	actions := []vigilv1.RollbackAction{vigilv1.RollbackActionRollback, vigilv1.RollbackActionPause, vigilv1.RollbackActionRetry}
	ro.Spec.Rollback = &vigilv1.RollbackPolicy{
		OnFailed:                   rapid.SampledFrom(actions[:2]).Draw(t, "onFailed"),
		OnInconclusive:             rapid.SampledFrom(actions).Draw(t, "onInconclusive"),
		OnUnknownExhausted:         rapid.SampledFrom(actions).Draw(t, "onUnknownExhausted"),
		AbortScaleDownDelaySeconds: ptr.To(rapid.SampledFrom([]int32{0, 30}).Draw(t, "abortScaleDownDelaySeconds")),
	}
	c := &cluster{now: t0, ro: ro, sets: map[string]*appsv1.ReplicaSet{}, runs: map[string]*vigilv1.AnalysisRun{}, images: []string{"app:v0"}}
	if rapid.Bool().Draw(t, "gateway") {
		c.routeThroughGateway()
	}
	return c
}

// routeThroughGateway gives the model an HTTPRoute and two Services, as
// gatewayObjects does on the API server.
func (c *cluster) routeThroughGateway() {
	svc := func(name string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "app"}}}
	}
	c.stable, c.canary = svc("app-stable"), svc("app-canary")
	ref := func(name string) gatewayv1.HTTPBackendRef {
		return gatewayv1.HTTPBackendRef{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(name)}}}
	}
	c.route = &gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "app"},
		Spec:       gatewayv1.HTTPRouteSpec{Rules: []gatewayv1.HTTPRouteRule{{BackendRefs: []gatewayv1.HTTPBackendRef{ref("app-stable"), ref("app-canary")}}}},
	}
	c.ro.Spec.Strategy.Canary.TrafficRouting = &vigilv1.TrafficRouting{GatewayAPI: &vigilv1.GatewayAPITrafficRouting{
		HTTPRoute: "app", StableService: "app-stable", CanaryService: "app-canary",
	}}
	c.ro.Finalizers = []string{vigilv1.FinalizerRollout}
}

// scope observes the model as the controller observes the cluster.
func (c *cluster) scope(t *rapid.T) *scope {
	s := &scope{now: c.now, rollout: c.ro.DeepCopy(), advancedFrom: -1, key: testKey}
	var sets []*appsv1.ReplicaSet
	for _, name := range slices.Sorted(maps.Keys(c.sets)) {
		sets = append(sets, c.sets[name].DeepCopy())
	}
	if c.ro.DeletionTimestamp != nil {
		if c.route != nil {
			s.gateway = &gatewayTraffic{stableService: c.stable.DeepCopy(), canaryService: c.canary.DeepCopy()}
		}
		return s
	}
	if st, err := s.resolve(sets); st != nil || err != nil {
		t.Fatalf("resolving the scope: %v %v", st, err)
	}
	for _, a := range c.approvals {
		s.approvals = append(s.approvals, *a.DeepCopy())
	}
	for _, r := range c.records {
		s.records = append(s.records, *r.DeepCopy())
	}
	s.runs, s.runSpecs, s.runErrors = map[string]*vigilv1.AnalysisRun{}, map[string]*vigilv1.AnalysisRun{}, map[string]error{}
	for name, run := range c.runs {
		s.runs[name] = run.DeepCopy()
	}
	for _, a := range wantedRuns(s) {
		if s.runs[a.Run] == nil {
			s.runSpecs[a.Run] = &vigilv1.AnalysisRun{
				ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: a.Run, OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(c.ro, vigilv1.GroupVersion.WithKind("Rollout"))}},
				Spec:       vigilv1.AnalysisRunSpec{Revision: a.Revision},
			}
		}
	}
	if c.route != nil {
		route := c.route.DeepCopy()
		view, err := traffic.NewRoute(route, "app-stable", "app-canary")
		if err != nil {
			t.Fatal(err)
		}
		s.gateway = &gatewayTraffic{route: route, view: view, stableService: c.stable.DeepCopy(), canaryService: c.canary.DeepCopy()}
	}
	return s
}

// reconcileAction runs one reconcile in which a write may fail, or be
// applied with its answer lost, and either status patch (the decision's,
// stored before acting on it, and the last) may be lost.
func (c *cluster) reconcileAction(t *rapid.T) {
	failAt := rapid.IntRange(-1, 4).Draw(t, "failAt")
	applied := rapid.Bool().Draw(t, "failedWriteApplied")
	lost := patchesLost{
		decision: rapid.IntRange(0, 7).Draw(t, "decisionLost") == 0,
		final:    rapid.IntRange(0, 7).Draw(t, "statusLost") == 0,
	}
	c.reconcile(t, failAt, applied, lost)
}

// patchesLost says which of a reconcile's status patches are lost.
type patchesLost struct{ decision, final bool }

// reconcile mirrors Reconciler.reconcile over the model and checks the
// invariants on what it decided and wrote.
func (c *cluster) reconcile(t *rapid.T, failAt int, applied bool, lost patchesLost) {
	if c.gone {
		return
	}
	s := c.scope(t)
	before := s.rollout.Status.DeepCopy()
	if s.rollout.DeletionTimestamp == nil && !c.writeEvidence(t, s, failAt >= 0) {
		if !lost.final {
			c.ro.Status = s.rollout.Status
		}
		return
	}
	if c.seen != nil {
		c.seen.reconciles++
	}
	changes, _ := core(s, func(prev *vigilv1.RolloutStatus) {
		// Each decision of the reconcile, checked against the status
		// before it.
		c.count(s, prev)
		c.checkOwn(t, s, nil, prev)
		c.checkDecision(t, s, prev)
	})
	if !s.decided {
		c.checkOwn(t, s, changes, before)
	}
	if c.ro.DeletionTimestamp != nil {
		c.checkDeletionPlan(t, s, changes, before)
	}
	if s.decided {
		// The writes that act on the decision are planned; the decision
		// is stored, and its evidence written, before the same reconcile
		// makes them.
		changes = afterDecision(s)
		if lost.decision {
			return
		}
		c.ro.Status = *s.rollout.Status.DeepCopy()
		before = decisionStored(s)
		c.checkOwn(t, s, changes, before)
		if !c.writeEvidence(t, s, failAt >= 0) {
			if !lost.final {
				c.ro.Status = s.rollout.Status
			}
			return
		}
	}
	if slices.ContainsFunc(changes, change.traffic) {
		c.checkEvidenceAhead(t, s)
	}
	complete := true
	for i, ch := range changes {
		if i == failAt {
			complete = false
			if applied {
				c.write(s, ch)
			}
			break
		}
		c.write(s, ch)
	}
	if c.ro.DeletionTimestamp == nil && !lost.final {
		c.ro.Status = s.rollout.Status
	}
	if complete && !lost.final {
		c.checkWorld(t)
	}
}

// checkOwn fails on a violation of the controller's own invariant check:
// of the decision alone when the reconcile decided, else of its writes.
func (c *cluster) checkOwn(t *rapid.T, s *scope, changes []change, before *vigilv1.RolloutStatus) {
	vs := check(s, changes, before)
	if s.decided {
		vs = decisionViolations(vs)
	}
	for _, v := range vs {
		t.Fatalf("the controller's own check: %s: %s\nbefore: %s\nplanned: %v", v.invariant, v.detail, c.describe(), changes)
	}
	if debugHistory {
		t.Logf("reconcile: %s\n  planned %v decided %v", c.describe(), changes, s.decided)
	}
}

// count tallies what a reconcile decided.
func (c *cluster) count(s *scope, before *vigilv1.RolloutStatus) {
	if c.seen == nil {
		return
	}
	after := s.rollout.Status
	switch {
	case s.advancedFrom >= 0 && int(s.advancedFrom) >= len(s.steps()):
		c.seen.promotions++
	case s.advancedFrom >= 0:
		c.seen.steps++
	case before.Rollback == nil && after.Rollback != nil:
		c.seen.rollbacks++
	case before.CanaryRevision != "" && after.CanaryRevision != "" && after.CanaryRevision != before.CanaryRevision:
		c.seen.replaced++
	}
}

// write applies one planned change to the model, as the API server would.
func (c *cluster) write(s *scope, ch change) {
	switch ch.kind {
	case deleteRecord:
		c.dropRecord(ch.record.Name)
		if c.seen != nil {
			c.seen.pruned++
		}
	case createReplicaSet:
		name := replicaSetName(c.ro.Name, ch.revision)
		if c.sets[name] != nil {
			return // AlreadyExists with this template: adopted
		}
		var number int64
		for _, rs := range c.sets {
			number = max(number, revisionNumber(rs))
		}
		rs := newReplicaSet(s.rollout, ch.revision, s.checksum, number+1, ch.replicas, nil)
		rs.Generation, rs.CreationTimestamp = 1, metav1.NewTime(c.now)
		c.sets[name] = rs
	case scaleReplicaSet:
		if rs := c.sets[ch.rs.Name]; rs != nil && specReplicas(rs) != ch.replicas {
			rs.Spec.Replicas = ptr.To(ch.replicas)
			rs.Generation++
		}
	case deleteReplicaSet:
		delete(c.sets, ch.rs.Name)
	case setSelector, clearSelector:
		svc := c.stable
		if ch.service.Name == c.canary.Name {
			svc = c.canary
		}
		if ch.kind == clearSelector {
			delete(svc.Spec.Selector, vigilv1.LabelPodTemplateHash)
		} else {
			svc.Spec.Selector[vigilv1.LabelPodTemplateHash] = ch.revision
		}
	case setWeight:
		view, _ := traffic.NewRoute(c.route, "app-stable", "app-canary")
		view.SetCanaryWeight(ch.weight)
	case writeApproval:
		for i := range c.approvals {
			if c.approvals[i].Name == ch.approval.Name {
				c.approvals[i].Status = *ch.approvalStatus.DeepCopy()
			}
		}
	case createAnalysisRun:
		if c.runs[ch.run.Name] == nil {
			c.runs[ch.run.Name] = ch.run.DeepCopy()
		}
	case terminateAnalysisRun:
		if run := c.runs[ch.run.Name]; run != nil {
			run.Spec.Terminate = true
		}
	case removeFinalizer:
		c.ro.Finalizers = slices.DeleteFunc(c.ro.Finalizers, func(f string) bool { return f == vigilv1.FinalizerRollout })
		if c.ro.DeletionTimestamp != nil && len(c.ro.Finalizers) == 0 {
			c.gone = true
		}
	}
}

// share is the model's own reckoning of the canary pods a weight needs:
// the rounded share by replica ratio, at least one for a non-zero weight;
// enough pods for the weight behind a router.
func (c *cluster) share(weight int32) int32 {
	n := *c.ro.Spec.Replicas
	switch {
	case weight <= 0 || n == 0:
		return 0
	case weight >= 100:
		return n
	case c.route != nil:
		return int32(float64(n)*float64(weight)/100 + 0.9999)
	}
	return max(1, int32(float64(n)*float64(weight)/100+0.5))
}

// weightInForce is the weight of the last setWeight step at or before i;
// 100 past the last step.
func weightInForce(steps []vigilv1.CanaryStep, i int32) int32 {
	if int(i) >= len(steps) {
		return 100
	}
	for ; i >= 0; i-- {
		if w := steps[i].SetWeight; w != nil {
			return *w
		}
	}
	return 0
}

// checkDecision checks what a reconcile decided against the world it
// observed: a step passes, and a revision is promoted, only on evidence.
func (c *cluster) checkDecision(t *rapid.T, s *scope, before *vigilv1.RolloutStatus) {
	after := s.rollout.Status
	checkStatusConsistent(t, before, &after)
	steps := s.steps()
	promoted := before.CanaryRevision != "" && after.StableRevision == before.CanaryRevision && before.StableRevision != before.CanaryRevision
	from := ptr.Deref(before.CurrentStepIndex, 0)
	passed := before.CanaryRevision != "" && after.CanaryRevision == before.CanaryRevision && before.Rollback == nil && after.Rollback == nil &&
		ptr.Deref(after.CurrentStepIndex, 0) > from
	if !passed && !promoted {
		return
	}
	rev := before.CanaryRevision
	if promoted && int(from) < len(steps) {
		t.Fatalf("revision %s promoted at step %d of %d", rev, from, len(steps))
	}
	c.checkStepEvidence(t, s, before, rev, from)
	if promoted {
		checkBackgroundEvidence(t, s, before, rev)
		return
	}
	checkGate(t, s, before, rev, from)
}

// checkStatusConsistent checks that a new canary starts with nothing
// stale, and that approvals and analyses in status are of the canary.
func checkStatusConsistent(t *rapid.T, before, after *vigilv1.RolloutStatus) {
	if after.CanaryRevision != "" && after.CanaryRevision != before.CanaryRevision {
		if after.CurrentStepIndex == nil || *after.CurrentStepIndex != 0 || after.PendingApproval != nil || after.Analysis != nil ||
			after.BackgroundAnalysis != nil || after.Rollback != nil || after.CanaryWeight != 0 {
			t.Fatalf("canary %s started with stale status: %+v", after.CanaryRevision, after)
		}
	}
	if p := after.PendingApproval; p != nil && p.Revision != after.CanaryRevision {
		t.Fatalf("pending approval of revision %s while the canary is %q", p.Revision, after.CanaryRevision)
	}
	for _, a := range []*vigilv1.RolloutAnalysis{after.Analysis, after.BackgroundAnalysis} {
		if a != nil && after.CanaryRevision != "" && a.Revision != after.CanaryRevision {
			t.Fatalf("analysis of revision %s in status while the canary is %s", a.Revision, after.CanaryRevision)
		}
	}
}

// checkStepEvidence checks that step from of rev passed with its ready pods
// and route weight, and with no abandoned revision holding pods.
func (c *cluster) checkStepEvidence(t *rapid.T, s *scope, before *vigilv1.RolloutStatus, rev string, from int32) {
	steps := s.steps()
	weight := weightInForce(steps, from)
	need := c.share(weight)
	canary := s.set(rev)
	if need > 0 && (canary == nil || canary.Status.ObservedGeneration < canary.Generation || canary.Status.ReadyReplicas < need) {
		t.Fatalf("step %d of revision %s (weight %d%%) passed without its %d ready canary pods: %+v", from, rev, weight, need, canary)
	}
	if c.route != nil {
		view, _ := traffic.NewRoute(s.gateway.route, "app-stable", "app-canary")
		if w, _ := view.CanaryWeight(); w != weight || weight > 0 && selectedRevision(s.gateway.canaryService) != rev {
			t.Fatalf("step %d of revision %s passed with route weight %d%% to %q, not %d%%", from, rev, w, selectedRevision(s.gateway.canaryService), weight)
		}
	}
	for _, rs := range s.sets {
		if r := revisionOf(rs); r != rev && r != before.StableRevision && (specReplicas(rs) > 0 || rs.Status.ReadyReplicas > 0) {
			t.Fatalf("step %d of revision %s passed while abandoned revision %s has %d pods (%d ready)", from, rev, r, specReplicas(rs), rs.Status.ReadyReplicas)
		}
	}
}

// checkBackgroundEvidence checks that a promotion had background analysis
// evidence, when the Rollout asks for background analysis.
func checkBackgroundEvidence(t *rapid.T, s *scope, before *vigilv1.RolloutStatus, rev string) {
	if b := before.BackgroundAnalysis; s.rollout.Spec.Strategy.Canary.Analysis != nil {
		var run *vigilv1.AnalysisRun
		if b != nil {
			run = s.runs[b.Run]
		}
		if run == nil || len(run.Status.MetricResults) == 0 || run.Status.MetricResults[0].ConsecutiveUnknown > 0 {
			t.Fatalf("revision %s promoted without background evidence: %+v", rev, run)
		}
	}
}

// checkGate checks that step from of rev passed only through its gate: its
// pause's time, a Successful analysis, or an unused Approval.
func checkGate(t *rapid.T, s *scope, before *vigilv1.RolloutStatus, rev string, from int32) {
	steps := s.steps()
	after := s.rollout.Status
	to := *after.CurrentStepIndex
	step := steps[from]
	if to != from+1 && !(step.Approval != nil || step.Pause != nil && step.Pause.Duration == nil) {
		t.Fatalf("step %d of revision %s jumped to %d", from, rev, to)
	}
	switch {
	case step.Pause != nil && step.Pause.Duration != nil:
		d, _ := step.Pause.Duration.Get()
		if before.CurrentStepStartedAt == nil || s.now.Before(before.CurrentStepStartedAt.Add(d)) {
			t.Fatalf("pause step %d of revision %s passed before %s", from, rev, d)
		}
	case step.Analysis != nil:
		a := before.Analysis
		if a == nil || s.runs[a.Run] == nil || s.runs[a.Run].Status.Verdict != vigilv1.AnalysisSuccessful {
			t.Fatalf("analysis step %d of revision %s passed without a Successful run: %+v", from, rev, a)
		}
	case step.SetWeight == nil:
		ok := slices.ContainsFunc(s.approvals, func(a vigilv1.Approval) bool {
			return a.Spec.Revision == rev && a.Spec.Step == from && a.Spec.Decision == vigilv1.ApprovalApprove &&
				a.Status.ConsumedAt == nil && !slices.Contains(before.UsedApprovals, a.Name) && s.now.Sub(a.CreationTimestamp.Time) < time.Hour &&
				(to == from+1 || a.Spec.Scope == vigilv1.ApprovalScopeFull)
		})
		if !ok {
			t.Fatalf("approval step %d of revision %s passed (to %d) without an unused Approval", from, rev, to)
		}
	}
}

// checkDeletionPlan checks that a Rollout being deleted gets no writes but
// those of its deletion, and no status write.
func (c *cluster) checkDeletionPlan(t *rapid.T, s *scope, changes []change, before *vigilv1.RolloutStatus) {
	for _, ch := range changes {
		if ch.kind != clearSelector && ch.kind != removeFinalizer {
			t.Fatalf("a Rollout being deleted planned to %s", ch)
		}
	}
	if !equality.Semantic.DeepEqual(*before, s.rollout.Status) {
		t.Fatalf("a Rollout being deleted had its status changed")
	}
}

// checkWorld checks the world a reconcile left that made all its writes.
func (c *cluster) checkWorld(t *rapid.T) {
	st := c.ro.Status
	var withPods []string
	for _, rs := range c.sets {
		if rev := revisionOf(rs); rev != st.StableRevision && specReplicas(rs) > 0 {
			withPods = append(withPods, rev)
		}
	}
	if len(withPods) > 1 {
		t.Fatalf("%d non-stable revisions want pods: %v", len(withPods), withPods)
	}
	if c.route != nil && c.ro.DeletionTimestamp == nil && st.StableRevision != "" {
		view, _ := traffic.NewRoute(c.route, "app-stable", "app-canary")
		// Traffic on the canary Service reaches the canary, or, just after
		// a promotion, the new stable revision.
		to := selectedRevision(c.canary)
		if w, _ := view.CanaryWeight(); w > 0 && !(st.CanaryRevision != "" && to == st.CanaryRevision || to == st.StableRevision) {
			t.Fatalf("the route sends %d%% to revision %q, which is not the canary %q", w, selectedRevision(c.canary), st.CanaryRevision)
		}
	}
}

// settle plays a cooperative world until the history ends: pods turn
// ready, every pending step is approved, every analysis passes and time
// moves on. A Rollout must then end with its current template stable and
// serving everything; one being deleted, with Vigil's finalizer gone and
// Services free of Vigil's key.
func (c *cluster) settle(t *rapid.T) {
	if c.ro.Spec.Paused {
		c.ro.Spec.Paused = false
		c.ro.Generation++
	}
	for round := 0; round < 200; round++ {
		c.allReady()
		if p := c.ro.Status.PendingApproval; p != nil {
			c.approve("alice", p.Revision, p.Step, vigilv1.ApprovalApprove, vigilv1.ApprovalScopeStep)
		}
		for _, run := range c.runs {
			if !run.Status.Verdict.Finished() && !run.Spec.Terminate {
				setVerdict(run, vigilv1.AnalysisSuccessful, false)
			}
		}
		c.now = c.now.Add(30 * time.Second)
		c.reconcile(t, -1, false, patchesLost{})
		if c.settled(t) {
			// The reconcile after a promotion records it completed.
			c.reconcile(t, -1, false, patchesLost{})
			c.checkRecords(t)
			return
		}
	}
	t.Fatalf("a cooperative world did not settle in 200 reconciles: %s", c.describe())
}

// settled tells whether the history reached its rest.
func (c *cluster) settled(t *rapid.T) bool {
	if c.ro.DeletionTimestamp != nil {
		if slices.Contains(c.ro.Finalizers, vigilv1.FinalizerRollout) {
			return false
		}
		return c.route == nil || selectedRevision(c.stable) == "" && selectedRevision(c.canary) == ""
	}
	s := c.scope(t)
	st := c.ro.Status
	return st.Phase == vigilv1.RolloutPhasePromoted && st.StableRevision == s.revision && st.CanaryRevision == "" && observeEvidence(s).reached
}

func (c *cluster) describe() string {
	var b strings.Builder
	st := c.ro.Status
	fmt.Fprintf(&b, "template %s (revision %s), replicas %d, phase %s: %s; stable %q canary %q step %v",
		c.ro.Spec.Template.Spec.Containers[0].Image, revisionHashOf(c.ro), *c.ro.Spec.Replicas, st.Phase, st.Message, st.StableRevision, st.CanaryRevision, ptr.Deref(st.CurrentStepIndex, -1))
	for _, name := range slices.Sorted(maps.Keys(c.sets)) {
		rs := c.sets[name]
		fmt.Fprintf(&b, "; %s spec %d ready %d gen %d/%d", revisionOf(rs), specReplicas(rs), rs.Status.ReadyReplicas, rs.Status.ObservedGeneration, rs.Generation)
	}
	if c.route != nil {
		view, _ := traffic.NewRoute(c.route, "app-stable", "app-canary")
		w, _ := view.CanaryWeight()
		fmt.Fprintf(&b, "; route %d%% stable svc %q canary svc %q", w, selectedRevision(c.stable), selectedRevision(c.canary))
	}
	return b.String()
}

func revisionHashOf(ro *vigilv1.Rollout) string {
	sum, _ := templateChecksum(&ro.Spec.Template)
	return revisionHash(sum, ptr.Deref(ro.Status.CollisionCount, 0))
}
