// Package rollout is the Rollout controller: it owns one ReplicaSet per
// revision of a Rollout's pod template and moves a new revision to
// production in canary steps.
//
// Each reconcile observes the world (from the cache, never behind the
// controller's own writes: expect.go), lets the pure decide function move
// the status forward, and then makes the world match the status with
// writes that are safe to replay: deterministic names, values written
// absolutely or under a precondition, and traffic moved before pods. A
// decision is patched before anything acts on it, and then acted on in the
// same reconcile, so a crash or a write that times out (an Unknown
// outcome) at any instant never repeats or skips a step: the next
// reconcile reads again and carries on from the recorded decision.
package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/controllers/skeleton"
	proof "github.com/vigil-dev/vigil/evidence"
	"github.com/vigil-dev/vigil/provenance"
	"github.com/vigil-dev/vigil/traffic"
)

// +kubebuilder:rbac:groups=vigil.dev,resources=rollouts,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=vigil.dev,resources=rollouts/status,verbs=patch
// +kubebuilder:rbac:groups=vigil.dev,resources=approvals,verbs=get;list;watch
// +kubebuilder:rbac:groups=vigil.dev,resources=approvals/status,verbs=patch
// +kubebuilder:rbac:groups=vigil.dev,resources=analysisruns,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups=vigil.dev,resources=analysistemplates;clusteranalysistemplates,verbs=get;list;watch
// +kubebuilder:rbac:groups=apps,resources=replicasets,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=httproutes,verbs=get;list;watch;patch

// Field indexes the controller looks objects up by.
const (
	indexTrustPolicy     = "spec.provenance.policyRef.name"
	indexApprovalRollout = "spec.rolloutRef.name"
	indexRecordRollout   = "spec.rolloutRef.name"
	indexTrafficObjects  = "spec.strategy.canary.trafficRouting.gatewayAPI"
)

// Reconciler reconciles Rollouts.
type Reconciler struct {
	client.Client
	// APIReader reads from the API server what the cache shows older than
	// this controller's own writes (see expectations), and adoption
	// candidates.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Clock     clock.PassiveClock
	// GatewayAPI says the HTTPRoute kind is served; without it a Rollout
	// that routes with the Gateway API is stalled with a clear reason.
	GatewayAPI bool
	// Verifier runs the provenance gate; without one a Rollout that names
	// a TrustPolicy is stalled.
	Verifier *provenance.Verifier
	// Workers is how many Rollouts are reconciled at once (default 8);
	// controller-runtime never reconciles one Rollout twice at once.
	Workers int
	// Seal opens the seals the admission webhook puts on Approvals; an
	// Approval whose seal does not open with it counts for nothing.
	Seal proof.Key
	// EvidenceSigner, when set, signs each ReleaseRecord as it is
	// finalised (its attestation).
	EvidenceSigner *proof.Signer

	// expect is what the controller wrote, which its cached reads must show.
	expect *expectations
}

// SetupWithManager registers the controller and the indexes it needs.
func (r *Reconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if err := r.indexes(ctx, mgr); err != nil {
		return err
	}
	b := ctrl.NewControllerManagedBy(mgr).
		For(&vigilv1.Rollout{}).
		Owns(&appsv1.ReplicaSet{}).
		Owns(&vigilv1.AnalysisRun{}).
		// A deleted record is looked at at once: the controller opens the
		// live revision's record again and tells that the chain broke.
		Owns(&vigilv1.ReleaseRecord{}, builder.WithPredicates(predicate.Funcs{
			CreateFunc: func(event.CreateEvent) bool { return false },
			UpdateFunc: func(event.UpdateEvent) bool { return false },
		})).
		Watches(&vigilv1.Approval{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			a := o.(*vigilv1.Approval)
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: a.Namespace, Name: a.Spec.RolloutRef.Name}}}
		})).
		Watches(&corev1.Service{}, handler.EnqueueRequestsFromMapFunc(r.rolloutsRouting("Service"))).
		Watches(&vigilv1.TrustPolicy{}, handler.EnqueueRequestsFromMapFunc(r.rolloutsVerifiedBy))
	if r.GatewayAPI {
		b = b.Watches(&gatewayv1.HTTPRoute{}, handler.EnqueueRequestsFromMapFunc(r.rolloutsRouting("HTTPRoute")))
	}
	if r.Workers <= 0 {
		r.Workers = 8
	}
	return b.WithOptions(controller.Options{MaxConcurrentReconciles: r.Workers}).Complete(r)
}

