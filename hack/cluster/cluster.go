// Package cluster runs a local Kubernetes control plane for development and
// tests: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
// kwok, whose fake nodes turn scheduled pods Running and Ready without
// running any container. Everything listens on free loopback ports, so
// several clusters can run side by side.
package cluster

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

//go:embed kwok-stages.yaml
var kwokStages []byte

// kwokNodeAnnotation marks the nodes kwok manages.
const kwokNodeAnnotation = "kwok.x-k8s.io/node"

// Options configure a cluster.
type Options struct {
	// Dir holds certificates, etcd data, logs, the kubeconfig and the
	// state file listing the started processes.
	Dir string
	// BinDir holds etcd, kube-apiserver, kube-controller-manager,
	// kube-scheduler and kwok.
	BinDir string
	// Nodes is the number of fake nodes (default 3).
	Nodes int
	// Progress receives one line per step; nil discards them.
	Progress io.Writer
	// DieWithParent makes the kernel kill every process of the cluster
	// when this program exits, even by a test timeout that skips cleanup.
	DieWithParent bool
	// APIQPS, when set, is the client rate (and half the burst) of
	// kube-controller-manager and kube-scheduler; their defaults (20 and
	// 50) are what a benchmark of thousands of pods waits on.
	APIQPS int
}

// Cluster is a running local control plane.
type Cluster struct {
	Dir        string
	Kubeconfig string
	Config     *rest.Config
	client     kubernetes.Interface
	procs      []*proc
}

// Start brings up the control plane and returns once the API server is
// ready and every fake node is Ready. On failure it stops what it started.
func Start(ctx context.Context, o Options) (_ *Cluster, err error) {
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Dir, err = filepath.Abs(o.Dir); err != nil {
		return nil, fmt.Errorf("resolving cluster dir: %w", err)
	}
	if s, err := readState(o.Dir); err == nil {
		for i := range s.Procs {
			if s.Procs[i].alive() {
				return nil, fmt.Errorf("a cluster is already running in %s (%s, pid %d); stop it first", o.Dir, s.Procs[i].Name, s.Procs[i].PID)
			}
		}
	}
	for _, sub := range []string{"etcd", "pki", "logs"} {
		if err := os.RemoveAll(filepath.Join(o.Dir, sub)); err != nil {
			return nil, fmt.Errorf("clearing %s: %w", sub, err)
		}
	}
	c := &Cluster{Dir: o.Dir, Kubeconfig: filepath.Join(o.Dir, "kubeconfig")}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.Stop())
			err = fmt.Errorf("%w (logs are in %s)", err, filepath.Join(o.Dir, "logs"))
		}
	}()
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(o.Progress, "cluster: generating certificates")
	p, err := newPKI(filepath.Join(o.Dir, "pki"))
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Progress, "cluster: starting etcd on 127.0.0.1:%d\n", ports[0])
	if err := c.start(o, "etcd", etcdArgs(o.Dir, ports[0], ports[1])); err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Progress, "cluster: starting kube-apiserver on https://127.0.0.1:%d\n", ports[2])
	if err := c.start(o, "kube-apiserver", apiserverArgs(p, ports[0], ports[2])); err != nil {
		return nil, err
	}
	if err := c.writeKubeconfig(p, ports[2]); err != nil {
		return nil, err
	}
	if err := c.waitAPIServer(ctx); err != nil {
		return nil, err
	}
	fmt.Fprintln(o.Progress, "cluster: starting kube-controller-manager, kube-scheduler and kwok")
	// No serving port: nothing needs their HTTPS endpoints, and fewer ports
	// means fewer to collide on.
	common := []string{"--kubeconfig=" + c.Kubeconfig, "--leader-elect=false", "--secure-port=0"}
	if o.APIQPS > 0 {
		common = append(common, "--kube-api-qps="+strconv.Itoa(o.APIQPS), "--kube-api-burst="+strconv.Itoa(2*o.APIQPS))
	}
	if err := c.start(o, "kube-controller-manager", append(slices.Clip(common),
		"--service-account-private-key-file="+p.path("sa.key"),
		"--root-ca-file="+p.path("ca.crt"),
		"--use-service-account-credentials=false",
		"--controllers=*,-nodeipam,-service-lb-controller,-cloud-node-lifecycle-controller")); err != nil {
		return nil, err
	}
	if err := c.start(o, "kube-scheduler", common); err != nil {
		return nil, err
	}
	stages := filepath.Join(o.Dir, "kwok-stages.yaml")
	if err := os.WriteFile(stages, kwokStages, 0o644); err != nil {
		return nil, fmt.Errorf("writing kwok stages: %w", err)
	}
	if err := c.start(o, "kwok", []string{
		"--kubeconfig=" + c.Kubeconfig,
		"--config=" + stages,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=" + kwokNodeAnnotation + "=fake",
		"--node-lease-duration-seconds=40",
		"--cidr=10.244.0.0/16",
		"--node-ip=127.0.0.1",
		"--server-address=127.0.0.1:" + strconv.Itoa(ports[3]),
	}); err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Progress, "cluster: registering %d fake nodes\n", o.Nodes)
	if err := c.addNodes(ctx, o.Nodes); err != nil {
		return nil, err
	}
	if err := c.waitNodesReady(ctx, o.Nodes); err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Progress, "cluster: ready; export KUBECONFIG=%s\n", c.Kubeconfig)
	return c, nil
}

