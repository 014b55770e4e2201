// Package gitsync is the GitSync controller: on every interval, or at once
// when a signed push webhook names the repository, it asks the server which
// commit the ref names, fetches it if it is new (shallow, within limits),
// checks its signature when verify is set, renders it, and syncs it with
// gitops-engine; between commits it compares the cluster with Git and
// reverts or reports drift. A commit that fails a check is never applied:
// the last good commit stays in place and a condition says why.
package gitsync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/controllers/secret"
	"github.com/vigil-dev/vigil/controllers/skeleton"
	"github.com/vigil-dev/vigil/gitops"
	"github.com/vigil-dev/vigil/outcome"
)

// The GitSync controller applies these kinds, in the GitSync's own
// namespace only; to let GitSyncs apply more kinds, grant them to the
// controller's ServiceAccount. Secrets are deliberately not among them.
// +kubebuilder:rbac:groups=vigil.dev,resources=gitsyncs,verbs=get;list;watch
// +kubebuilder:rbac:groups=vigil.dev,resources=gitsyncs/status,verbs=patch
// +kubebuilder:rbac:groups=vigil.dev,resources=rollouts;analysistemplates;trustpolicies;rollbackdrills,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=services;configmaps;serviceaccounts,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=httproutes,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get

// FieldManager is the server-side apply field manager of everything a
// GitSync applies.
const FieldManager = "vigil-gitsync"

// Reconciler reconciles GitSyncs.
type Reconciler struct {
	client.Client
	// APIReader reads credential and key Secrets one at a time, uncached.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Clock     clock.PassiveClock
	Engine    *gitops.Engine
	Limits    gitops.Limits
	// WorkDir holds fetches while they are read; each is removed after.
	WorkDir string
	// Pushes carries GitSyncs named by verified push webhooks.
	Pushes chan event.GenericEvent
	// Workers is how many GitSyncs are reconciled at once.
	Workers int

	mu     sync.Mutex
	states map[types.NamespacedName]*state
}

// state is what the controller remembers of one GitSync between
// reconciles. Losing it (a restart) costs one fetch.
type state struct {
	uid     types.UID // a GitSync deleted and made again starts afresh
	key     string    // generation and verification keys the result is for
	current *rendered
	err     error // why current's commit was refused, if it was
	applied *rendered
	op      *gitops.Operation
	// unknowns counts the fetches in a row whose outcome was Unknown.
	unknowns int
}

// rendered is one commit turned into objects.
type rendered struct {
	rev    string
	signer string
	objs   []*unstructured.Unstructured
}

// scope is what one reconcile of a GitSync learns; conditions and Events
// are computed from it once the phases are done.
type scope struct {
	gs    *vigilv1.GitSync
	st    *state
	now   time.Time
	notes *skeleton.Notes
	// suspended: spec.suspend is set, and nothing was fetched or applied.
	suspended bool
	// fetched is the outcome of resolving, fetching, verifying and
	// rendering the commit the ref names now.
	fetched outcome.Outcome
	// target is what the sync step made the cluster match: the fetched
	// commit (fresh), or the last applied one standing in for a refused
	// newer one; nil when nothing was synced.
	target *rendered
	fresh  bool
	// synced is how the sync step ended; drift and extra are what it
	// found, and healed says it re-applied drifted objects.
	synced      syncResult
	syncMessage string
	drift       []gitops.Drift
	extra       []gitops.Key
	checked     bool // drift and extra were looked for
	healed      bool
}

// SetupWithManager registers the controller.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Limits == (gitops.Limits{}) {
		r.Limits = gitops.DefaultLimits()
	}
	if r.Workers <= 0 {
		r.Workers = 2 // each may hold a tree of up to Limits.TreeBytes
	}
	if r.Pushes == nil {
		r.Pushes = make(chan event.GenericEvent, 256)
	}
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&vigilv1.GitSync{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WatchesRawSource(source.Channel(r.Pushes, &handler.EnqueueRequestForObject{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.Workers}).
		Complete(r)
}

// Reconcile fetches, verifies, renders and syncs one GitSync, on the shared
// skeleton: one status patch with an optimistic lock, Events and metrics
// only once it is stored.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return skeleton.Loop[vigilv1.GitSync, *vigilv1.GitSync]{
		Kind: "GitSync", Reader: r.Client, Writer: r.Client, Recorder: r.Recorder,
		Status: func(gs *vigilv1.GitSync) any { return &gs.Status },
		Gone:   r.forget,
	}.Run(ctx, req, r.reconcileSync)
}

func (r *Reconciler) reconcileSync(ctx context.Context, gs *vigilv1.GitSync, notes *skeleton.Notes) (ctrl.Result, error) {
	before := gs.Status.DeepCopy()
	s := &scope{gs: gs, now: r.Clock.Now(), notes: notes}
	result, err := r.phases(ctx, s)
	gs.Status.ObservedGeneration = gs.Generation
	setConditions(s)
	announce(s, before)
	return result, err
}

