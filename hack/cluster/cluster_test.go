package cluster

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// binDir is where `make test` puts the control plane (hack/tools.sh assets).
func binDir(t *testing.T) string {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		t.Fatal("KUBEBUILDER_ASSETS is not set: run the tests with `make test`, which builds the control plane")
	}
	return dir
}

func TestDeploymentGetsReadyPodsOnKwokNodesAndTeardownLeavesNothing(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	dir := t.TempDir()
	c, err := Start(ctx, Options{Dir: dir, BinDir: binDir(t), Nodes: 2})
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = c.Stop() })

	_, err = Start(ctx, Options{Dir: dir, BinDir: binDir(t)})
	g.Expect(err).To(MatchError(ContainSubstring("a cluster is already running in")))

	cs, err := kubernetes.NewForConfig(c.Config)
	g.Expect(err).NotTo(HaveOccurred())
	labels := map[string]string{"app": "web"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](3),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.example/web:1"}}},
			},
		},
	}
	// The default ServiceAccount appears once kube-controller-manager runs.
	g.Eventually(func() error {
		_, err := cs.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{})
		return err
	}, time.Minute, 200*time.Millisecond).Should(Succeed())

	g.Eventually(func() (int32, error) {
		d, err := cs.AppsV1().Deployments("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return 0, err
		}
		return d.Status.ReadyReplicas, nil
	}, 2*time.Minute, 200*time.Millisecond).Should(Equal(int32(3)))

	pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(pods.Items).To(HaveLen(3))
	for _, p := range pods.Items {
		g.Expect(p.Spec.NodeName).To(HavePrefix("kwok-node-"), "scheduled by kube-scheduler onto a fake node")
		g.Expect(p.Status.Phase).To(Equal(corev1.PodRunning))
		g.Expect(p.Status.PodIP).NotTo(BeEmpty())
	}

	// Stop the way `make dev-cluster-down` does: from the recorded state.
	g.Expect(c.Alive()).To(HaveLen(5))
	g.Expect(StopDir(dir)).To(Succeed())
	g.Expect(c.Alive()).To(BeEmpty(), "no process is left behind")
	g.Expect(filepath.Join(dir, stateFile)).NotTo(BeAnExistingFile())
	g.Expect(StopDir(dir)).To(Succeed(), "stopping a stopped cluster is not an error")
}

func TestStartFailsClearlyWithoutBinaries(t *testing.T) {
	g := NewWithT(t)
	_, err := Start(context.Background(), Options{Dir: t.TempDir(), BinDir: t.TempDir()})
	g.Expect(err).To(HaveOccurred())
	g.Expect(err.Error()).To(ContainSubstring("starting etcd"))
	g.Expect(strings.Contains(err.Error(), "no such file")).To(BeTrue(), err.Error())
}

func TestStopDirIgnoresReusedPIDs(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	// Our own pid with a start time that is not ours: a pid reused by an
	// unrelated process must never be signalled.
	self := []*proc{{Name: "impostor", PID: os.Getpid(), StartTime: "1"}}
	g.Expect(writeState(dir, self)).To(Succeed())
	g.Expect(StopDir(dir)).To(Succeed())
	g.Expect(self[0].alive()).To(BeFalse())
}
