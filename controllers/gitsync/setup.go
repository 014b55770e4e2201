package gitsync

import (
	"context"
	"fmt"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/vigil-dev/vigil/gitops"
)

// Options configure the GitSync controller in a manager.
type Options struct {
	// WebhookAddr is where the push webhook receiver listens; "" or "0"
	// turns it off.
	WebhookAddr string
	// Limits bound each fetch; zero means gitops.DefaultLimits.
	Limits gitops.Limits
	// WorkDir stages fetches; "" is the system's temporary directory.
	WorkDir string
	// Workers is how many GitSyncs are reconciled at once (default 2).
	Workers int
}

// Setup registers the GitSync controller, its engine and, with an
// address, the push webhook receiver's server with the manager. It returns
// the receiver, which tests may serve themselves.
func Setup(mgr ctrl.Manager, o Options) (*Receiver, error) {
	engine, err := gitops.NewEngine(mgr.GetConfig(), FieldManager, mgr.GetLogger().WithName("gitops-engine").V(1))
	if err != nil {
		return nil, fmt.Errorf("starting the gitops engine: %w", err)
	}
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		<-ctx.Done()
		engine.Close()
		return nil
	})); err != nil {
		return nil, err
	}
	pushes := make(chan event.GenericEvent, 256)
	r := &Reconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("vigil-gitsync"),
		Engine:    engine,
		Limits:    o.Limits,
		WorkDir:   o.WorkDir,
		Pushes:    pushes,
		Workers:   o.Workers,
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the GitSync controller: %w", err)
	}
	rc := NewReceiver(mgr.GetClient(), mgr.GetAPIReader(), pushes)
	if o.WebhookAddr == "" || o.WebhookAddr == "0" {
		return rc, nil
	}
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		return rc.Serve(ctx, o.WebhookAddr)
	})); err != nil {
		return nil, err
	}
	return rc, nil
}