// indexes registers the field indexes the controller looks objects up by.
func (r *Reconciler) indexes(ctx context.Context, mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.expect == nil {
		r.expect = newExpectations(r.Clock.Now)
		r.Client = expectingClient{r.Client, r.expect}
	}
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(ctx, &vigilv1.Approval{}, indexApprovalRollout, func(o client.Object) []string {
		return []string{o.(*vigilv1.Approval).Spec.RolloutRef.Name}
	}); err != nil {
		return fmt.Errorf("indexing Approvals by Rollout: %w", err)
	}
	if err := idx.IndexField(ctx, &vigilv1.ReleaseRecord{}, indexRecordRollout, func(o client.Object) []string {
		return []string{o.(*vigilv1.ReleaseRecord).Spec.RolloutRef.Name}
	}); err != nil {
		return fmt.Errorf("indexing ReleaseRecords by Rollout: %w", err)
	}
	if err := idx.IndexField(ctx, &vigilv1.Rollout{}, indexTrustPolicy, func(o client.Object) []string {
		if p := o.(*vigilv1.Rollout).Spec.Provenance; p != nil {
			return []string{p.PolicyRef.Name}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("indexing Rollouts by TrustPolicy: %w", err)
	}
	if err := idx.IndexField(ctx, &vigilv1.Rollout{}, indexTrafficObjects, trafficObjects); err != nil {
		return fmt.Errorf("indexing Rollouts by traffic objects: %w", err)
	}
	return nil
}

// trafficObjects indexes a Rollout by the HTTPRoute and Services it routes.
func trafficObjects(o client.Object) []string {
	tr := o.(*vigilv1.Rollout).Spec.Strategy.Canary.TrafficRouting
	if tr == nil || tr.GatewayAPI == nil {
		return nil
	}
	g := tr.GatewayAPI
	return []string{"HTTPRoute/" + g.HTTPRoute, "Service/" + g.StableService, "Service/" + g.CanaryService}
}

// rolloutsVerifiedBy maps a TrustPolicy to the Rollouts that name it: a
// new policy hash verifies their revisions again.
func (r *Reconciler) rolloutsVerifiedBy(ctx context.Context, o client.Object) []reconcile.Request {
	var list vigilv1.RolloutList
	if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.MatchingFields{indexTrustPolicy: o.GetName()}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing Rollouts verified by a TrustPolicy", "trustPolicy", klog.KObj(o))
		return nil
	}
	out := make([]reconcile.Request, 0, len(list.Items))
	for _, ro := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&ro)})
	}
	return out
}

func (r *Reconciler) rolloutsRouting(kind string) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		var list vigilv1.RolloutList
		if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.MatchingFields{indexTrafficObjects: kind + "/" + o.GetName()}); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "Listing Rollouts that route through an object", "kind", kind, "object", klog.KObj(o))
			return nil
		}
		out := make([]reconcile.Request, 0, len(list.Items))
		for _, ro := range list.Items {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&ro)})
		}
		return out
	}
}

// errCollision stops a reconcile after a ReplicaSet name collision; the new
// collision count gives the next reconcile another name.
var errCollision = errors.New("ReplicaSet name collision")

// refusedWriteRetry is how long a Rollout whose write the API server
// refused for good waits before trying again by itself; any change to the
// Rollout or its objects tries sooner.
const refusedWriteRetry = 5 * time.Minute

