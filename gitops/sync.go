package gitops

import (
	"context"
	"fmt"
	"maps"
	"sort"
	"sync"

	"github.com/argoproj/argo-cd/gitops-engine/pkg/diff"
	"github.com/argoproj/argo-cd/gitops-engine/pkg/health"
	gesync "github.com/argoproj/argo-cd/gitops-engine/pkg/sync"
	"github.com/argoproj/argo-cd/gitops-engine/pkg/sync/common"
	"github.com/argoproj/argo-cd/gitops-engine/pkg/utils/kube"
	"github.com/argoproj/argo-cd/gitops-engine/pkg/utils/tracing"
	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"github.com/vigil-dev/vigil/outcome"
)

// OwnerAnnotation marks every object a GitSync applies with the GitSync's
// namespace/name. Only objects carrying it, with that value, are ever
// pruned or counted as drifted.
const OwnerAnnotation = "vigil.dev/gitsync"

// RevisionAnnotation names the commit whose content an object was last
// applied from. The provenance gate checks an image's source commit against
// it: it is exact even while the GitSync's status still names the commit
// before.
const RevisionAnnotation = "vigil.dev/gitsync-revision"

// Key identifies an object; it is gitops-engine's resource key.
type Key = kube.ResourceKey

// Engine applies objects with gitops-engine and reads them back. It is safe
// for concurrent use.
type Engine struct {
	config  *rest.Config
	manager string
	log     logr.Logger
	kubectl *kube.KubectlCmd
	dyn     dynamic.Interface
	mapper  *restmapper.DeferredDiscoveryRESTMapper
	dryRun  diff.KubeApplier
	cleanup func()
}

// NewEngine prepares an engine that applies as the field manager manager.
func NewEngine(cfg *rest.Config, manager string, log logr.Logger) (*Engine, error) {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating a dynamic client: %w", err)
	}
	disco, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating a discovery client: %w", err)
	}
	kubectl := &kube.KubectlCmd{Log: log, Tracer: tracing.NopTracer{}}
	applier, cleanup, err := kubectl.ManageServerSideDiffDryRuns(cfg)
	if err != nil {
		return nil, fmt.Errorf("preparing server-side diffs: %w", err)
	}
	return &Engine{
		config: cfg, manager: manager, log: log, kubectl: kubectl, dyn: dyn,
		mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disco)),
		dryRun: applier, cleanup: cleanup,
	}, nil
}

// Close removes what the engine staged on disk.
func (e *Engine) Close() { e.cleanup() }

// IsNamespaced tells gitops-engine a kind's scope.
func (e *Engine) IsNamespaced(gk schema.GroupKind) (bool, error) {
	m, err := e.mapping(gk, "")
	if err != nil {
		return false, err
	}
	return m.Scope.Name() == meta.RESTScopeNameNamespace, nil
}

// mapping finds the resource of a kind, refreshing discovery once when the
// kind is new (a CRD installed since the last look).
func (e *Engine) mapping(gk schema.GroupKind, version string) (*meta.RESTMapping, error) {
	var versions []string
	if version != "" {
		versions = []string{version}
	}
	m, err := e.mapper.RESTMapping(gk, versions...)
	if meta.IsNoMatchError(err) {
		e.mapper.Reset()
		m, err = e.mapper.RESTMapping(gk, versions...)
	}
	return m, err
}

// Scope places objects in namespace and marks them as owned by owner and
// applied from revision. A GitSync only applies namespaced objects of its
// own namespace: a cluster-scoped object, one in another namespace, or a
// kind the cluster does not serve is refused, naming the object.
func (e *Engine) Scope(objs []*unstructured.Unstructured, namespace, owner, revision string) error {
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		namespaced, err := e.IsNamespaced(gvk.GroupKind())
		if err != nil {
			return outcome.Failf(ReasonRenderFailed, "%s %s: the cluster does not serve kind %s", o.GetKind(), o.GetName(), gvk.GroupKind())
		}
		if !namespaced {
			return outcome.Failf(ReasonRenderFailed, "%s %s is cluster-scoped; a GitSync applies only objects of its own namespace", o.GetKind(), o.GetName())
		}
		switch o.GetNamespace() {
		case "":
			o.SetNamespace(namespace)
		case namespace:
		default:
			return outcome.Failf(ReasonRenderFailed, "%s %s is in namespace %s; a GitSync applies only objects of its own namespace (%s)",
				o.GetKind(), o.GetName(), o.GetNamespace(), namespace)
		}
		a := o.GetAnnotations()
		if a == nil {
			a = map[string]string{}
		}
		a[OwnerAnnotation] = owner
		a[RevisionAnnotation] = revision
		o.SetAnnotations(a)
	}
	return nil
}