// phases fetches the ref's commit and syncs it (or, when it was refused,
// the last applied one); it returns when to look again.
func (r *Reconciler) phases(ctx context.Context, s *scope) (ctrl.Result, error) {
	gs := s.gs
	if gs.Spec.Suspend {
		s.suspended = true
		return ctrl.Result{}, nil
	}
	interval := durationOr(&gs.Spec.Interval, 5*time.Minute)
	s.st = r.state(gs)
	target, err := r.fetch(ctx, s)
	s.fetched = gitops.Outcome(err)
	if s.fetched.Result == outcome.Unknown {
		s.st.unknowns++
	} else {
		s.st.unknowns = 0
	}
	if err != nil {
		target = s.st.applied
	}
	if target == nil {
		return ctrl.Result{RequeueAfter: retryAfter(s, interval)}, nil
	}
	s.target, s.fresh = target, err == nil
	wait, err := r.sync(ctx, s)
	if err != nil {
		return ctrl.Result{}, err
	}
	if s.fetched.Result != outcome.Success {
		wait = retryAfter(s, interval)
	}
	if wait == 0 || wait > interval {
		wait = interval
	}
	return ctrl.Result{RequeueAfter: wait}, nil
}

// retryAfter is when to look again after a fetch went wrong: at the next
// interval when the commit was refused (a Failure), and on the Unknown
// backoff when the server did not answer: 10s (or the interval, if
// shorter), doubling up to the interval.
func retryAfter(s *scope, interval time.Duration) time.Duration {
	if s.fetched.Result != outcome.Unknown {
		return interval
	}
	return outcome.Backoff{Initial: min(interval, 10*time.Second), Max: interval, Budget: -1}.Delay(s.st.unknowns)
}

// job is one fetch: where from, with which keys, into which directory.
type job struct {
	src     gitops.Source
	trusted trust
	rev     string
	dir     string
}

// fetch returns the objects of the commit the ref names now, fetching and
// checking it only when it is new (or the spec or trusted keys changed).
func (r *Reconciler) fetch(ctx context.Context, s *scope) (*rendered, error) {
	gs, st := s.gs, s.st
	start := r.Clock.Now()
	tctx, cancel := context.WithTimeout(ctx, durationOr(gs.Spec.Timeout, time.Minute))
	defer cancel()
	src, trusted, err := r.source(tctx, gs)
	if err != nil {
		return nil, r.observeFetch(s, start, err)
	}
	rev, err := gitops.Resolve(tctx, src)
	gs.Status.LastFetchTime = &metav1.Time{Time: r.Clock.Now()}
	if err != nil {
		return nil, r.observeFetch(s, start, err)
	}
	key := fmt.Sprintf("%d/%s/%s", gs.Generation, trusted.digest, gs.Annotations[AcceptRewriteAnnotation])
	if st.key == key && st.current != nil && st.current.rev == rev {
		s.notes.Metric(fetches.WithLabelValues(outcomeUnchanged, "").Inc)
		gs.Status.LastAttemptedRevision = rev // a status that was not stored learns it again
		return st.current, st.err
	}
	dir, err := os.MkdirTemp(r.WorkDir, "gitsync-")
	if err != nil {
		return nil, fmt.Errorf("staging the fetch: %w", err)
	}
	defer os.RemoveAll(dir)
	j := &job{src: src, trusted: trusted, rev: rev, dir: dir}
	var got *rendered
	snap, err := r.fastForward(tctx, gs, j)
	if err == nil {
		got, err = r.render(tctx, gs, j, snap)
	}
	if outcome.IsUnknown(err) {
		return nil, r.observeFetch(s, start, err) // says nothing of the commit: not remembered
	}
	if got == nil {
		got = &rendered{rev: rev} // refused before its commit was read
	}
	st.key, st.current, st.err = key, got, err
	gs.Status.LastAttemptedRevision = got.rev
	return got, r.observeFetch(s, start, err)
}

// AcceptRewriteAnnotation on a GitSync names a commit to apply even though
// the branch's history was rewritten to reach it.
const AcceptRewriteAnnotation = "vigil.dev/accept-history-rewrite"

