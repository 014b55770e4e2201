// Package world brings up everything Vigil's demo and end-to-end suite run
// against, on a local control plane and on loopback only: a Git server
// holding the app's repository, an OCI registry, an exporter that plays
// the HTTP traffic of every canary and stable pod (kwok pods run no code),
// a Prometheus scraping it, and the Vigil controller itself. Each is a
// process recorded in Dir/state.json, so `make demo-down` stops them even
// after the program that started them has exited.
package world

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/hack/cluster"
	"github.com/vigil-dev/vigil/hack/sigtest"
)

// Builder is the builder id the demo's provenance names and its
// TrustPolicy allows.
const Builder = "https://vigil.dev/demo/builder@v1"

// Options say where the world lives and what it runs.
type Options struct {
	// Dir holds the state file, logs, the Git repositories and
	// Prometheus' data.
	Dir string
	// Kubeconfig is the local control plane's (make dev-cluster).
	Kubeconfig string
	// Bin holds vigil-controller and demo (whose serve command runs the
	// registry and the exporter).
	Bin string
	// Prometheus is the prometheus binary.
	Prometheus string
	// CRDs is the directory of Vigil's CRDs (config/crd/bases).
	CRDs string
	// Role is the controller's ClusterRole (config/rbac/role.yaml): the
	// controller runs as a ServiceAccount bound to it and nothing more, so
	// the story also checks that the role is enough.
	Role string
	// Webhooks are Vigil's webhook configurations
	// (config/webhook/manifests.yaml), installed to call the controller
	// on loopback; its rotator injects their CA.
	Webhooks string
	// Namespace is where the app and its GitSync live (default demo).
	Namespace string
	// Out receives progress lines; nil discards them.
	Out io.Writer
	// DieWithParent makes every process die with the program that
	// started it (the end-to-end suite); the demo's outlive it.
	DieWithParent bool
	// ControllerArgs are more flags for vigil-controller (the benchmark's
	// workers and client rate).
	ControllerArgs []string
}

// Flags registers the options a program that brings up a world takes,
// with its state kept under dir by default.
func (o *Options) Flags(fs *flag.FlagSet, dir string) {
	fs.StringVar(&o.Dir, "dir", dir, "directory for the state, logs, repositories and Prometheus data")
	fs.StringVar(&o.Kubeconfig, "kubeconfig", ".dev-cluster/kubeconfig", "the local cluster's kubeconfig")
	fs.StringVar(&o.Bin, "bin", filepath.Join(dir, "bin"), "directory holding vigil-controller, kubectl-vigil and demo")
	fs.StringVar(&o.Prometheus, "prometheus", "", "the prometheus binary")
	fs.StringVar(&o.CRDs, "crds", "config/crd/bases", "directory of Vigil's CRDs")
	fs.StringVar(&o.Role, "role", "config/rbac/role.yaml", "the controller's ClusterRole and Role")
	fs.StringVar(&o.Webhooks, "webhooks", "config/webhook/manifests.yaml", "Vigil's webhook configurations")
}

// World is a running set of servers and the app's repository.
type World struct {
	o     Options
	Procs *cluster.Processes
	// Client reaches the cluster as its admin.
	Client client.Client
	// GitURL is the app repository as GitSync and provenance name it.
	GitURL string
	// Registry is host:port of the OCI registry.
	Registry string
	// PrometheusURL is Prometheus' base URL.
	PrometheusURL string
	// ControllerMetrics is the controller's /metrics URL.
	ControllerMetrics string
	// Namespace is the app's namespace.
	Namespace string

	addr map[string]string
	// controllerKubeconfig holds the controller's ServiceAccount token.
	controllerKubeconfig string
	bare, work           string
	key                  *sigtest.Key
	hookSecret           string
}