// Reconcile moves one Rollout forward, on the shared skeleton: the
// Rollout is read from the cache unless the cache is behind what the
// controller wrote (readRollout), its status patched with an optimistic
// lock, and Events and metrics recorded only after that.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return skeleton.Loop[vigilv1.Rollout, *vigilv1.Rollout]{
		Kind: "Rollout", Reader: rolloutReader{r}, Writer: r.Client, Recorder: r.Recorder,
		Status:  func(ro *vigilv1.Rollout) any { return &ro.Status },
		Prepare: r.holdForCleanup,
		Gone: func(n types.NamespacedName) {
			forgetPhaseMetric(n.Namespace, n.Name)
			r.expect.forget(n)
		},
	}.Run(ctx, req, r.reconcileRollout)
}

// reconcileRollout runs one reconcile of ro over a new scope.
func (r *Reconciler) reconcileRollout(ctx context.Context, ro *vigilv1.Rollout, notes *skeleton.Notes) (ctrl.Result, error) {
	s := &scope{now: r.Clock.Now(), rollout: ro, advancedFrom: -1, notes: notes, key: r.Seal, signer: r.EvidenceSigner}
	if ro.DeletionTimestamp != nil {
		return ctrl.Result{}, r.reconcileDelete(ctx, s)
	}
	if err := r.reconcile(ctx, s); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: s.requeueAfter}, nil
}

// noteDecision notes the metrics of one decision, made from the status
// prev.
func noteDecision(s *scope, prev *vigilv1.RolloutStatus) {
	ro := s.rollout
	if s.advancedFrom >= 0 {
		kind := stepKind(s.steps(), s.advancedFrom)
		s.metric(func() { stepTransitions.WithLabelValues(kind).Inc() })
	}
	if prev.Rollback == nil && ro.Status.Rollback != nil {
		trigger := string(ro.Status.Rollback.Trigger)
		s.metric(func() { rollbacks.WithLabelValues(trigger).Inc() })
	}
}

// notePhase notes the phase the reconcile leaves.
func notePhase(s *scope) {
	ns, name, phase := s.rollout.Namespace, s.rollout.Name, s.rollout.Status.Phase
	s.metric(func() { setPhaseMetric(ns, name, phase) })
}

// core is the pure heart of a reconcile: from what was observed it decides
// (editing the status) and plans the writes that make the world match the
// status. A decision is stored before anything acts on it, so a reconcile
// that decided plans nothing here: the controller stores the decision and
// then plans (afterDecision). ev is what the cluster showed of the world
// the status asked for; without a decision the status still asks for it.
// each is told of every decision, with the status before it.
func core(s *scope, each func(prev *vigilv1.RolloutStatus)) (changes []change, ev evidence) {
	if s.rollout.DeletionTimestamp == nil {
		ev = settle(s, each)
	}
	if s.decided {
		return nil, ev
	}
	return plan(s), ev
}

// settle makes the decisions one observation leads to, one after another,
// as that many reconciles would if nothing changed between them (a pause
// that has ended passes, and the promotion after it is decided too; a
// decision leads to the wait it begins, whose phase and message are then
// stored with it). Each decide still makes one decision, and each is
// checked against the status before it (each). It stops at a decide that
// decides nothing, or after maxDecisions.
func settle(s *scope, each func(prev *vigilv1.RolloutStatus)) evidence {
	var ev evidence
	decided := false
	for range maxDecisions(s) {
		prev := s.rollout.Status.DeepCopy()
		s.decided = false
		ev = observeEvidence(s)
		decide(s, ev)
		if !s.decided {
			break
		}
		decided = true
		each(prev)
	}
	s.decided = decided
	return ev
}

// maxDecisions bounds the decisions of one reconcile: every step, the
// promotion, and the start.
func maxDecisions(s *scope) int { return len(s.steps()) + 2 }

// decisionStored is called once a decision is stored: the reconcile goes
// on from the stored status, which it returns, and has told what it
// decided.
func decisionStored(s *scope) *vigilv1.RolloutStatus {
	s.advancedFrom = -1
	return s.rollout.Status.DeepCopy()
}

// afterDecision plans the writes that act on a decision once it is
// stored, on the same observation: the world is as it was seen, and only
// the status moved. It is what the next reconcile would plan if nothing
// changed meanwhile, and it acts without waiting for one.
func afterDecision(s *scope) []change {
	s.decided = false
	return plan(s)
}

