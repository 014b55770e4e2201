package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/controllers/skeleton"
	"github.com/vigil-dev/vigil/outcome"
	"github.com/vigil-dev/vigil/traffic"
)

// checkSelector makes sure the Rollout's selector is usable and selects its
// own template's pods.
func checkSelector(ro *vigilv1.Rollout) error {
	sel, err := metav1.LabelSelectorAsSelector(ro.Spec.Selector)
	if err != nil {
		return fmt.Errorf("spec.selector is invalid: %w", err)
	}
	if sel.Empty() {
		return fmt.Errorf("spec.selector is empty; it would select every pod in the namespace")
	}
	if !sel.Matches(labels.Set(ro.Spec.Template.Labels)) {
		return fmt.Errorf("spec.selector %s does not match the labels of spec.template", sel)
	}
	return nil
}

// apply makes the planned writes in order and stops at the first error.
// A write the server refuses for good (see skeleton.APIOutcome) is a Failure, returned
// as a *refusedWrite; any other failed or timed-out write is an Unknown
// outcome: the caller returns it and the next reconcile re-reads before it
// acts again.
func (r *Reconciler) apply(ctx context.Context, s *scope, changes []change) error {
	for _, c := range changes {
		err := r.write(ctx, s, c)
		result := outcome.Success
		if err != nil && !errors.Is(err, errCollision) {
			result = skeleton.APIOutcome(err)
		}
		if result == outcome.Failure {
			err = &refusedWrite{change: c, err: err}
		}
		kind := c.kind.String()
		s.metric(func() { apiWrites.WithLabelValues(kind, string(result)).Inc() })
		if err != nil {
			return err
		}
	}
	return nil
}

// refusedWrite is a write the API server refused for good.
type refusedWrite struct {
	change change
	err    error
}

// maxRefusalMessage bounds the server's message in conditions and Events.
const maxRefusalMessage = 1024

func (e *refusedWrite) Error() string {
	msg := outcome.Shorten(e.err.Error(), maxRefusalMessage)
	return fmt.Sprintf("The API server refused to %s, and will refuse it again until something changes: %s", e.change, msg)
}

func (e *refusedWrite) Unwrap() error { return e.err }

// write makes one change. A write whose result does not depend on the
// object's current state (an absolute replica count, a selector key, a
// route's weights at the refs read, terminate) is sent without a
// resourceVersion precondition, which any status write of another
// controller would break: replayed, it writes the same thing again. A
// write that depends on what was read (a deletion of a scaled-down
// ReplicaSet, an Approval's status, the finalizers) keeps the
// precondition. The copy it was planned on is never stale beyond what
// the controller knows it wrote: see expectations.
func (r *Reconciler) write(ctx context.Context, s *scope, c change) error {
	lock := client.MergeFromWithOptimisticLock{}
	switch c.kind {
	case createReplicaSet:
		return r.createReplicaSet(ctx, s, c.revision, c.replicas)
	case scaleReplicaSet:
		rs := c.rs.DeepCopy()
		rs.Spec.Replicas = ptr.To(c.replicas)
		if err := r.Patch(ctx, rs, client.MergeFrom(c.rs)); err != nil {
			return fmt.Errorf("scaling ReplicaSet %s to %d: %w", c.rs.Name, c.replicas, err)
		}
	case deleteReplicaSet:
		pre := metav1.Preconditions{UID: &c.rs.UID, ResourceVersion: &c.rs.ResourceVersion}
		if err := r.Delete(ctx, c.rs, &client.DeleteOptions{Preconditions: &pre}); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting old ReplicaSet %s: %w", c.rs.Name, err)
		}
	case deleteRecord:
		pre := metav1.Preconditions{UID: &c.record.UID}
		if err := r.Delete(ctx, c.record, &client.DeleteOptions{Preconditions: &pre}); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting ReleaseRecord %s: %w", c.record.Name, err)
		}
	case setSelector, clearSelector:
		return r.patchSelector(ctx, c)
	case setWeight:
		return r.setRouteWeight(ctx, s, c.weight)
	case createAnalysisRun:
		return r.createRun(ctx, s, c.run)
	case terminateAnalysisRun:
		run := c.run.DeepCopy()
		run.Spec.Terminate = true
		if err := r.Patch(ctx, run, client.MergeFrom(c.run)); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("terminating AnalysisRun %s: %w", run.Name, err)
		}
	case removeFinalizer:
		ro := s.rollout.DeepCopy()
		ro.Finalizers = slices.DeleteFunc(slices.Clone(ro.Finalizers), func(f string) bool { return f == vigilv1.FinalizerRollout })
		if err := r.Patch(ctx, ro, client.MergeFromWithOptions(s.rollout, lock)); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("removing finalizer %s: %w", vigilv1.FinalizerRollout, err)
		}
	case writeApproval:
		a := c.approval.DeepCopy()
		a.Status = *c.approvalStatus
		if err := r.Status().Patch(ctx, a, client.MergeFromWithOptions(c.approval, lock)); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("writing the status of Approval %s: %w", a.Name, err)
		}
	}
	return nil
}

