// Command demo tells Vigil's story on a local cluster (make demo):
//
//	demo up    --dir .demo --kubeconfig K --bin DIR --prometheus BIN --crds DIR --role FILE --assets DIR
//	demo down  --dir .demo
//	demo serve --registry ADDR --exporter ADDR   (started by up; KUBECONFIG names the cluster)
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/vigil-dev/vigil/hack/demo/world"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fs := flag.NewFlagSet("demo "+os.Args[1], flag.ExitOnError)
	var err error
	switch os.Args[1] {
	case "up":
		var o world.Options
		var assets string
		o.Flags(fs, ".demo")
		fs.StringVar(&assets, "assets", "", "directory holding kubectl (hack/tools.sh assets)")
		_ = fs.Parse(os.Args[2:])
		o.Out = os.Stdout
		err = tell(ctx, o, assets)
	case "down":
		dir := fs.String("dir", ".demo", "the demo's directory")
		_ = fs.Parse(os.Args[2:])
		if err = world.Down(*dir); err == nil {
			fmt.Println("demo: stopped the controller, Prometheus, the Git server, the registry and the exporter")
		}
	case "serve":
		reg := fs.String("registry", "", "address of the OCI registry")
		exp := fs.String("exporter", "", "address of the traffic exporter")
		_ = fs.Parse(os.Args[2:])
		cfg, cerr := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
		if cerr != nil {
			err = cerr
			break
		}
		err = world.Serve(ctx, cfg, *reg, *exp)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo %s: %v\n", os.Args[1], err)
		if os.Args[1] == "up" {
			fmt.Fprintln(os.Stderr, "demo up: what it started keeps running for its logs to be read; make demo-down stops it")
		}
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: demo up|down|serve [flags] (see make demo)")
	os.Exit(2)
}