// reconcile runs the phases of one reconcile over s: observe, gate, write
// the evidence owed, decide; a decision is stored (with the evidence it
// owes written after it) before this same reconcile plans, acts and
// checks, so a rollback moves traffic and pods in the reconcile that
// decided it.
func (r *Reconciler) reconcile(ctx context.Context, s *scope) error {
	ro := s.rollout
	before := ro.Status.DeepCopy()
	in := summary{generation: ro.Generation}
	finish := func() {
		in.phase, in.message = ro.Status.Phase, ro.Status.Message
		in.approval = ro.Status.PendingApproval != nil
		setConditions(&ro.Status.Conditions.Conditions, in)
		ro.Status.ObservedGeneration = ro.Generation
		notePhase(s)
	}
	defer func() { finish() }()
	if st := unsupported(ro, r.GatewayAPI, r.Verifier != nil); st != nil {
		in.stalled = st
		setPhase(s, vigilv1.RolloutPhaseBlocked, "%s", st.message)
		return nil
	}
	// Observe, then gate: a phase that holds the Rollout ends the
	// reconcile before anything is decided or acted on (no pods for an
	// unverified revision). Evidence owed is written first, a gate's
	// refusal included.
	h, err := r.observe(ctx, s)
	if err == nil && h == nil {
		if h, err = r.gate(ctx, s); err == nil {
			err = r.writeEvidence(ctx, s)
		}
	}
	if err != nil {
		reconcileErrors.WithLabelValues("Read").Inc()
		return err
	}
	if h != nil {
		in.stalled = h.stalled
		if h.phase != "" {
			setPhase(s, h.phase, "%s", h.message)
		}
		return nil
	}
	changes, ev := core(s, func(prev *vigilv1.RolloutStatus) {
		// The world is as observed, so only the decision itself is
		// checked; its metrics are noted with it.
		r.countViolations(ctx, s, decisionViolations(check(s, nil, prev)))
		noteDecision(s, prev)
	})
	if s.decided {
		// The writes that act on the decisions are planned, and the
		// status stored as they will leave it, so that the decisions'
		// patch is the reconcile's only one unless they owe evidence
		// (which is written after them, before anything acts).
		changes, ev.reached = afterDecision(s), false
		r.observeWeights(s, changes)
		finish()
		if err := s.notes.Store(ctx); err != nil {
			return err
		}
		before = decisionStored(s)
		if err := r.writeEvidence(ctx, s); err != nil {
			return err
		}
	}
	if err := r.apply(ctx, s, changes); err != nil {
		return applyFailed(s, &in, before, err)
	}
	r.countViolations(ctx, s, check(s, changes, before))
	in.settled = len(changes) == 0 && ev.reached
	r.observeWeights(s, changes)
	return nil
}

// applyFailed handles a write that did not succeed: a name collision
// waits for the next reconcile's new name; a write the server refused for
// good (a Failure) stalls the Rollout with its message, tried again only
// after a change or refusedWriteRetry, never in a hot loop; any other is
// an Unknown outcome, returned so the next reconcile re-reads first.
func applyFailed(s *scope, in *summary, before *vigilv1.RolloutStatus, err error) error {
	var refused *refusedWrite
	switch {
	case errors.Is(err, errCollision):
		return nil
	case errors.As(err, &refused):
		in.stalled = &stall{vigilv1.ReasonWriteRefused, refused.Error()}
		setPhase(s, s.rollout.Status.Phase, "%s", refused.Error())
		if c := meta.FindStatusCondition(before.Conditions.Conditions, vigilv1.ConditionStalled); c == nil || c.Reason != vigilv1.ReasonWriteRefused {
			s.record(true, vigilv1.ReasonWriteRefused, "Apply", "%s", refused.Error())
		}
		s.wakeIn(refusedWriteRetry)
		reconcileErrors.WithLabelValues("WriteRefused").Inc()
		return nil
	}
	in.writeError = err
	reconcileErrors.WithLabelValues("WriteUnknown").Inc()
	return err
}

