// Package testenv starts a real etcd and kube-apiserver (envtest) with
// Vigil's CRDs installed, for the test suites of every package.
package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
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
	return m.Run()
}
