// Package testenv starts a real etcd and kube-apiserver (envtest) with
// Vigil's CRDs installed, for the test suites of every package.
package testenv

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// Start starts the API server and returns its config and a function that
// stops it. The binaries come from KUBEBUILDER_ASSETS, which `make test` sets.
// extraCRDs are more CRD files or directories to install.
func Start(extraCRDs ...string) (*rest.Config, func() error, error) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return nil, nil, errors.New("KUBEBUILDER_ASSETS is not set: run the tests with `make test`, which builds etcd and kube-apiserver")
	}
	_, file, _, _ := runtime.Caller(0)
	env := &envtest.Environment{
		CRDDirectoryPaths:     append([]string{filepath.Join(filepath.Dir(file), "..", "..", "config", "crd", "bases")}, extraCRDs...),
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, nil, fmt.Errorf("starting envtest: %w", err)
	}
	return cfg, env.Stop, nil
}

// Main runs a package's tests against a fresh API server and exits. Use it
// as the body of TestMain; setup receives the API server's config.
func Main(m interface{ Run() int }, setup func(*rest.Config) error, extraCRDs ...string) {
	os.Exit(run(m, setup, extraCRDs))
}

// GatewayAPICRDs is the HTTPRoute CRD shipped in the sigs.k8s.io/gateway-api
// module this repository pins, for suites that route traffic with it.
func GatewayAPICRDs() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		return "", fmt.Errorf("locating the sigs.k8s.io/gateway-api module: %w", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "standard", "gateway.networking.k8s.io_httproutes.yaml"), nil
}

func run(m interface{ Run() int }, setup func(*rest.Config) error, extraCRDs []string) int {
	cfg, stop, err := Start(extraCRDs...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stopping envtest: %v\n", err)
		}
	}()
	if err := setup(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "setting up the suite: %v\n", err)
		return 1
	}
	code := m.Run()
	broken, err := InvariantViolations(metrics.Registry)
	switch {
	case err != nil:
		fmt.Fprintf(os.Stderr, "FAIL: reading vigil_invariant_violations_total: %v\n", err)
		code = max(code, 1)
	case len(broken) > 0:
		fmt.Fprintf(os.Stderr, "FAIL: safety invariants were violated during the suite (vigil_invariant_violations_total): %s\n", strings.Join(broken, ", "))
		code = max(code, 1)
	}
	return code
}

// InvariantViolations reads vigil_invariant_violations_total from a
// registry and names every invariant it counts as broken, with how often.
// Any violation is a bug in Vigil, so every suite that runs the Rollout
// controller fails when the counter moved, whatever its tests asserted.
func InvariantViolations(g prometheus.Gatherer) ([]string, error) {
	families, err := g.Gather()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range families {
		if f.GetName() != "vigil_invariant_violations_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			if v := m.GetCounter().GetValue(); v > 0 {
				name := "?"
				for _, l := range m.GetLabel() {
					if l.GetName() == "invariant" {
						name = l.GetValue()
					}
				}
				out = append(out, fmt.Sprintf("%s (%.0f times)", name, v))
			}
		}
	}
	return out, nil
}

// StartManager runs a fresh controller manager against cfg, as the real
// binary does but without metrics or probe listeners, until the test ends
// or the returned stop is called. wrap, when set, wraps the manager's HTTP
// transport (fault injection); setup registers the controllers under test.
func StartManager(t testing.TB, cfg *rest.Config, scheme *kruntime.Scheme, wrap func(http.RoundTripper) http.RoundTripper,
	setup func(context.Context, ctrl.Manager) error) (stop func()) {
	t.Helper()
	return StartManagerIn(t, "", cfg, scheme, wrap, setup)
}

// StartManagerIn is StartManager with the manager's cache, and so its
// controllers, limited to namespace ns ("" for all): a test that counts
// what its controller tells is then not disturbed by objects that earlier
// tests of the suite left behind.
func StartManagerIn(t testing.TB, ns string, cfg *rest.Config, scheme *kruntime.Scheme, wrap func(http.RoundTripper) http.RoundTripper,
	setup func(context.Context, ctrl.Manager) error) (stop func()) {
	t.Helper()
	var cacheOpts cache.Options
	if ns != "" {
		cacheOpts.DefaultNamespaces = map[string]cache.Config{ns: {}}
	}
	c := rest.CopyConfig(cfg)
	c.QPS, c.Burst = 500, 1000
	if wrap != nil {
		c.WrapTransport = wrap
	}
	mgr, err := ctrl.NewManager(c, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
		Cache:                  cacheOpts,
	})
	if err != nil {
		t.Fatalf("creating manager: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := setup(ctx, mgr); err != nil {
		cancel()
		t.Fatalf("setting up controllers: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	var once atomic.Bool
	stop = func() {
		if once.CompareAndSwap(false, true) {
			cancel()
			if err := <-done; err != nil {
				// A runnable that outlived the grace period is still running:
				// its stack says which, for the one who reads the failure.
				t.Errorf("manager stopped with: %v\n%s", err, vigilStacks())
			}
		}
	}
	t.Cleanup(stop)
	return stop
}

// Namespace creates a namespace named prefix-<random> for one test.
func Namespace(t testing.TB, c client.Client, prefix string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}
	if err := c.Create(context.Background(), ns); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	return ns.Name
}

// Connect is the setup for Main of a suite that shares the API server's
// config, a scheme with adds installed, and an uncached client: it fills
// cfg and k8s once the API server is up.
func Connect(cfg **rest.Config, scheme *kruntime.Scheme, k8s *client.Client, adds ...func(*kruntime.Scheme) error) func(*rest.Config) error {
	return func(c *rest.Config) error {
		*cfg = c
		for _, add := range adds {
			if err := add(scheme); err != nil {
				return err
			}
		}
		var err error
		*k8s, err = client.New(c, client.Options{Scheme: scheme})
		return err
	}
}

// vigilStacks is every goroutine's stack that runs Vigil's code or the
// manager's (its runnables, controllers and cache), for a manager that did
// not stop in time.
func vigilStacks() string {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "vigil-dev/vigil/controllers") || strings.Contains(g, "vigil-dev/vigil/analysis") ||
			strings.Contains(g, "sigs.k8s.io/controller-runtime/pkg/manager") || strings.Contains(g, "sigs.k8s.io/controller-runtime/pkg/internal") ||
			strings.Contains(g, "sigs.k8s.io/controller-runtime/pkg/cache") {
			out = append(out, g)
		}
	}
	return "goroutines in Vigil's controllers and the manager:\n" + strings.Join(out, "\n\n")
}