// Up starts every server, installs the CRDs, starts the controller and
// creates the app's namespace, repository (with its first commit) and
// GitSync. On failure the processes it started keep running for their logs
// to be read; Down stops them.
func Up(ctx context.Context, o Options) (*World, error) {
	if o.Namespace == "" {
		o.Namespace = "demo"
	}
	ctrllog.SetLogger(logr.Discard()) // envtest's CRD installer logs through it
	if o.Out == nil {
		o.Out = io.Discard
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	o.Dir = dir
	procs, err := cluster.OpenProcesses(dir) // refuses while a demo runs there
	if err != nil {
		return nil, err
	}
	for _, sub := range []string{"git", "prometheus", "logs"} {
		if err := os.RemoveAll(filepath.Join(dir, sub)); err != nil {
			return nil, fmt.Errorf("clearing %s: %w", sub, err)
		}
	}
	procs.DieWithParent = o.DieWithParent
	w := &World{o: o, Procs: procs, Namespace: o.Namespace, addr: map[string]string{}, key: sigtest.NewKey(Fatal{})}
	cfg, err := clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("loading %s (is the cluster up? make dev-cluster): %w", o.Kubeconfig, err)
	}
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = vigilv1.AddToScheme(scheme)
	if w.Client, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		return nil, err
	}
	for _, name := range []string{"git", "registry", "exporter", "prometheus", "metrics", "probe", "webhook", "admission"} {
		if w.addr[name], err = freeAddr(); err != nil {
			return nil, err
		}
	}
	w.Registry = w.addr["registry"]
	w.PrometheusURL = "http://" + w.addr["prometheus"]
	w.ControllerMetrics = "http://" + w.addr["metrics"] + "/metrics"

	if err := w.startGit(); err != nil {
		return nil, err
	}
	w.say("starting the OCI registry on %s and the traffic exporter on %s", w.Registry, w.addr["exporter"])
	if err := procs.Start("demo-serve", filepath.Join(o.Bin, "demo"), []string{"serve",
		"--registry", w.Registry, "--exporter", w.addr["exporter"]}, []string{"KUBECONFIG=" + o.Kubeconfig}); err != nil {
		return nil, err
	}
	if err := w.StartPrometheus(); err != nil {
		return nil, err
	}
	w.say("installing Vigil's CRDs")
	if _, err := envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{Paths: []string{o.CRDs}, ErrorIfPathMissing: true}); err != nil {
		return nil, fmt.Errorf("installing CRDs from %s: %w", o.CRDs, err)
	}
	if err := w.controllerIdentity(ctx, cfg); err != nil {
		return nil, err
	}
	if err := w.StartController(ctx); err != nil {
		return nil, err
	}
	if err := w.installWebhooks(ctx); err != nil {
		return nil, err
	}
	for name, url := range map[string]string{
		"registry": "http://" + w.Registry + "/v2/",
		"exporter": "http://" + w.addr["exporter"] + "/metrics",
	} {
		if err := waitHTTP(ctx, url, time.Minute); err != nil {
			return nil, fmt.Errorf("the %s did not answer (log: %s): %w", name, procs.Log("demo-serve"), err)
		}
	}
	if err := w.createApp(ctx); err != nil {
		return nil, err
	}
	return w, nil
}

// Down stops every process recorded in dir.
func Down(dir string) error { return cluster.StopDir(dir) }

func (w *World) say(format string, args ...any) {
	fmt.Fprintf(w.o.Out, "  · "+format+"\n", args...)
}