// Live reads the live state of the targets and of the inventory (objects
// applied before). An inventory object that is not marked as owned by
// owner is left out, so it can never be pruned.
func (e *Engine) Live(ctx context.Context, targets []*unstructured.Unstructured, inventory []Key, owner string) (map[Key]*unstructured.Unstructured, error) {
	type want struct {
		key     Key
		version string
		target  bool
	}
	var wants []want
	seen := map[Key]bool{}
	for _, t := range targets {
		k := kube.GetResourceKey(t)
		seen[k] = true
		wants = append(wants, want{k, t.GroupVersionKind().Version, true})
	}
	for _, k := range inventory {
		if !seen[k] {
			seen[k] = true
			wants = append(wants, want{key: k})
		}
	}
	live := make(map[Key]*unstructured.Unstructured, len(wants))
	var mu sync.Mutex
	errs := make([]error, len(wants))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, w := range wants {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			obj, err := e.get(ctx, w.key, w.version)
			switch {
			case err != nil:
				errs[i] = err
			case obj == nil:
			case !w.target && obj.GetAnnotations()[OwnerAnnotation] != owner:
			default:
				mu.Lock()
				live[w.key] = obj
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return live, nil
}

func (e *Engine) get(ctx context.Context, k Key, version string) (*unstructured.Unstructured, error) {
	m, err := e.mapping(schema.GroupKind{Group: k.Group, Kind: k.Kind}, version)
	if meta.IsNoMatchError(err) {
		return nil, nil // the kind is gone, and with it the object
	}
	if err != nil {
		return nil, fmt.Errorf("finding the resource of %s: %w", k, err)
	}
	obj, err := e.dyn.Resource(m.Resource).Namespace(k.Namespace).Get(ctx, k.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", k, err)
	}
	return obj, nil
}

// Drift is one object whose live state differs from Git.
type Drift struct {
	Key Key
	// Missing: the object is in Git but not in the cluster.
	Missing bool
}

// Drifted compares each target with its live object by a server-side
// dry-run apply as the engine's field manager: only fields Git sets count,
// so defaults and other controllers' fields are not drift.
func (e *Engine) Drifted(ctx context.Context, targets []*unstructured.Unstructured, live map[Key]*unstructured.Unstructured) ([]Drift, error) {
	var out []Drift
	for _, t := range targets {
		k := kube.GetResourceKey(t)
		l, ok := live[k]
		if !ok {
			out = append(out, Drift{Key: k, Missing: true})
			continue
		}
		res, err := diff.ServerSideDiff(t.DeepCopy(), l.DeepCopy(),
			diff.WithServerSideDiff(true),
			diff.WithServerSideDryRunner(diff.NewK8sServerSideDryRunner(e.dryRun)),
			diff.WithManager(e.manager),
			diff.WithIgnoreMutationWebhook(false),
			diff.WithLogr(e.log))
		if err != nil {
			return nil, fmt.Errorf("comparing %s with Git: %w", k, err)
		}
		if res.Modified {
			out = append(out, Drift{Key: k})
		}
	}
	return out, nil
}

// Operation is the state of one sync of a revision, carried from one call
// of Sync to the next while waves wait for health.
type Operation struct {
	Revision  string
	Phase     common.OperationPhase
	Message   string
	Results   []common.ResourceSyncResult
	StartedAt metav1.Time
}

// Done reports whether the operation has finished, in success or not.
func (o *Operation) Done() bool {
	return o != nil && o.Phase.Completed()
}

// Sync runs one step of a sync with gitops-engine: server-side apply as
// the engine's field manager, in sync waves, waiting for each wave to be
// healthy, and pruning owned objects that left Git when prune is set. op is
// the state of an operation already under way for the same revision, or
// nil to start one; the returned state is passed to the next call until it
// is Done.
func (e *Engine) Sync(ctx context.Context, revision, namespace string, targets []*unstructured.Unstructured,
	live map[Key]*unstructured.Unstructured, prune bool, op *Operation) (*Operation, error) {
	// Reconcile takes the live objects it matches out of the map it is given.
	rr := gesync.Reconcile(targets, maps.Clone(live), namespace, e)
	background := metav1.DeletePropagationBackground
	opts := []gesync.SyncOpt{
		gesync.WithPrunePropagationPolicy(&background),
		gesync.WithLogr(e.log),
		gesync.WithServerSideApply(true),
		gesync.WithServerSideApplyManager(e.manager),
		gesync.WithClientSideApplyMigration(false, ""),
		gesync.WithPrune(prune),
		gesync.WithSkipHooks(true),
		// The API server validates every apply itself (server-side apply);
		// client-side validation would load the OpenAPI schema per object.
		gesync.WithManifestValidation(false),
		gesync.WithHealthOverride(conditionsHealth{}),
		gesync.WithPermissionValidator(func(obj *unstructured.Unstructured, res *metav1.APIResource) error {
			if !res.Namespaced || obj.GetNamespace() != namespace {
				return fmt.Errorf("%s %s is outside the namespace %s", obj.GetKind(), obj.GetName(), namespace)
			}
			return nil
		}),
	}
	if op != nil && op.Revision == revision && !op.Done() {
		opts = append(opts, gesync.WithInitialState(op.Phase, op.Message, op.Results, op.StartedAt))
	}
	sc, cleanup, err := gesync.NewSyncContext(revision, rr, e.config, e.config, e.kubectl, namespace, opts...)
	if err != nil {
		return nil, fmt.Errorf("preparing the sync: %w", err)
	}
	defer cleanup()
	sc.Sync()
	phase, message, results := sc.GetState()
	sort.Slice(results, func(i, j int) bool { return results[i].Order < results[j].Order })
	next := &Operation{Revision: revision, Phase: phase, Message: message, Results: results, StartedAt: metav1.Now()}
	if op != nil && op.Revision == revision && !op.Done() {
		next.StartedAt = op.StartedAt
	}
	return next, nil
}

// Health is the health of a live object: gitops-engine's checks for
// built-in kinds, and for others the kstatus conditions (Ready, Stalled)
// that Vigil's own kinds set.
func Health(obj *unstructured.Unstructured) (health.HealthStatusCode, string) {
	if obj == nil {
		return health.HealthStatusMissing, ""
	}
	h, err := health.GetResourceHealth(obj, conditionsHealth{})
	if err != nil {
		return health.HealthStatusUnknown, err.Error()
	}
	if h == nil {
		return health.HealthStatusHealthy, ""
	}
	return h.Status, h.Message
}

// conditionsHealth reads kstatus conditions of kinds gitops-engine does not
// know; it answers nil (no opinion) for the rest.
type conditionsHealth struct{}

func (conditionsHealth) GetResourceHealth(obj *unstructured.Unstructured) (*health.HealthStatus, error) {
	if obj.GroupVersionKind().Group == "" || obj.GroupVersionKind().Group == "apps" || obj.GroupVersionKind().Group == "batch" {
		return nil, nil
	}
	conds, found, err := unstructured.NestedSlice(obj.Object, "status", "conditions")
	if err != nil || !found {
		return nil, nil
	}
	get := func(t string) (string, string, bool) {
		for _, c := range conds {
			m, ok := c.(map[string]any)
			if ok && m["type"] == t {
				s, _ := m["status"].(string)
				msg, _ := m["message"].(string)
				return s, msg, true
			}
		}
		return "", "", false
	}
	if g, ok, _ := unstructured.NestedInt64(obj.Object, "status", "observedGeneration"); ok && g < obj.GetGeneration() {
		return &health.HealthStatus{Status: health.HealthStatusProgressing, Message: "the controller has not seen the latest spec"}, nil
	}
	if s, msg, ok := get("Stalled"); ok && s == "True" {
		return &health.HealthStatus{Status: health.HealthStatusDegraded, Message: msg}, nil
	}
	if s, msg, ok := get("Ready"); ok {
		if s == "True" {
			return &health.HealthStatus{Status: health.HealthStatusHealthy, Message: msg}, nil
		}
		return &health.HealthStatus{Status: health.HealthStatusProgressing, Message: msg}, nil
	}
	return nil, nil
}
