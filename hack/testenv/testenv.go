// Package testenv starts a real etcd and kube-apiserver (envtest) with
// Vigil's CRDs installed, for the test suites of every package.
package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Start starts the API server and returns its config and a function that
// stops it. The binaries come from KUBEBUILDER_ASSETS, which `make test` sets.
func Start() (*rest.Config, func() error, error) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return nil, nil, errors.New("KUBEBUILDER_ASSETS is not set: run the tests with `make test`, which builds etcd and kube-apiserver")
	}
	_, file, _, _ := runtime.Caller(0)
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(filepath.Dir(file), "..", "..", "config", "crd", "bases")},
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
func Main(m interface{ Run() int }, setup func(*rest.Config) error) {
	os.Exit(run(m, setup))
}

func run(m interface{ Run() int }, setup func(*rest.Config) error) int {
	cfg, stop, err := Start()
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
