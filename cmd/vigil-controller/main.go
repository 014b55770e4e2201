// Command vigil-controller runs Vigil's controllers in a controller-runtime
// manager, with health and readiness probes, a Prometheus metrics endpoint
// and optional leader election.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/vigil-dev/vigil/analysis"
	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/controllers/analysisrun"
	"github.com/vigil-dev/vigil/controllers/approval"
	"github.com/vigil-dev/vigil/controllers/gitsync"
	"github.com/vigil-dev/vigil/controllers/rollout"
	"github.com/vigil-dev/vigil/controllers/trustpolicy"
	proof "github.com/vigil-dev/vigil/evidence"
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
	admissionAddr    string
	namespace        string
	dnsNames         string
	certSecret       string
	sealSecret       string
	webhookConfig    string
	qps              float64
	burst            int
	rolloutWorkers   int
	analysisWorkers  int
	gitSyncWorkers   int
	evidenceKey      string
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
	fs.StringVar(&o.admissionAddr, "admission-bind-address", ":9444", "address the admission webhook for Approvals (TLS) binds to; 0 serves none, and then no Approval can be created where the webhook is installed")
	fs.StringVar(&o.namespace, "namespace", defaultNamespace(), "namespace of the controller's Secrets (webhook certificate, sealing key); defaults to $POD_NAMESPACE or vigil-system")
	fs.StringVar(&o.dnsNames, "admission-dns-names", "vigil-webhook-service.vigil-system.svc", "comma-separated names the webhook's certificate is valid for; the first is the Service the API server calls (localhost when the manager runs outside the cluster)")
	fs.StringVar(&o.certSecret, "admission-cert-secret", "vigil-webhook-server-cert", "Secret in --namespace where the webhook's CA and certificate are kept and renewed")
	fs.StringVar(&o.sealSecret, "seal-secret", "vigil-approval-seal", "Secret in --namespace holding the key Approvals are sealed with (made at random when missing)")
	fs.StringVar(&o.webhookConfig, "admission-configuration", "vigil-approvals", "name of the Mutating- and ValidatingWebhookConfiguration whose CA bundle is kept current")
	fs.Float64Var(&o.qps, "kube-api-qps", 200, "requests a second the manager's client sends the API server, sustained; the manager logs once, and vigil_client_throttled_total counts, when requests wait for it")
	fs.IntVar(&o.burst, "kube-api-burst", 400, "requests the manager's client may send at once above --kube-api-qps")
	fs.IntVar(&o.rolloutWorkers, "rollout-workers", 8, "Rollouts reconciled at once (one Rollout is never reconciled twice at once)")
	fs.IntVar(&o.analysisWorkers, "analysisrun-workers", 16, "AnalysisRuns measured at once")
	fs.StringVar(&o.evidenceKey, "evidence-signing-key", "", "PEM file of an ECDSA P-256 private key (mounted from a Secret the platform gives) that signs each ReleaseRecord as it is finalised; empty signs nothing")
	fs.IntVar(&o.gitSyncWorkers, "gitsync-workers", 2, "GitSyncs reconciled at once; each may hold a fetched tree of up to its byte limit")
	o.zap = zap.Options{Development: false}
	o.zap.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.qps <= 0 || o.burst <= 0 || o.rolloutWorkers <= 0 || o.analysisWorkers <= 0 || o.gitSyncWorkers <= 0 {
		err := fmt.Errorf("--kube-api-qps, --kube-api-burst, --rollout-workers, --analysisrun-workers and --gitsync-workers must be above 0")
		fmt.Fprintln(fs.Output(), err)
		return o, err
	}
	return o, nil
}

func defaultNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	return "vigil-system"
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
	cfg.QPS, cfg.Burst = float32(o.qps), o.burst
	cfg.RateLimiter = newThrottled(cfg.QPS, cfg.Burst, ctrl.Log.WithName("client"))
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
	serving, hooks, err := admissionServer(o)
	if err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		WebhookServer:           hooks,
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
	if serving != nil {
		if err := mgr.AddReadyzCheck("admission-webhook", mgr.GetWebhookServer().StartedChecker()); err != nil {
			return fmt.Errorf("adding the webhook's readiness check: %w", err)
		}
	}
	if err := setupControllers(ctx, mgr, o, serving); err != nil {
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
func setupControllers(ctx context.Context, mgr ctrl.Manager, o options, serving *approval.Serving) error {
	key, err := approval.Setup(ctx, mgr, approval.Options{
		Namespace: o.namespace, CertSecret: o.certSecret, SealSecret: o.sealSecret,
		Configuration: o.webhookConfig, DNSNames: strings.Split(o.dnsNames, ","), Serving: serving,
	})
	if err != nil {
		return fmt.Errorf("setting up the admission webhook: %w", err)
	}
	gatewayAPI, err := rollout.GatewayAPIServed(mgr.GetRESTMapper())
	if err != nil {
		return err
	}
	if !gatewayAPI {
		ctrl.LoggerFrom(ctx).Info("The cluster serves no HTTPRoutes; Rollouts that route with the Gateway API will be stalled")
	}
	var signer *proof.Signer
	if o.evidenceKey != "" {
		pemBytes, err := os.ReadFile(o.evidenceKey)
		if err != nil {
			return fmt.Errorf("reading --evidence-signing-key: %w", err)
		}
		if signer, err = proof.LoadSigner(pemBytes); err != nil {
			return fmt.Errorf("--evidence-signing-key %s: %w", o.evidenceKey, err)
		}
	}
	r := &rollout.Reconciler{
		EvidenceSigner: signer,
		Client:         mgr.GetClient(),
		APIReader:      mgr.GetAPIReader(),
		Recorder:       mgr.GetEventRecorder("vigil-rollout"),
		GatewayAPI:     gatewayAPI,
		// One verification of an image may take this long, registry and
		// Git reads included; 4,096 passes are cached.
		Verifier: provenance.NewVerifier(provenance.DefaultRegistry(), 30*time.Second, "", gitops.DefaultLimits(), 4096),
		Seal:     key,
		Workers:  o.rolloutWorkers,
	}
	if err := r.SetupWithManager(ctx, mgr); err != nil {
		return fmt.Errorf("setting up the Rollout controller: %w", err)
	}
	ar := &analysisrun.Reconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("vigil-analysisrun"),
		Coalescer: analysis.NewCoalescer(),
		Workers:   o.analysisWorkers,
	}
	if err := ar.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the AnalysisRun controller: %w", err)
	}
	tp := &trustpolicy.Reconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader()}
	if err := tp.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the TrustPolicy controller: %w", err)
	}
	if _, err := gitsync.Setup(mgr, gitsync.Options{WebhookAddr: o.webhookAddr, Workers: o.gitSyncWorkers}); err != nil {
		return err
	}
	return nil
}

// admissionServer builds the TLS server of the admission webhook, whose
// certificate the rotator keeps in a Secret, or nothing when disabled.
func admissionServer(o options) (*approval.Serving, webhook.Server, error) {
	if o.admissionAddr == "0" {
		return nil, nil, nil
	}
	host, port, err := net.SplitHostPort(o.admissionAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("--admission-bind-address %q: %w", o.admissionAddr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, nil, fmt.Errorf("--admission-bind-address %q: the port is not a number", o.admissionAddr)
	}
	serving, err := approval.NewServing(types.NamespacedName{Namespace: o.namespace, Name: o.certSecret})
	if err != nil {
		return nil, nil, err
	}
	return serving, webhook.NewServer(webhook.Options{Host: host, Port: p, CertDir: serving.Dir,
		TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.GetCertificate = serving.GetCertificate }}}), nil
}