// decisionViolations keeps the violations of a decision: a reconcile that
// only decided has not changed the world, which the previous reconcile
// already checked.
func decisionViolations(vs []violation) []violation {
	var out []violation
	for _, v := range vs {
		if decisionInvariant(v.invariant) {
			out = append(out, v)
		}
	}
	return out
}

// holdForCleanup adds Vigil's finalizer to a Rollout that routes through
// Services, so that its deletion waits until Vigil's selector key has left
// them. The patch is made before the reconcile reads its status baseline.
func (r *Reconciler) holdForCleanup(ctx context.Context, ro *vigilv1.Rollout) error {
	tr := ro.Spec.Strategy.Canary.TrafficRouting
	if ro.DeletionTimestamp != nil || tr == nil || tr.GatewayAPI == nil || slices.Contains(ro.Finalizers, vigilv1.FinalizerRollout) {
		return nil
	}
	orig := ro.DeepCopy()
	ro.Finalizers = append(slices.Clone(ro.Finalizers), vigilv1.FinalizerRollout)
	if err := r.Patch(ctx, ro, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		reconcileErrors.WithLabelValues("WriteUnknown").Inc()
		return fmt.Errorf("adding finalizer %s: %w", vigilv1.FinalizerRollout, err)
	}
	return nil
}

// reconcileDelete makes the only writes a Rollout being deleted gets (see
// planDeletion): no ReplicaSet is created or scaled, and the status is not
// written. Its ReplicaSets and AnalysisRuns go with it through their owner
// references.
func (r *Reconciler) reconcileDelete(ctx context.Context, s *scope) error {
	ro := s.rollout
	if err := r.observeServices(ctx, s); err != nil {
		reconcileErrors.WithLabelValues("Read").Inc()
		return err
	}
	changes, _ := core(s, func(*vigilv1.RolloutStatus) {})
	r.countViolations(ctx, s, check(s, changes, &ro.Status))
	if err := r.apply(ctx, s, changes); err != nil {
		reconcileErrors.WithLabelValues("WriteUnknown").Inc()
		return err
	}
	s.metric(func() { forgetPhaseMetric(ro.Namespace, ro.Name) })
	return nil
}

// observeServices reads the Services a Rollout being deleted routes
// through; one that is gone needs nothing.
func (r *Reconciler) observeServices(ctx context.Context, s *scope) error {
	tr := s.rollout.Spec.Strategy.Canary.TrafficRouting
	if tr == nil || tr.GatewayAPI == nil {
		return nil
	}
	g := &gatewayTraffic{}
	for _, o := range []struct {
		name string
		svc  **corev1.Service
	}{{tr.GatewayAPI.StableService, &g.stableService}, {tr.GatewayAPI.CanaryService, &g.canaryService}} {
		svc := &corev1.Service{}
		err := r.getFresh(ctx, s, o.name, svc)
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return fmt.Errorf("reading Service %s: %w", o.name, err)
		default:
			*o.svc = svc
		}
	}
	s.gateway = g
	return nil
}

// unsupported stalls a Rollout that asks for what this version of Vigil
// cannot do yet, rather than ignoring the request.
func unsupported(ro *vigilv1.Rollout, gatewayAPI, verifier bool) *stall {
	c := ro.Spec.Strategy.Canary
	if ro.Spec.Provenance != nil && !verifier {
		return &stall{vigilv1.ReasonUnsupported, "provenance.policyRef is set, but this controller runs without an image verifier; no revision is rolled out unverified"}
	}
	if rb := ro.Spec.Rollback; rb != nil && rb.RequireDrillWithin != nil {
		return &stall{vigilv1.ReasonUnsupported, "rollback.requireDrillWithin is set, but this version of Vigil runs no rollback drills yet; the Rollout is held"}
	}
	if c.TrafficRouting != nil && c.TrafficRouting.GatewayAPI != nil && !gatewayAPI {
		return &stall{vigilv1.ReasonTrafficNotReady, "trafficRouting.gatewayAPI is set, but the cluster does not serve HTTPRoutes (gateway.networking.k8s.io/v1); install the Gateway API CRDs and restart Vigil"}
	}
	return nil
}

