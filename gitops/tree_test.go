package gitops_test

import (
	"fmt"
	"strings"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/vigil-dev/vigil/gitops"
	"github.com/vigil-dev/vigil/hack/gittest"
)

func TestSymlinksInsideTheRepositoryAreReadAndOthersRefused(t *testing.T) {
	for _, tc := range []struct {
		name, link, target, want string
	}{
		{"to a file inside", "deploy/cm.yaml", "../shared/cm.yaml", ""},
		{"to /etc", "deploy/passwd.yaml", "/etc/passwd", "points outside the repository (/etc/passwd)"},
		{"to the directory /etc", "deploy/etc", "/etc", "points outside the repository (/etc)"},
		{"up and out", "deploy/up.yaml", "../../outside.yaml", "points outside the repository"},
		{"to a directory inside", "deploy/dir", "../shared", "points to the directory shared"},
		{"to nothing", "deploy/gone.yaml", "missing.yaml", "not in the repository"},
		{"in a loop", "deploy/a.yaml", "a.yaml", "more than 8 symlinks"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			repo := gittest.NewRepo(t, "app.git")
			repo.Write("shared/cm.yaml", "kind: ConfigMap\n")
			repo.Symlink(tc.link, tc.target)
			repo.Commit("links")
			snap, err := fetch(t, gitops.Source{URL: repo.Daemon(), Ref: gitops.Ref{Branch: "main"}}, gitops.DefaultLimits())
			g.Expect(err).NotTo(HaveOccurred())
			fs, err := snap.Tree()
			if tc.want != "" {
				g.Expect(reasonOf(err)).To(Equal(gitops.ReasonUnsafeContent))
				g.Expect(err.Error()).To(ContainSubstring(tc.want))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			b, err := fs.ReadFile("/" + tc.link)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(string(b)).To(Equal("kind: ConfigMap\n"))
		})
	}
}

func TestTreeLimits(t *testing.T) {
	repo := gittest.NewRepo(t, "app.git")
	repo.Write(strings.Repeat("d/", 6)+"deep.yaml", "a: 1\n")
	for i := range 20 {
		repo.Write(fmt.Sprintf("many/%d.yaml", i), fmt.Sprintf("n: %d\n", i))
	}
	repo.Write("big.yaml", strings.Repeat("y", 5000))
	repo.Commit("shapes")
	url := repo.Daemon()
	for _, tc := range []struct {
		name  string
		limit func(*gitops.Limits)
		want  string
	}{
		{"depth", func(l *gitops.Limits) { l.Depth = 4 }, "limit on path depth: 5"},
		{"files", func(l *gitops.Limits) { l.Files = 10 }, "limit on files: 11"},
		{"bytes in all files", func(l *gitops.Limits) { l.TreeBytes = 4000 }, "bytes in all files"},
		{"one file", func(l *gitops.Limits) { l.FileBytes = 4096 }, "bytes in one object: 5000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			l := gitops.DefaultLimits()
			l.FileBytes = 1 << 20
			tc.limit(&l)
			snap, err := fetch(t, gitops.Source{URL: url, Ref: gitops.Ref{Branch: "main"}}, l)
			if err == nil {
				_, err = snap.Tree()
			}
			g.Expect(reasonOf(err)).To(Equal(gitops.ReasonLimitExceeded))
			g.Expect(err.Error()).To(ContainSubstring(tc.want))
		})
	}
}