// patchSelector points a Service at c.revision, or takes Vigil's key out
// of its selector (a Service that is gone needs nothing then).
func (r *Reconciler) patchSelector(ctx context.Context, c change) error {
	svc := c.service.DeepCopy()
	svc.Spec.Selector = maps.Clone(svc.Spec.Selector)
	if c.kind == clearSelector {
		delete(svc.Spec.Selector, vigilv1.LabelPodTemplateHash)
		if err := r.Patch(ctx, svc, client.MergeFrom(c.service)); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("taking Vigil's selector key out of Service %s: %w", c.service.Name, err)
		}
		return nil
	}
	if svc.Spec.Selector == nil {
		svc.Spec.Selector = map[string]string{}
	}
	svc.Spec.Selector[vigilv1.LabelPodTemplateHash] = c.revision
	if err := r.Patch(ctx, svc, client.MergeFrom(c.service)); err != nil {
		return fmt.Errorf("pointing Service %s at revision %s: %w", c.service.Name, c.revision, err)
	}
	return nil
}

// setRouteWeight sets the HTTPRoute's canary weight with a JSON patch
// that tests the backendRefs it sets are still where they were read (see
// traffic.Route.WeightPatch). A route whose rules moved since fails the
// test: that is an Unknown outcome, read again, not a refusal.
func (r *Reconciler) setRouteWeight(ctx context.Context, s *scope, weight int32) error {
	g := s.rollout.Spec.Strategy.Canary.TrafficRouting.GatewayAPI
	read := s.gateway.route
	view, err := traffic.NewRoute(read.DeepCopy(), g.StableService, g.CanaryService)
	if err != nil {
		return err
	}
	body, err := json.Marshal(view.WeightPatch(weight))
	if err != nil {
		return err
	}
	route := read.DeepCopy()
	err = r.Patch(ctx, route, client.RawPatch(types.JSONPatchType, body))
	if err == nil {
		return nil
	}
	if apierrors.ReasonForError(err) == metav1.StatusReasonInvalid && r.routeMoved(ctx, read) {
		return fmt.Errorf("setting HTTPRoute %s canary weight to %d: the route changed since it was read; reading it again", read.Name, weight)
	}
	return fmt.Errorf("setting HTTPRoute %s canary weight to %d: %w", read.Name, weight, err)
}

// routeMoved tells whether the route's spec changed since read was read
// (its generation moved), so that a failed patch test is not a refusal.
func (r *Reconciler) routeMoved(ctx context.Context, read *gatewayv1.HTTPRoute) bool {
	live := &gatewayv1.HTTPRoute{}
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(read), live); err != nil {
		return true // unknown: read again rather than stall
	}
	return live.Generation != read.Generation
}

// createReplicaSet creates the ReplicaSet of the current revision. When the
// name exists already, a ReplicaSet this Rollout owns with the same template
// is adopted (an earlier create whose answer was lost); anything else is a
// name collision, and the collision count moves the name on.
func (r *Reconciler) createReplicaSet(ctx context.Context, s *scope, revision string, replicas int32) error {
	var number int64
	for _, rs := range s.sets {
		number = max(number, revisionNumber(rs))
	}
	rs := newReplicaSet(s.rollout, revision, s.checksum, number+1, replicas, s.pinned)
	err := r.Create(ctx, rs)
	if err == nil || !apierrors.IsAlreadyExists(err) {
		if err != nil {
			return fmt.Errorf("creating ReplicaSet %s: %w", rs.Name, err)
		}
		return nil
	}
	existing := &appsv1.ReplicaSet{}
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(rs), existing); err != nil {
		return fmt.Errorf("reading ReplicaSet %s after AlreadyExists: %w", rs.Name, err)
	}
	if ownedBy(existing, s.rollout) && existing.Annotations[vigilv1.AnnotationTemplateChecksum] == s.checksum {
		return nil // adopted: the next reconcile sees it in the cache
	}
	st := &s.rollout.Status
	st.CollisionCount = ptr.To(ptr.Deref(st.CollisionCount, 0) + 1)
	s.record(true, vigilv1.ReasonNameCollision, "Create", "ReplicaSet %s exists with another template; collision count is now %d", rs.Name, *st.CollisionCount)
	return errCollision
}