// observe fills the scope from the cluster. A returned hold (a stall)
// means the Rollout cannot go on until someone fixes its input.
func (r *Reconciler) observe(ctx context.Context, s *scope) (h *hold, err error) {
	ro := s.rollout
	key := client.ObjectKeyFromObject(ro)
	if s.readLive = r.expect.mustObserveLive(key, ro.CreationTimestamp.Time); s.readLive {
		defer func() {
			if err == nil {
				r.expect.observedLive(key)
			}
		}()
	}
	var sets appsv1.ReplicaSetList
	mine := []client.ListOption{client.InNamespace(ro.Namespace), client.MatchingLabels{vigilv1.LabelRollout: ro.Name}}
	if err := r.listFresh(ctx, s, "ReplicaSet", &sets, mine, mine); err != nil {
		return nil, fmt.Errorf("listing ReplicaSets: %w", err)
	}
	listed := make([]*appsv1.ReplicaSet, 0, len(sets.Items))
	for i := range sets.Items {
		listed = append(listed, &sets.Items[i])
	}
	if st, err := s.resolve(listed); st != nil || err != nil {
		return stalled(st, err)
	}
	c := ro.Spec.Strategy.Canary

	var approvals vigilv1.ApprovalList
	indexed := []client.ListOption{client.InNamespace(ro.Namespace), client.MatchingFields{indexApprovalRollout: ro.Name}}
	if err := r.listFresh(ctx, s, "Approval", &approvals, indexed, []client.ListOption{client.InNamespace(ro.Namespace)}); err != nil {
		return nil, fmt.Errorf("listing Approvals: %w", err)
	}
	s.approvals = slices.DeleteFunc(approvals.Items, func(a vigilv1.Approval) bool { return a.Spec.RolloutRef.Name != ro.Name })
	if err := r.readRecords(ctx, s); err != nil {
		return nil, err
	}

	if err := r.observeAnalysisRuns(ctx, s); err != nil {
		return nil, err
	}

	if tr := c.TrafficRouting; tr != nil && tr.GatewayAPI != nil {
		return stalled(r.observeGateway(ctx, s, tr.GatewayAPI))
	}
	return nil, nil
}

// stalled holds a Rollout whose input is unusable, without a phase of its own.
func stalled(st *stall, err error) (*hold, error) {
	if st == nil {
		return nil, err
	}
	return &hold{stalled: st}, err
}

// resolve fills what the scope derives from the Rollout and its ReplicaSets:
// the replica bounds, the ReplicaSets the Rollout owns, the template's
// checksum and the revision it runs as. A stall means the spec is unusable.
func (s *scope) resolve(sets []*appsv1.ReplicaSet) (*stall, error) {
	ro := s.rollout
	if err := checkSelector(ro); err != nil {
		return &stall{vigilv1.ReasonInvalidSpec, err.Error()}, nil
	}
	s.replicas = 1
	if ro.Spec.Replicas != nil {
		s.replicas = *ro.Spec.Replicas
	}
	c := ro.Spec.Strategy.Canary
	surge := intstr.FromString("25%")
	if c.MaxSurge != nil {
		surge = *c.MaxSurge
	}
	unavailable := intstr.FromInt32(0)
	if c.MaxUnavailable != nil {
		unavailable = *c.MaxUnavailable
	}
	ms, err := intstr.GetScaledValueFromIntOrPercent(&surge, int(s.replicas), true)
	if err != nil {
		return &stall{vigilv1.ReasonInvalidSpec, fmt.Sprintf("maxSurge: %v", err)}, nil
	}
	mu, err := intstr.GetScaledValueFromIntOrPercent(&unavailable, int(s.replicas), false)
	if err != nil {
		return &stall{vigilv1.ReasonInvalidSpec, fmt.Sprintf("maxUnavailable: %v", err)}, nil
	}
	s.maxSurge, s.maxUnavailable = int32(ms), int32(mu)
	if s.maxSurge == 0 && s.maxUnavailable == 0 {
		s.maxSurge = 1 // with few replicas both can round to zero; never deadlock
	}
	s.sets = nil
	for _, rs := range sets {
		if ownedBy(rs, ro) {
			s.sets = append(s.sets, rs)
		}
	}
	if s.checksum, err = templateChecksum(&ro.Spec.Template); err != nil {
		return nil, err
	}
	s.revision = revisionHash(s.checksum, ptr.Deref(ro.Status.CollisionCount, 0))
	for _, rs := range s.sets {
		if rs.Annotations[vigilv1.AnnotationTemplateChecksum] == s.checksum {
			s.revision = revisionOf(rs)
		}
	}
	return nil, nil
}