// StartPrometheus starts (or restarts, on the same port and data) the
// Prometheus that scrapes the exporter every second, and waits until it is
// ready.
func (w *World) StartPrometheus() error {
	dir := filepath.Join(w.o.Dir, "prometheus")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
scrape_configs:
  - job_name: demo-traffic
    static_configs:
      - targets: [%q]
`, w.addr["exporter"])
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		return err
	}
	w.say("starting Prometheus on %s", w.PrometheusURL)
	if err := w.Procs.Start("prometheus", w.o.Prometheus, []string{
		"--config.file=" + filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + w.addr["prometheus"],
		"--log.level=warn",
	}, nil); err != nil {
		return err
	}
	if err := waitHTTP(context.Background(), w.PrometheusURL+"/-/ready", 2*time.Minute); err != nil {
		return fmt.Errorf("prometheus was not ready (log: %s): %w", w.Procs.Log("prometheus"), err)
	}
	return nil
}

// StartController starts (or restarts) vigil-controller and waits until it
// is ready.
func (w *World) StartController(ctx context.Context) error {
	w.say("starting vigil-controller (metrics on %s, log in %s)", w.ControllerMetrics, w.Procs.Log("vigil-controller"))
	if err := w.Procs.Start("vigil-controller", filepath.Join(w.o.Bin, "vigil-controller"), append([]string{
		"--metrics-bind-address=" + w.addr["metrics"],
		"--health-probe-bind-address=" + w.addr["probe"],
		"--push-webhook-bind-address=" + w.addr["webhook"],
		"--admission-bind-address=" + w.addr["admission"],
		"--admission-dns-names=localhost",
		"--namespace=vigil-system",
	}, w.o.ControllerArgs...), []string{"KUBECONFIG=" + w.controllerKubeconfig}); err != nil {
		return err
	}
	if err := waitHTTP(ctx, "http://"+w.addr["probe"]+"/readyz", 2*time.Minute); err != nil {
		return fmt.Errorf("vigil-controller was not ready (log: %s): %w", w.Procs.Log("vigil-controller"), err)
	}
	// The push receiver answers 405 to a GET once it listens.
	return waitHTTP(ctx, "http://"+w.addr["webhook"]+"/hooks/push", time.Minute, http.StatusMethodNotAllowed)
}

// installWebhooks installs config/webhook's configurations to call the
// controller on loopback, and waits until the API server admits Approvals
// through it with the CA the controller's rotator injected.
func (w *World) installWebhooks(ctx context.Context) error {
	_, port, err := net.SplitHostPort(w.addr["admission"])
	if err != nil {
		return err
	}
	w.say("installing the admission webhook for Approvals (https://localhost:%s, certificate made and injected by vigil-controller)", port)
	if err := cluster.InstallWebhooks(ctx, w.Client, w.o.Webhooks, "https://localhost:"+port); err != nil {
		return err
	}
	if err := cluster.WaitForAdmission(ctx, w.Client, 2*time.Minute); err != nil {
		return fmt.Errorf("%w (log: %s)", err, w.Procs.Log("vigil-controller"))
	}
	return nil
}

// controllerIdentity makes the controller's ServiceAccount in vigil-system,
// binds it to the ClusterRole of config/rbac, and writes a kubeconfig with a
// token for it.
func (w *World) controllerIdentity(ctx context.Context, cfg *rest.Config) error {
	raw, err := os.ReadFile(w.o.Role)
	if err != nil {
		return fmt.Errorf("reading the controller's role: %w", err)
	}
	// The file holds the ClusterRole, then the Role for the controller's
	// own namespace (its Secrets).
	docs := strings.Split(string(raw), "\n---\n")
	role, own := &rbacv1.ClusterRole{}, &rbacv1.Role{}
	if len(docs) != 2 {
		return fmt.Errorf("reading %s: want a ClusterRole and a Role, found %d documents", w.o.Role, len(docs))
	}
	if err := yaml.Unmarshal([]byte(docs[0]), role); err != nil {
		return fmt.Errorf("reading %s: %w", w.o.Role, err)
	}
	if err := yaml.Unmarshal([]byte(docs[1]), own); err != nil {
		return fmt.Errorf("reading %s: %w", w.o.Role, err)
	}
	role.Name, own.Name = "vigil-manager", "vigil-manager"
	const ns, name = "vigil-system", "vigil-controller"
	own.Namespace = ns
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	subjects := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "vigil-manager"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   subjects,
	}
	ownBinding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "vigil-manager"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: own.Name},
		Subjects:   subjects,
	}
	for _, obj := range []client.Object{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, sa, role, binding, own, ownBinding} {
		if err := w.Client.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating %T %s: %w", obj, obj.GetName(), err)
		}
	}
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(24 * 3600))}}
	if err := w.Client.SubResource("token").Create(ctx, sa, tr); err != nil {
		return fmt.Errorf("requesting a token for %s/%s: %w", ns, name, err)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["local"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: "local", AuthInfo: name}
	kc.CurrentContext = name
	w.controllerKubeconfig = filepath.Join(w.o.Dir, "controller.kubeconfig")
	if err := clientcmd.WriteToFile(*kc, w.controllerKubeconfig); err != nil {
		return err
	}
	w.say("vigil-controller runs as ServiceAccount %s/%s with ClusterRole %s and Role %s/%s (config/rbac) and nothing more", ns, name, role.Name, ns, own.Name)
	return nil
}

// startGit creates the bare repository and serves it with git daemon.
func (w *World) startGit() error {
	root := filepath.Join(w.o.Dir, "git")
	w.bare = filepath.Join(root, "demo.git")
	w.work = filepath.Join(w.o.Dir, "git", "work")
	if out, err := exec.Command("git", "init", "-q", "--bare", "-b", "main", w.bare).CombinedOutput(); err != nil {
		return fmt.Errorf("git init: %v: %s", err, out)
	}
	if err := w.git(root, "clone", "-q", w.bare, w.work); err != nil {
		return err
	}
	host, port, _ := net.SplitHostPort(w.addr["git"])
	w.GitURL = "git://" + w.addr["git"] + "/demo.git"
	w.say("serving the app's repository at %s", w.GitURL)
	return w.Procs.Start("git-daemon", "git", []string{"daemon", "--reuseaddr", "--export-all",
		"--listen=" + host, "--port=" + port, "--base-path=" + root, root}, gitEnv())
}

// createApp creates the namespace, the release key's Secret, the webhook
// Secret, the repository's first content and the GitSync.
func (w *World) createApp(ctx context.Context) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: w.Namespace}}
	if err := w.Client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", w.Namespace, err)
	}
	secret := make([]byte, 16)
	_, _ = rand.Read(secret)
	w.hookSecret = hex.EncodeToString(secret)
	for _, s := range []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Name: "demo-release-key", Namespace: w.Namespace},
			Data: map[string][]byte{"cosign.pub": w.key.PublicPEM}},
		{ObjectMeta: metav1.ObjectMeta{Name: "demo-git-webhook", Namespace: w.Namespace},
			Data: map[string][]byte{"token": []byte(w.hookSecret)}},
	} {
		if err := w.Client.Create(ctx, s); err != nil {
			return fmt.Errorf("creating Secret %s: %w", s.Name, err)
		}
	}
	w.say("generated a release signing key; its public half is Secret %s/demo-release-key", w.Namespace)
	for _, f := range []string{"services.yaml", "analysistemplate.yaml", "trustpolicy.yaml"} {
		if err := w.writeManifest(f, f, nil); err != nil {
			return err
		}
	}
	if _, err := w.commit("deploy: the web Service, its error-rate analysis and its trust policy"); err != nil {
		return err
	}
	raw, err := w.render("gitsync.yaml", nil)
	if err != nil {
		return err
	}
	gs := &vigilv1.GitSync{}
	if err := yaml.UnmarshalStrict(raw, gs); err != nil {
		return fmt.Errorf("reading gitsync.yaml: %w", err)
	}
	gs.Namespace = w.Namespace
	if err := w.Client.Create(ctx, gs); err != nil {
		return fmt.Errorf("creating GitSync: %w", err)
	}
	w.say("GitSync %s/web follows main of %s (path deploy/; a push webhook makes it look at once)", w.Namespace, w.GitURL)
	return nil
}

// Kubectl is the command line to reach the cluster, for what the demo
// prints.
func (w *World) Kubectl() string {
	kc, err := filepath.Abs(w.o.Kubeconfig)
	if err != nil {
		kc = w.o.Kubeconfig
	}
	return "kubectl --kubeconfig " + kc
}

// Fatal adapts sigtest's helpers, written for tests, to the demo: a failure
// panics with an error that Run recovers.
type Fatal struct{}

// Helper does nothing.
func (Fatal) Helper() {}

// Cleanup does nothing: the demo's servers outlive the program.
func (Fatal) Cleanup(func()) {}

// Fatal panics with a fatalError.
func (Fatal) Fatal(args ...any) { panic(fatalError{errors.New(fmt.Sprint(args...))}) }

type fatalError struct{ error }

// Recover turns a panic of Fatal into *err; other panics go on.
func Recover(err *error) {
	if r := recover(); r != nil {
		f, ok := r.(fatalError)
		if !ok {
			panic(r)
		}
		*err = f.error
	}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// waitHTTP waits until url answers 200, or one of codes.
func waitHTTP(ctx context.Context, url string, timeout time.Duration, codes ...int) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := &http.Client{Timeout: 2 * time.Second}
	var last error
	for {
		resp, err := c.Get(url)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK || slices.Contains(codes, resp.StatusCode) {
				return nil
			}
			err = fmt.Errorf("%s answered %s", url, resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// gitEnv isolates git from the user's configuration.
func gitEnv() []string {
	return []string{"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Vigil Demo", "GIT_AUTHOR_EMAIL=demo@vigil.dev",
		"GIT_COMMITTER_NAME=Vigil Demo", "GIT_COMMITTER_EMAIL=demo@vigil.dev"}
}

func (w *World) git(dir string, args ...string) error {
	_, err := w.gitOut(dir, args...)
	return err
}

func (w *World) gitOut(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), gitEnv()...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// InvariantViolations reads every vigil-controller log this world wrote
// (restarts append to it) and returns each "Invariant violated" line as
// "invariant: detail". Reading the log rather than the metric counts the
// violations of a controller that was killed and restarted too.
func (w *World) InvariantViolations() ([]string, error) {
	f, err := os.Open(w.Procs.Log("vigil-controller"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.Contains(line, []byte("Invariant violated")) {
			continue
		}
		var entry struct {
			Msg       string `json:"msg"`
			Invariant string `json:"invariant"`
			Detail    string `json:"detail"`
		}
		if json.Unmarshal(line, &entry) != nil || entry.Msg != "Invariant violated" {
			continue
		}
		out = append(out, entry.Invariant+": "+entry.Detail)
	}
	return out, sc.Err()
}