// Stop stops every process the cluster started.
func (c *Cluster) Stop() error {
	procs := make([]proc, len(c.procs))
	for i, p := range c.procs {
		procs[i] = *p
	}
	return stopAll(procs)
}

// Alive reports the started processes that are still running.
func (c *Cluster) Alive() []string {
	var names []string
	for _, p := range c.procs {
		if p.alive() {
			names = append(names, fmt.Sprintf("%s (pid %d)", p.Name, p.PID))
		}
	}
	return names
}

// StopDir stops the cluster whose state is in dir, as recorded by Start.
// A dir without a state file holds no cluster and is not an error.
func StopDir(dir string) error {
	s, err := readState(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := stopAll(s.Procs); err != nil {
		return err
	}
	return os.Remove(filepath.Join(dir, stateFile))
}

func (c *Cluster) start(o Options, name string, args []string) error {
	p, err := startProc(o.Dir, name, filepath.Join(o.BinDir, name), args, nil, o.DieWithParent)
	if err != nil {
		return err
	}
	c.procs = append(c.procs, p)
	// Record every process as soon as it runs, so that `down` finds it even
	// if this program dies before the cluster is ready.
	return writeState(o.Dir, c.procs)
}

func etcdArgs(dir string, clientPort, peerPort int) []string {
	client := "http://127.0.0.1:" + strconv.Itoa(clientPort)
	peer := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	return []string{
		"--name=default",
		"--data-dir=" + filepath.Join(dir, "etcd"),
		"--listen-client-urls=" + client,
		"--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer,
		"--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=default=" + peer,
		"--unsafe-no-fsync=true",
	}
}

func apiserverArgs(p *pki, etcdPort, port int) []string {
	return []string{
		"--etcd-servers=http://127.0.0.1:" + strconv.Itoa(etcdPort),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--tls-cert-file=" + p.path("apiserver.crt"),
		"--tls-private-key-file=" + p.path("apiserver.key"),
		"--client-ca-file=" + p.path("ca.crt"),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + p.path("sa.pub"),
		"--service-account-signing-key-file=" + p.path("sa.key"),
		"--service-cluster-ip-range=10.0.0.0/24",
		"--authorization-mode=Node,RBAC",
		"--allow-privileged=true",
	}
}

func (c *Cluster) writeKubeconfig(p *pki, port int) error {
	// Embed the credentials, so the kubeconfig works wherever it is copied.
	var ca, cert, key []byte
	for name, dst := range map[string]*[]byte{"ca.crt": &ca, "admin.crt": &cert, "admin.key": &key} {
		data, err := os.ReadFile(p.path(name))
		if err != nil {
			return fmt.Errorf("reading %s: %w", name, err)
		}
		*dst = data
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["vigil-dev"] = &clientcmdapi.Cluster{
		Server:                   "https://127.0.0.1:" + strconv.Itoa(port),
		CertificateAuthorityData: ca,
	}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cert, ClientKeyData: key}
	kc.Contexts["vigil-dev"] = &clientcmdapi.Context{Cluster: "vigil-dev", AuthInfo: "admin"}
	kc.CurrentContext = "vigil-dev"
	if err := clientcmd.WriteToFile(*kc, c.Kubeconfig); err != nil {
		return fmt.Errorf("writing kubeconfig: %w", err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	c.Config = cfg
	if c.client, err = kubernetes.NewForConfig(cfg); err != nil {
		return fmt.Errorf("creating client: %w", err)
	}
	return nil
}

// poll runs cond every 200ms until it is true, ctx ends or timeout passes.
func poll(ctx context.Context, timeout time.Duration, cond wait.ConditionWithContextFunc) error {
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, cond)
}

func (c *Cluster) waitAPIServer(ctx context.Context) error {
	var last error
	err := poll(ctx, 2*time.Minute, func(ctx context.Context) (bool, error) {
		if dead := c.dead(); dead != "" {
			return false, fmt.Errorf("%s exited", dead)
		}
		_, last = c.client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return last == nil, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for kube-apiserver to be ready: %w (last answer: %v)", err, last)
	}
	return nil
}

// dead names a started process that has exited, if any.
func (c *Cluster) dead() string {
	for _, p := range c.procs {
		if !p.alive() {
			return p.Name
		}
	}
	return ""
}

// addNodes registers n nodes for kwok; its node-initialize stage fills in
// their status (conditions, capacity, addresses).
func (c *Cluster) addNodes(ctx context.Context, n int) error {
	for i := range n {
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name:        "kwok-node-" + strconv.Itoa(i),
				Annotations: map[string]string{kwokNodeAnnotation: "fake"},
				Labels:      map[string]string{"type": "kwok", "kubernetes.io/hostname": "kwok-node-" + strconv.Itoa(i)},
			},
		}
		if _, err := c.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating node %s: %w", node.Name, err)
		}
	}
	return nil
}

func (c *Cluster) waitNodesReady(ctx context.Context, n int) error {
	ready := 0
	err := poll(ctx, 2*time.Minute, func(ctx context.Context) (bool, error) {
		if dead := c.dead(); dead != "" {
			return false, fmt.Errorf("%s exited", dead)
		}
		nodes, err := c.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		ready = 0
		for _, node := range nodes.Items {
			for _, cond := range node.Status.Conditions {
				if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
					ready++
				}
			}
		}
		return ready >= n, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for %d nodes to be Ready (%d are): %w", n, ready, err)
	}
	return nil
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
