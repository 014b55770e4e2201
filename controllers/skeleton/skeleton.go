// Package skeleton is the shape every Vigil controller's reconcile has:
//
//  1. get the object (NotFound is not an error: it is gone);
//  2. prepare it (add a finalizer) before anything else;
//  3. copy it as read;
//  4. run the controller's phases, which change the status in memory only
//     and say what to tell (Events, metrics) through Notes;
//  5. patch the status once, from a defer, only when it changed, with an
//     optimistic lock on the resourceVersion that was read;
//  6. only once that patch succeeded, record the Events and metrics: what
//     was not stored is not announced, and the next reconcile, which reads
//     again, decides and tells it again.
//
// A controller whose decisions must be stored before it acts on them, and
// that must act at once (a rollback), stores the status mid-reconcile with
// Notes.Store: the same patch, with the same lock, as step 5, after which
// the reconcile goes on from the stored object and the final patch sends
// only what changed since.
//
// Conditions are computed by each controller's pure function of what its
// reconcile learned; time comes from an injected clock.
package skeleton

import (
	"context"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Object is a kind the skeleton reconciles: a pointer to its Go type.
type Object[T any] interface {
	*T
	client.Object
}

// Loop is the skeleton for one kind.
type Loop[T any, P Object[T]] struct {
	// Kind names the kind in errors and in the patch-failure metric.
	Kind string
	// Reader reads the object: the manager's cache, or the API server
	// where no decision may be made on a stale copy.
	Reader client.Reader
	// Writer patches the status.
	Writer   client.StatusClient
	Recorder events.EventRecorder
	// Status is the part of the object a reconcile owns; it is patched
	// when it differs from what was read.
	Status func(P) any
	// Prepare, when set, runs before the object is copied, for writes to
	// the object itself (a finalizer); its error ends the reconcile.
	Prepare func(context.Context, P) error
	// Gone, when set, is told the name of an object that no longer exists.
	Gone func(types.NamespacedName)
}

// Func is one controller's work on one object: it changes obj's status in
// memory and notes what to tell once the status is stored.
type Func[P any] func(ctx context.Context, obj P, notes *Notes) (ctrl.Result, error)

// Run reconciles the object req names with reconcile.
func (l Loop[T, P]) Run(ctx context.Context, req ctrl.Request, reconcile Func[P]) (result ctrl.Result, err error) {
	obj := P(new(T))
	if err := l.Reader.Get(ctx, req.NamespacedName, obj); err != nil {
		if apierrors.IsNotFound(err) {
			if l.Gone != nil {
				l.Gone(req.NamespacedName)
			}
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("reading %s: %w", l.Kind, err)
	}
	if l.Prepare != nil {
		if err := l.Prepare(ctx, obj); err != nil {
			return ctrl.Result{}, err
		}
	}
	before := obj.DeepCopyObject().(P)
	notes := &Notes{}
	storeFailed := false
	notes.store = func(ctx context.Context) error {
		if err := l.patch(ctx, "Store", before, obj); err != nil {
			storeFailed = true
			return err
		}
		before = obj.DeepCopyObject().(P)
		notes.tell(l.Recorder)
		return nil
	}
	defer func() {
		if storeFailed {
			return // the reconcile returns the failed Store's error
		}
		if perr := l.patch(ctx, "End", before, obj); perr != nil {
			result, err = ctrl.Result{}, errors.Join(err, perr)
			return
		}
		notes.tell(l.Recorder)
	}()
	return reconcile(ctx, obj, notes)
}

// patch stores the status when it changed, with the resourceVersion read.
// An object deleted meanwhile needs no status. at says which patch of the
// reconcile it is (Store, End), for the metric.
func (l Loop[T, P]) patch(ctx context.Context, at string, before, obj P) error {
	if equality.Semantic.DeepEqual(l.Status(before), l.Status(obj)) {
		return nil
	}
	patch := client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})
	err := l.Writer.Status().Patch(ctx, obj, patch)
	switch {
	case err == nil:
		statusPatches.WithLabelValues(l.Kind, at).Inc()
		return nil
	case apierrors.IsNotFound(err):
		return nil
	case apierrors.IsConflict(err):
		patchFailures.WithLabelValues(l.Kind, "Conflict").Inc()
	default:
		patchFailures.WithLabelValues(l.Kind, "WriteUnknown").Inc()
	}
	return fmt.Errorf("patching %s status: %w", l.Kind, err)
}

// patchFailures counts status patches that failed; it is the one metric a
// reconcile whose status was not stored moves.
var patchFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "vigil_status_patch_failures_total",
	Help: "Status patches that failed, by kind and reason (Conflict: the object changed since it was read; WriteUnknown). The reconcile's Events and metrics are not recorded, and it runs again.",
}, []string{"kind", "reason"})

// statusPatches counts the status patches stored, by kind and by which
// patch of the reconcile (Store: a decision stored before acting; End).
var statusPatches = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "vigil_status_patches_total",
	Help: "Status patches stored, by kind and by which patch of the reconcile: Store (a decision stored before the reconcile acts on it) or End.",
}, []string{"kind", "at"})

func init() { metrics.Registry.MustRegister(patchFailures, statusPatches) }

// Notes is what one reconcile tells once its status is stored.
type Notes struct {
	events  []note
	metrics []func()
	store   func(context.Context) error
}

// Store patches the status now, as the end of the reconcile would (only
// when it changed, with the lock on the resourceVersion last stored), and
// then tells what was noted so far. The object is updated from the
// server's answer, so the reconcile goes on from what is stored. A failed
// Store stores and tells nothing: the reconcile must return its error
// without acting on the unstored status.
func (n *Notes) Store(ctx context.Context) error {
	if n.store == nil {
		return errors.New("skeleton: Notes.Store outside Loop.Run")
	}
	return n.store(ctx)
}

type note struct {
	regarding, related  runtime.Object
	typ, reason, action string
	message             string
}

// Event notes an Event about regarding (and, when not nil, the related
// object it concerns, so Events about two objects are never merged).
func (n *Notes) Event(regarding, related runtime.Object, warning bool, reason, action, format string, args ...any) {
	typ := corev1.EventTypeNormal
	if warning {
		typ = corev1.EventTypeWarning
	}
	n.events = append(n.events, note{regarding, related, typ, reason, action, fmt.Sprintf(format, args...)})
}

// Metric notes a change to metrics, made once the status is stored.
func (n *Notes) Metric(f func()) { n.metrics = append(n.metrics, f) }

// tell records the Events and metrics noted so far, once each.
func (n *Notes) tell(r events.EventRecorder) {
	for _, f := range n.metrics {
		f()
	}
	for _, e := range n.events {
		r.Eventf(e.regarding, e.related, e.typ, e.reason, e.action, "%s", e.message)
	}
	n.events, n.metrics = nil, nil
}
