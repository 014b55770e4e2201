package cluster

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// TestStopDirStopsEachProcessAndItsChildren starts a process the way the
// demo starts git daemon (which forks a child per connection) and stops it
// from its recorded state only, as `make demo-down` does.
func TestStopDirStopsEachProcessAndItsChildren(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	ps, err := OpenProcesses(dir)
	g.Expect(err).NotTo(HaveOccurred())
	childFile := filepath.Join(dir, "child")
	g.Expect(ps.Start("parent", "/bin/sh", []string{"-c", "sleep 300 & echo $! > " + childFile + "; wait"}, nil)).To(Succeed())
	var child int
	g.Eventually(func() error {
		data, err := os.ReadFile(childFile)
		if err == nil {
			child, err = strconv.Atoi(strings.TrimSpace(string(data)))
		}
		return err
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())
	parent := ps.find("parent").PID
	g.Expect(ps.Alive("parent")).To(BeTrue())

	_, err = OpenProcesses(dir)
	g.Expect(err).To(MatchError(ContainSubstring("still run (parent, pid " + strconv.Itoa(parent))))

	g.Expect(StopDir(dir)).To(Succeed())
	for _, pid := range []int{parent, child} {
		g.Eventually(func() bool { return gone(pid) }, 10*time.Second, 50*time.Millisecond).Should(BeTrue(), "pid %d is gone", pid)
	}
	g.Expect(filepath.Join(dir, stateFile)).NotTo(BeAnExistingFile())
}

// gone: no such process, or only its zombie.
func gone(pid int) bool {
	fields, err := statFields(pid)
	return err != nil || fields[0] == "Z"
}