// fastForward refuses a new commit of a branch that does not contain the
// commit last applied: the branch was force-pushed, and what was reviewed
// and deployed is no longer in its history. A person accepts the new
// commit by naming it in AcceptRewriteAnnotation. When it fetched the
// history, it returns the new commit from it, so that it is not fetched
// again.
func (r *Reconciler) fastForward(ctx context.Context, gs *vigilv1.GitSync, j *job) (*gitops.Snapshot, error) {
	last, rev := gs.Status.LastAppliedRevision, j.rev
	if j.src.Ref.Branch == "" || last == "" || last == rev || gs.Annotations[AcceptRewriteAnnotation] == rev {
		return nil, nil
	}
	ref := "refs/heads/" + j.src.Ref.Branch
	h, err := gitops.FetchHistory(ctx, j.src.URL, j.src.Auth, []string{ref}, j.dir, r.Limits)
	if o := gitops.Outcome(err); err != nil && o.Reason == gitops.ReasonLimitExceeded {
		return nil, outcome.Failf(o.Reason, "checking that %s only moved forward from %s needs its history, which is larger than the limits: %v; "+
			"to apply %s without the check, annotate this GitSync with %s=%s", ref, last, err, rev, AcceptRewriteAnnotation, rev)
	}
	if err != nil {
		return nil, err
	}
	ok, err := h.IsAncestor(last, rev)
	if err != nil {
		// The branch moved again since it was resolved: look again soon.
		return nil, &outcome.Error{Result: outcome.Unknown, Reason: gitops.ReasonUnreachable, Err: err}
	}
	if ok {
		return h.Snapshot(rev)
	}
	return nil, outcome.Failf(gitops.ReasonHistoryRewritten,
		"%s moved from %s to %s, which does not contain it: the branch's history was rewritten (force-push). %s stays applied; "+
			"to apply %s anyway, annotate this GitSync with %s=%s", ref, last, rev, last, rev, AcceptRewriteAnnotation, rev)
}

// render fetches (unless snap already holds it), verifies and renders one
// commit; on a refused commit it still returns the commit (without objects)
// so status can name it.
func (r *Reconciler) render(ctx context.Context, gs *vigilv1.GitSync, j *job, snap *gitops.Snapshot) (*rendered, error) {
	var err error
	if snap == nil {
		if snap, err = gitops.Fetch(ctx, j.src, j.dir, r.Limits); err != nil {
			return nil, err
		}
	}
	out := &rendered{rev: snap.Commit}
	if v := gs.Spec.Verify; v != nil {
		if out.signer, err = snap.Verify(string(v.Mode), j.trusted.keys); err != nil {
			return out, err
		}
	}
	fs, err := snap.Tree()
	if err != nil {
		return out, err
	}
	objs, err := gitops.Render(fs, gs.Spec.Path, r.Limits)
	if err != nil {
		return out, err
	}
	if err := r.Engine.Scope(objs, gs.Namespace, owner(gs), snap.Commit); err != nil {
		return out, err
	}
	out.objs = objs
	return out, nil
}

// observeFetch notes the fetch's outcome and latency metrics.
func (r *Reconciler) observeFetch(s *scope, start time.Time, err error) error {
	o := gitops.Outcome(err)
	took := r.Clock.Since(start).Seconds()
	s.notes.Metric(func() {
		fetches.WithLabelValues(string(o.Result), o.Reason).Inc()
		fetchLatency.WithLabelValues(string(o.Result)).Observe(took)
	})
	return err
}

// trust is the verification keys a GitSync names, and a digest of them so
// a change of keys re-verifies the commit.
type trust struct {
	keys   map[string][]byte
	digest string
}

// source builds the fetch source with its credentials, and reads the
// verification keys. A Secret that is missing or unusable is a Failure.
func (r *Reconciler) source(ctx context.Context, gs *vigilv1.GitSync) (gitops.Source, trust, error) {
	src := gitops.Source{URL: gs.Spec.URL, Ref: gitops.Ref{Branch: gs.Spec.Ref.Branch, Tag: gs.Spec.Ref.Tag, Commit: gs.Spec.Ref.Commit}}
	if ref := gs.Spec.SecretRef; ref != nil {
		data, err := secret.Data(ctx, r.APIReader, gs.Namespace, ref.Name)
		if err != nil {
			return src, trust{}, err
		}
		if src.Auth, err = gitops.Auth(gs.Spec.URL, data); err != nil {
			return src, trust{}, err
		}
	}
	var t trust
	if v := gs.Spec.Verify; v != nil {
		keys, err := secret.Data(ctx, r.APIReader, gs.Namespace, v.SecretRef.Name)
		if err != nil {
			return src, trust{}, err
		}
		h := sha256.New()
		names := make([]string, 0, len(keys))
		for k := range keys {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			fmt.Fprintf(h, "%s=%x;", k, keys[k])
		}
		t = trust{keys: keys, digest: string(v.Mode) + ":" + hex.EncodeToString(h.Sum(nil))}
	}
	return src, t, nil
}

func (r *Reconciler) state(gs *vigilv1.GitSync) *state {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.states == nil {
		r.states = map[types.NamespacedName]*state{}
	}
	name := types.NamespacedName{Namespace: gs.Namespace, Name: gs.Name}
	st, ok := r.states[name]
	if !ok || st.uid != gs.UID {
		st = &state{uid: gs.UID}
		r.states[name] = st
	}
	return st
}

// forget drops the state of a deleted GitSync.
func (r *Reconciler) forget(name types.NamespacedName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.states, name)
}

func owner(gs *vigilv1.GitSync) string { return gs.Namespace + "/" + gs.Name }

func durationOr(d *vigilv1.Duration, def time.Duration) time.Duration {
	if d != nil {
		if v, err := d.Get(); err == nil && v > 0 {
			return v
		}
	}
	return def
}