// observeGateway reads the HTTPRoute and the two Services.
func (r *Reconciler) observeGateway(ctx context.Context, s *scope, g *vigilv1.GatewayAPITrafficRouting) (*stall, error) {
	gt := &gatewayTraffic{route: &gatewayv1.HTTPRoute{}, stableService: &corev1.Service{}, canaryService: &corev1.Service{}}
	for _, o := range []struct {
		kind, name string
		obj        client.Object
	}{{"HTTPRoute", g.HTTPRoute, gt.route}, {"Service", g.StableService, gt.stableService}, {"Service", g.CanaryService, gt.canaryService}} {
		if err := r.getFresh(ctx, s, o.name, o.obj); err != nil {
			if apierrors.IsNotFound(err) {
				return &stall{vigilv1.ReasonTrafficNotReady, fmt.Sprintf("%s %s does not exist; Vigil waits for it", o.kind, o.name)}, nil
			}
			return nil, fmt.Errorf("reading %s %s: %w", o.kind, o.name, err)
		}
	}
	view, err := traffic.NewRoute(gt.route, g.StableService, g.CanaryService)
	if err != nil {
		return &stall{vigilv1.ReasonTrafficNotReady, err.Error()}, nil
	}
	gt.view = view
	s.gateway = gt
	return nil, nil
}

// observeWeights writes the traffic split this reconcile leaves into the
// status.
func (r *Reconciler) observeWeights(s *scope, changes []change) {
	if s.rollout.Status.StableRevision == "" {
		return
	}
	p := project(s, changes)
	st := &s.rollout.Status
	st.CanaryWeight, st.StableWeight = p.weights(s)
	st.Replicas, st.ReadyReplicas = 0, 0
	for _, rs := range s.sets {
		st.Replicas += rs.Status.Replicas
		st.ReadyReplicas += rs.Status.ReadyReplicas
	}
}

// countViolations counts, logs and reports broken invariants.
func (r *Reconciler) countViolations(ctx context.Context, s *scope, vs []violation) {
	for _, v := range vs {
		s.metric(invariantViolations.WithLabelValues(v.invariant).Inc)
		ctrl.LoggerFrom(ctx).Error(nil, "Invariant violated", "invariant", v.invariant, "detail", v.detail)
		s.record(true, vigilv1.ReasonInvariantViolated, "Check", "%s: %s", v.invariant, v.detail)
	}
}

// stepKind names the kind of step i for metrics.
func stepKind(steps []vigilv1.CanaryStep, i int32) string {
	if int(i) >= len(steps) {
		return "promotion"
	}
	switch s := steps[i]; {
	case s.SetWeight != nil:
		return "setWeight"
	case s.Pause != nil && s.Pause.Duration != nil:
		return "pause"
	case s.Pause != nil, s.Approval != nil:
		return "approval"
	}
	return "analysis"
}

// GatewayAPIServed tells whether the cluster serves HTTPRoutes.
func GatewayAPIServed(mapper meta.RESTMapper) (bool, error) {
	_, err := mapper.RESTMapping(schema.GroupKind{Group: gatewayv1.GroupName, Kind: "HTTPRoute"}, gatewayv1.GroupVersion.Version)
	if meta.IsNoMatchError(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("looking up the HTTPRoute kind: %w", err)
	}
	return true, nil
}
