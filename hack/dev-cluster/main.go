// Command dev-cluster starts and stops the local control plane that
// `make dev-cluster` and `make dev-cluster-down` manage.
//
//	dev-cluster up       --bin-dir DIR [--dir .dev-cluster] [--nodes 3]
//	dev-cluster webhooks [--dir .dev-cluster] [--admission 127.0.0.1:9444]
//	dev-cluster down     [--dir .dev-cluster]
//
// webhooks installs Vigil's admission webhook configurations to call a
// vigil-controller that runs on this machine (started with
// --admission-bind-address=127.0.0.1:9444 --admission-dns-names=localhost)
// and waits until the API server admits Approvals through it.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/hack/cluster"
)

func main() {
	if len(os.Args) < 2 || (os.Args[1] != "up" && os.Args[1] != "down" && os.Args[1] != "webhooks") {
		fmt.Fprintln(os.Stderr, "usage: dev-cluster up --bin-dir DIR [--dir DIR] [--nodes N] | webhooks [--dir DIR] [--admission ADDR] | down [--dir DIR]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet("dev-cluster "+os.Args[1], flag.ExitOnError)
	dir := fs.String("dir", ".dev-cluster", "directory for the cluster's state, logs and kubeconfig")
	binDir := fs.String("bin-dir", "", "directory holding etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (hack/tools.sh assets)")
	nodes := fs.Int("nodes", 3, "number of fake kwok nodes")
	qps := fs.Int("api-qps", 0, "client QPS of kube-controller-manager and kube-scheduler (burst twice that); 0 keeps their defaults")
	admission := fs.String("admission", "127.0.0.1:9444", "address vigil-controller serves its admission webhook on (webhooks)")
	manifests := fs.String("manifests", "config/webhook/manifests.yaml", "Vigil's webhook configurations (webhooks)")
	_ = fs.Parse(os.Args[2:])
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if os.Args[1] == "webhooks" {
		if err := webhooks(ctx, filepath.Join(*dir, "kubeconfig"), *manifests, *admission); err != nil {
			fmt.Fprintf(os.Stderr, "dev-cluster webhooks: %v\n", err)
			os.Exit(1)
		}
		fmt.Println("cluster: Approvals are admitted by the vigil-controller on " + *admission)
		return
	}

	if os.Args[1] == "down" {
		if err := cluster.StopDir(*dir); err != nil {
			fmt.Fprintf(os.Stderr, "dev-cluster down: %v\n", err)
			os.Exit(1)
		}
		fmt.Println("cluster: stopped")
		return
	}
	if *binDir == "" {
		fmt.Fprintln(os.Stderr, "dev-cluster up: --bin-dir is required (run `make dev-cluster`, which builds the binaries)")
		os.Exit(2)
	}
	if _, err := cluster.Start(ctx, cluster.Options{Dir: *dir, BinDir: *binDir, Nodes: *nodes, APIQPS: *qps, Progress: os.Stdout}); err != nil {
		fmt.Fprintf(os.Stderr, "dev-cluster up: %v\n", err)
		os.Exit(1)
	}
}

// webhooks points Vigil's webhook configurations at a controller on this
// machine and waits until its rotator injected their CA.
func webhooks(ctx context.Context, kubeconfig, manifests, addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("loading %s (is the cluster up?): %w", kubeconfig, err)
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := vigilv1.AddToScheme(scheme); err != nil {
		return err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	if err := cluster.InstallWebhooks(ctx, c, manifests, "https://localhost:"+port); err != nil {
		return err
	}
	return cluster.WaitForAdmission(ctx, c, 2*time.Minute)
}
