package gitops_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	. "github.com/onsi/gomega/gstruct"

	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"

	"github.com/vigil-dev/vigil/gitops"
	"github.com/vigil-dev/vigil/hack/gittest"
	"github.com/vigil-dev/vigil/outcome"
)

func fetch(t *testing.T, src gitops.Source, limits gitops.Limits) (*gitops.Snapshot, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return gitops.Fetch(ctx, src, t.TempDir(), limits)
}

func reasonOf(err error) string { return gitops.Outcome(err).Reason }

func TestFetchBranchTagAndCommitOverDaemonAndHTTP(t *testing.T) {
	g := NewWithT(t)
	repo := gittest.NewRepo(t, "app.git")
	repo.Write("deploy/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: one\n")
	first := repo.Commit("first")
	repo.Tag("v1")
	repo.Write("deploy/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: two\n")
	second := repo.Commit("second")

	for name, url := range map[string]string{"git daemon": repo.Daemon(), "http-backend": repo.HTTP("", "").URL} {
		t.Run(name, func(t *testing.T) {
			for _, tc := range []struct {
				ref  gitops.Ref
				want string
			}{
				{gitops.Ref{Branch: "main"}, second},
				{gitops.Ref{Tag: "v1"}, first},
				{gitops.Ref{Commit: first}, first},
			} {
				src := gitops.Source{URL: url, Ref: tc.ref}
				resolved, err := gitops.Resolve(context.Background(), src)
				g.Expect(err).NotTo(HaveOccurred(), tc.ref.String())
				g.Expect(resolved).To(Equal(tc.want), tc.ref.String())
				snap, err := fetch(t, src, gitops.DefaultLimits())
				g.Expect(err).NotTo(HaveOccurred(), tc.ref.String())
				g.Expect(snap.Commit).To(Equal(tc.want), tc.ref.String())
				fs, err := snap.Tree()
				g.Expect(err).NotTo(HaveOccurred())
				b, err := fs.ReadFile("/deploy/cm.yaml")
				g.Expect(err).NotTo(HaveOccurred())
				wantName := map[string]string{first: "one", second: "two"}[tc.want]
				g.Expect(string(b)).To(ContainSubstring("name: " + wantName))
			}
		})
	}
}

func TestFetchIsShallow(t *testing.T) {
	g := NewWithT(t)
	repo := gittest.NewRepo(t, "app.git")
	for i := range 5 {
		repo.Write("f.yaml", fmt.Sprintf("n: %d\n", i))
		repo.Commit(fmt.Sprintf("c%d", i))
	}
	dir := t.TempDir()
	snap, err := gitops.Fetch(context.Background(), gitops.Source{URL: repo.Daemon(), Ref: gitops.Ref{Branch: "main"}}, dir, gitops.DefaultLimits())
	g.Expect(err).NotTo(HaveOccurred())
	// One commit, its tree and its one blob: the history was not fetched.
	g.Expect(gitops.ObjectsIn(dir)).To(Equal(3))
	g.Expect(snap.Commit).NotTo(BeEmpty())
}

func TestMissingRefsAreRefNotFound(t *testing.T) {
	g := NewWithT(t)
	repo := gittest.NewRepo(t, "app.git")
	repo.Write("a.yaml", "a: 1\n")
	repo.Commit("one")
	url := repo.Daemon()
	_, err := gitops.Resolve(context.Background(), gitops.Source{URL: url, Ref: gitops.Ref{Branch: "nope"}})
	g.Expect(reasonOf(err)).To(Equal(gitops.ReasonRefNotFound))
	g.Expect(err.Error()).To(ContainSubstring("branch nope"))
	_, err = fetch(t, gitops.Source{URL: url, Ref: gitops.Ref{Commit: strings.Repeat("ab", 20)}}, gitops.DefaultLimits())
	g.Expect(reasonOf(err)).To(Equal(gitops.ReasonRefNotFound))
}

