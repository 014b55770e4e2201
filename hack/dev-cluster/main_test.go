package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// TestUpLeavesAClusterRunningAndDownStopsIt drives the command as
// `make dev-cluster` and `make dev-cluster-down` do: `up` exits while the
// control plane keeps running; `down`, another process, stops all of it.
func TestUpLeavesAClusterRunningAndDownStopsIt(t *testing.T) {
	g := NewWithT(t)
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		t.Fatal("KUBEBUILDER_ASSETS is not set: run the tests with `make test`, which builds the control plane")
	}
	bin := filepath.Join(t.TempDir(), "dev-cluster")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), string(out))
	// A relative --dir, as `make dev-cluster` passes.
	work := t.TempDir()
	dir := filepath.Join(work, ".dev-cluster")
	up := exec.Command(bin, "up", "--dir", ".dev-cluster", "--bin-dir", assets, "--nodes", "1")
	up.Dir = work
	out, err = up.CombinedOutput()
	t.Cleanup(func() { _ = exec.Command(bin, "down", "--dir", dir).Run() })
	g.Expect(err).NotTo(HaveOccurred(), string(out))
	g.Expect(string(out)).To(ContainSubstring("cluster: ready; export KUBECONFIG=" + filepath.Join(dir, "kubeconfig")))

	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(dir, "kubeconfig"))
	g.Expect(err).NotTo(HaveOccurred())
	cs, err := kubernetes.NewForConfig(cfg)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = cs.Discovery().ServerVersion()
	g.Expect(err).NotTo(HaveOccurred(), "the API server outlives `up`")

	var st struct {
		Procs []struct {
			Name string `json:"name"`
			PID  int    `json:"pid"`
		} `json:"procs"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "state.json"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(json.Unmarshal(data, &st)).To(Succeed())
	g.Expect(st.Procs).To(HaveLen(5))

	down := exec.Command(bin, "down", "--dir", ".dev-cluster")
	down.Dir = work
	out, err = down.CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), string(out))
	// The processes were re-parented when `up` exited; once stopped, init
	// reaps them, so their /proc entries vanish.
	for _, p := range st.Procs {
		g.Eventually(filepath.Join("/proc", strconv.Itoa(p.PID)), 10*time.Second, 50*time.Millisecond).
			ShouldNot(BeAnExistingFile(), "%s is gone", p.Name)
	}
}

func TestUpWithoutBinDirExplainsWhatToRun(t *testing.T) {
	g := NewWithT(t)
	bin := filepath.Join(t.TempDir(), "dev-cluster")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), string(out))
	out, err = exec.Command(bin, "up", "--dir", t.TempDir()).CombinedOutput()
	g.Expect(err).To(HaveOccurred())
	g.Expect(string(out)).To(ContainSubstring("--bin-dir is required (run `make dev-cluster`"))
}
