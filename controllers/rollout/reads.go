package rollout

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/controllers/skeleton"
	"github.com/vigil-dev/vigil/outcome"
)

// Reads. A reconcile reads from the manager's cache, and reads a kind from
// the API server only when the cache is behind what this controller wrote
// (see expectations); each such read counts in
// vigil_rollout_cache_behind_total, once the reconcile's status is stored
// (the Rollout's own live read at once: it comes before the reconcile).

// expectingClient is the controller's client: its writes are noted in
// the expectations (the resourceVersion a write answered with, gone after
// a deletion, unknown after an Unknown outcome; a refused write changed
// nothing), so every write the controller makes is expected, whichever
// code path makes it.
type expectingClient struct {
	client.Client
	expect *expectations
}

func (c expectingClient) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	err := c.Client.Create(ctx, obj, opts...)
	c.note(obj, false, err)
	return err
}

func (c expectingClient) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	err := c.Client.Patch(ctx, obj, patch, opts...)
	c.note(obj, false, err)
	return err
}

func (c expectingClient) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	err := c.Client.Update(ctx, obj, opts...)
	c.note(obj, false, err)
	return err
}

func (c expectingClient) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	err := c.Client.Delete(ctx, obj, opts...)
	if apierrors.IsNotFound(err) {
		c.note(obj, true, nil)
	} else {
		c.note(obj, true, err)
	}
	return err
}

func (c expectingClient) Status() client.SubResourceWriter {
	return expectingStatus{c.Client.Status(), c}
}

type expectingStatus struct {
	client.SubResourceWriter
	c expectingClient
}

func (w expectingStatus) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	err := w.SubResourceWriter.Patch(ctx, obj, patch, opts...)
	w.c.note(obj, false, err)
	return err
}

func (w expectingStatus) Update(ctx context.Context, obj client.Object, opts ...client.SubResourceUpdateOption) error {
	err := w.SubResourceWriter.Update(ctx, obj, opts...)
	w.c.note(obj, false, err)
	return err
}

// note remembers the outcome of a write of obj.
func (c expectingClient) note(obj client.Object, deleted bool, err error) {
	g, err2 := c.groupOf(obj)
	if err2 != nil {
		return // a kind outside the scheme is never read back
	}
	switch {
	case err == nil && deleted:
		c.expect.wrote(g, obj.GetName(), expectation{gone: true})
	case err == nil:
		c.expect.wrote(g, obj.GetName(), expectation{resourceVersion: obj.GetResourceVersion()})
	case skeleton.APIOutcome(err) != outcome.Failure:
		c.expect.wrote(g, obj.GetName(), expectation{unknown: true})
	}
}

// groupOf is the group of objects obj is read back in: a Rollout's
// objects by its label (or an Approval's rolloutRef), a Rollout itself by
// its own name, anything else by name alone.
func (c expectingClient) groupOf(obj client.Object) (group, error) {
	gvk, err := c.GroupVersionKindFor(obj)
	if err != nil {
		return group{}, err
	}
	g := group{kind: gvk.Kind, namespace: obj.GetNamespace(), rollout: obj.GetLabels()[vigilv1.LabelRollout]}
	switch o := obj.(type) {
	case *vigilv1.Rollout:
		g.rollout = o.Name
	case *vigilv1.Approval:
		g.rollout = o.Spec.RolloutRef.Name
	case *corev1.Service, *gatewayv1.HTTPRoute:
		g.rollout = ""
	}
	return g, nil
}

// readRollout reads a Rollout from the cache, or from the API server when
// this process has not read it live yet or the cache is behind the
// controller's own last write of it.
func (r *Reconciler) readRollout(ctx context.Context, key types.NamespacedName, ro *vigilv1.Rollout) error {
	g := group{"Rollout", key.Namespace, key.Name}
	if r.expect.wasReadLive(key) {
		err := r.Get(ctx, key, ro)
		if client.IgnoreNotFound(err) != nil {
			return err
		}
		if !r.expect.behind(g, key.Name, cached{err == nil, ro.ResourceVersion}) {
			return err
		}
	}
	cacheBehind.WithLabelValues(g.kind).Inc()
	if err := r.APIReader.Get(ctx, key, ro); err != nil {
		return err
	}
	r.expect.readLive(key)
	r.expect.wrote(g, key.Name, expectation{resourceVersion: ro.ResourceVersion})
	return nil
}