func TestHTTPCredentials(t *testing.T) {
	g := NewWithT(t)
	repo := gittest.NewRepo(t, "app.git")
	repo.Write("a.yaml", "a: 1\n")
	head := repo.Commit("one")
	srv := repo.HTTP("deployer", "s3cret")

	auth, err := gitops.Auth(srv.URL, map[string][]byte{"username": []byte("deployer"), "password": []byte("s3cret\n")})
	g.Expect(err).NotTo(HaveOccurred())
	snap, err := fetch(t, gitops.Source{URL: srv.URL, Ref: gitops.Ref{Branch: "main"}, Auth: auth}, gitops.DefaultLimits())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(snap.Commit).To(Equal(head))

	_, err = fetch(t, gitops.Source{URL: srv.URL, Ref: gitops.Ref{Branch: "main"}, Auth: &githttp.BasicAuth{Username: "deployer", Password: "wrong"}}, gitops.DefaultLimits())
	g.Expect(reasonOf(err)).To(Equal(gitops.ReasonAuthFailed))
	g.Expect(err.Error()).NotTo(ContainSubstring("wrong"))
}

func TestAuthRefusesIncompleteSecrets(t *testing.T) {
	g := NewWithT(t)
	_, err := gitops.Auth("https://example.com/a.git", map[string][]byte{"username": []byte("u")})
	g.Expect(err).To(MatchError(ContainSubstring("neither `password` nor `bearerToken`")))
	_, err = gitops.Auth("ssh://git@example.com/a.git", map[string][]byte{"identity": []byte("x")})
	g.Expect(err).To(MatchError(ContainSubstring("no `known_hosts`")))
	_, err = gitops.Auth("git@example.com:a.git", map[string][]byte{"identity": []byte("not a key"), "known_hosts": []byte("example.com ssh-ed25519 AAAA")})
	g.Expect(err).To(MatchError(ContainSubstring("not a usable private key")))
	g.Expect(err.Error()).NotTo(ContainSubstring("not a key"))
}

func TestAStalledServerIsUnknown(t *testing.T) {
	g := NewWithT(t)
	url := gittest.Stalling(t)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := gitops.Fetch(ctx, gitops.Source{URL: url, Ref: gitops.Ref{Branch: "main"}}, t.TempDir(), gitops.DefaultLimits())
	g.Expect(gitops.Outcome(err)).To(MatchFields(IgnoreExtras, Fields{"Result": Equal(outcome.Unknown), "Reason": Equal(gitops.ReasonUnreachable)}))
	g.Expect(time.Since(start)).To(BeNumerically("<", 10*time.Second), "the fetch returned once the timeout passed")
	_, err = gitops.Resolve(ctx, gitops.Source{URL: url, Ref: gitops.Ref{Branch: "main"}})
	g.Expect(gitops.Outcome(err).Result).To(Equal(outcome.Unknown))
}

func TestFetchLimits(t *testing.T) {
	repo := gittest.NewRepo(t, "app.git")
	repo.Write("big.yaml", strings.Repeat("x", 3<<20))
	for i := range 50 {
		repo.Write(fmt.Sprintf("small/%d.yaml", i), fmt.Sprintf("n: %d\n", i))
	}
	repo.Commit("big")
	url := repo.Daemon()
	for _, tc := range []struct {
		name  string
		limit func(*gitops.Limits)
		want  string
	}{
		{"object size", func(l *gitops.Limits) { l.FileBytes = 1 << 20 }, "bytes in one object"},
		{"objects", func(l *gitops.Limits) { l.Objects = 10 }, "limit on objects"},
		{"bytes downloaded", func(l *gitops.Limits) { l.PackBytes = 1024 }, "bytes downloaded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			l := gitops.DefaultLimits()
			tc.limit(&l)
			_, err := fetch(t, gitops.Source{URL: url, Ref: gitops.Ref{Branch: "main"}}, l)
			g.Expect(reasonOf(err)).To(Equal(gitops.ReasonLimitExceeded))
			g.Expect(err.Error()).To(ContainSubstring(tc.want))
		})
	}
}
