// Command vigil-controller runs Vigil's controllers in a controller-runtime
// manager, with health and readiness probes, a Prometheus metrics endpoint
// and optional leader election.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/vigil-dev/vigil/analysis"
	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/controllers/analysisrun"
	"github.com/vigil-dev/vigil/controllers/gitsync"
	"github.com/vigil-dev/vigil/controllers/rollout"
	"github.com/vigil-dev/vigil/controllers/trustpolicy"
	"github.com/vigil-dev/vigil/gitops"
	"github.com/vigil-dev/vigil/provenance"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// The manager records Events; controllers add their own rules next to their code.
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// options are the manager's command-line settings.
type options struct {
	metricsAddr      string
	probeAddr        string
	leaderElect      bool
	leaderElectionID string
	leaderElectionNS string
	webhookAddr      string
	zap              zap.Options
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("vigil-controller", flag.ContinueOnError)
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", ":8080", "address the Prometheus metrics endpoint binds to; 0 disables it")
	fs.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "address the /healthz and /readyz probes bind to")
	fs.BoolVar(&o.leaderElect, "leader-elect", false, "elect a leader so that only one replica reconciles at a time")
	fs.StringVar(&o.leaderElectionID, "leader-election-id", "vigil-controller.vigil.dev", "name of the Lease used for leader election")
	fs.StringVar(&o.leaderElectionNS, "leader-election-namespace", "", "namespace of the Lease; defaults to the pod's namespace")
	fs.StringVar(&o.webhookAddr, "push-webhook-bind-address", ":9443", "address the Git push webhook receiver ("+gitsync.PushPath+") binds to; 0 disables it")
	o.zap = zap.Options{Development: false}
	o.zap.BindFlags(fs)
	return o, fs.Parse(args)
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		os.Exit(2)
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&o.zap)))
	cfg, err := ctrl.GetConfig()
	if err != nil {
		ctrl.Log.Error(err, "Unable to load a kubeconfig")
		os.Exit(1)
	}
	if err := run(ctrl.SetupSignalHandler(), cfg, o); err != nil {
		ctrl.Log.Error(err, "Manager stopped")
		os.Exit(1)
	}
}

// newScheme holds the built-in kinds and Vigil's.
func newScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("adding client-go kinds: %w", err)
	}
	if err := vigilv1.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("adding vigil.dev kinds: %w", err)
	}
	if err := gatewayv1.Install(s); err != nil {
		return nil, fmt.Errorf("adding Gateway API kinds: %w", err)
	}
	return s, nil
}

var buildInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "vigil_build_info",
	Help: "Always 1; the version label names the running build of vigil-controller.",
}, []string{"version"})

func init() {
	metrics.Registry.MustRegister(buildInfo)
}

// run starts the manager and blocks until ctx is done or the manager fails.
func run(ctx context.Context, cfg *rest.Config, o options) error {
	scheme, err := newScheme()
	if err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsserver.Options{BindAddress: o.metricsAddr},
		HealthProbeBindAddress:  o.probeAddr,
		LeaderElection:          o.leaderElect,
		LeaderElectionID:        o.leaderElectionID,
		LeaderElectionNamespace: o.leaderElectionNS,
		// Step down at once on shutdown so a new leader need not wait out the lease.
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return fmt.Errorf("adding health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return fmt.Errorf("adding readiness check: %w", err)
	}
	if err := setupControllers(ctx, mgr, o); err != nil {
		return err
	}
	buildInfo.WithLabelValues(version).Set(1)
	ctrl.LoggerFrom(ctx).Info("Starting manager", "version", version, "leaderElection", o.leaderElect)
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("running manager: %w", err)
	}
	return nil
}

// setupControllers registers every controller with the manager.
func setupControllers(ctx context.Context, mgr ctrl.Manager, o options) error {
	gatewayAPI, err := rollout.GatewayAPIServed(mgr.GetRESTMapper())
	if err != nil {
		return err
	}
	if !gatewayAPI {
		ctrl.LoggerFrom(ctx).Info("The cluster serves no HTTPRoutes; Rollouts that route with the Gateway API will be stalled")
	}
	r := &rollout.Reconciler{
		Client:     mgr.GetClient(),
		APIReader:  mgr.GetAPIReader(),
		Recorder:   mgr.GetEventRecorder("vigil-rollout"),
		GatewayAPI: gatewayAPI,
		// One verification of an image may take this long, registry and
		// Git reads included; 4,096 passes are cached.
		Verifier: provenance.NewVerifier(provenance.DefaultRegistry(), 30*time.Second, "", gitops.DefaultLimits(), 4096),
	}
	if err := r.SetupWithManager(ctx, mgr); err != nil {
		return fmt.Errorf("setting up the Rollout controller: %w", err)
	}
	ar := &analysisrun.Reconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("vigil-analysisrun"),
		Coalescer: analysis.NewCoalescer(),
	}
	if err := ar.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the AnalysisRun controller: %w", err)
	}
	tp := &trustpolicy.Reconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader()}
	if err := tp.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the TrustPolicy controller: %w", err)
	}
	if _, err := gitsync.Setup(mgr, gitsync.Options{WebhookAddr: o.webhookAddr}); err != nil {
		return err
	}
	return nil
}