// rolloutReader reads Rollouts for the skeleton (readRollout).
type rolloutReader struct{ r *Reconciler }

func (rr rolloutReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	ro, ok := obj.(*vigilv1.Rollout)
	if !ok {
		return fmt.Errorf("rolloutReader reads Rollouts, not %T", obj)
	}
	return rr.r.readRollout(ctx, key, ro)
}

func (rr rolloutReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	return rr.r.List(ctx, list, opts...)
}

// getFresh reads one object of the Rollout's namespace by name (a
// Service or an HTTPRoute, which Rollouts share) from the cache, or from
// the API server when the cache is behind.
func (r *Reconciler) getFresh(ctx context.Context, s *scope, name string, obj client.Object) error {
	at := types.NamespacedName{Namespace: s.rollout.Namespace, Name: name}
	gvk, err := r.GroupVersionKindFor(obj)
	if err != nil {
		return err
	}
	kind := gvk.Kind
	g := group{kind: kind, namespace: at.Namespace} // as expectingClient.groupOf names it
	if !s.readLive {
		err = r.Get(ctx, at, obj)
		if client.IgnoreNotFound(err) != nil {
			return err
		}
		if !r.expect.behind(g, name, cached{err == nil, obj.GetResourceVersion()}) {
			return err
		}
	}
	s.metric(cacheBehind.WithLabelValues(kind).Inc)
	err = r.APIReader.Get(ctx, at, obj)
	switch {
	case apierrors.IsNotFound(err):
		r.expect.wrote(g, name, expectation{gone: true})
	case err == nil:
		r.expect.wrote(g, name, expectation{resourceVersion: obj.GetResourceVersion()})
	}
	return err
}

// listFresh lists the Rollout's objects of one kind from the cache
// (fromCache), or from the API server (live) when the cache does not show
// every one of them as this controller last wrote it.
func (r *Reconciler) listFresh(ctx context.Context, s *scope, kind string, list client.ObjectList, fromCache, live []client.ListOption) error {
	g := group{kind, s.rollout.Namespace, s.rollout.Name}
	if !s.readLive {
		if err := r.List(ctx, list, fromCache...); err != nil {
			return err
		}
		behind, err := r.listBehind(g, list)
		if err != nil || !behind {
			return err
		}
	}
	s.metric(cacheBehind.WithLabelValues(kind).Inc)
	if err := r.APIReader.List(ctx, list, live...); err != nil {
		return err
	}
	shown, err := versions(list, func(o runtime.Object) bool {
		a, ok := o.(*vigilv1.Approval) // listed live by namespace alone
		return !ok || a.Spec.RolloutRef.Name == s.rollout.Name
	})
	if err != nil {
		return err
	}
	// What the API server showed is what the cache must show from now
	// on: the objects listed at least as new, the expected ones not
	// listed gone. (After a start, the cache's first list may be older
	// than what this live list shows of the process before.)
	for _, name := range r.expect.pending(g) {
		if _, ok := shown[name]; !ok {
			r.expect.wrote(g, name, expectation{gone: true})
		}
	}
	for name, rv := range shown {
		r.expect.wrote(g, name, expectation{resourceVersion: rv})
	}
	return nil
}

// listBehind tells whether a list from the cache fails to show one of
// the group's objects as the controller last wrote it.
func (r *Reconciler) listBehind(g group, list client.ObjectList) (bool, error) {
	pending := r.expect.pending(g)
	if len(pending) == 0 {
		return false, nil
	}
	shown, err := versions(list, func(runtime.Object) bool { return true })
	if err != nil {
		return false, err
	}
	behind := false
	for _, name := range pending {
		rv, ok := shown[name]
		behind = r.expect.behind(g, name, cached{ok, rv}) || behind
	}
	return behind, nil
}

// versions maps the names of a list's items that keep says are of the
// group to their resourceVersions.
func versions(list client.ObjectList, keep func(runtime.Object) bool) (map[string]string, error) {
	items, err := meta.ExtractList(list)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(items))
	for _, item := range items {
		if !keep(item) {
			continue
		}
		o, err := meta.Accessor(item)
		if err != nil {
			return nil, err
		}
		out[o.GetName()] = o.GetResourceVersion()
	}
	return out, nil
}
