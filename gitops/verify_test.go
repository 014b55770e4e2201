package gitops_test

import (
	"testing"

	. "github.com/onsi/gomega"

	"github.com/vigil-dev/vigil/gitops"
	"github.com/vigil-dev/vigil/hack/gittest"
)

func TestOpenPGPSignatures(t *testing.T) {
	g := NewWithT(t)
	trusted, trustedPub := gittest.NewPGPKey(t, "release")
	other, _ := gittest.NewPGPKey(t, "mallory")
	repo := gittest.NewRepo(t, "app.git")
	url := repo.Daemon()
	keys := map[string][]byte{"release.asc": trustedPub}
	head := func() *gitops.Snapshot {
		snap, err := fetch(t, gitops.Source{URL: url, Ref: gitops.Ref{Branch: "main"}}, gitops.DefaultLimits())
		g.Expect(err).NotTo(HaveOccurred())
		return snap
	}

	repo.Write("a.yaml", "a: 1\n")
	signed := repo.CommitPGP("signed", trusted)
	signer, err := head().Verify(gitops.ModeOpenPGP, keys)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(signer).To(ContainSubstring("release.asc (OpenPGP key "))

	repo.Write("a.yaml", "a: 2\n")
	unsigned := repo.Commit("unsigned")
	_, err = head().Verify(gitops.ModeOpenPGP, keys)
	g.Expect(reasonOf(err)).To(Equal(gitops.ReasonUnsigned))
	g.Expect(err.Error()).To(Equal("commit " + unsigned[:12] + " is not signed"))

	repo.Write("a.yaml", "a: 3\n")
	forged := repo.CommitPGP("by someone else", other)
	_, err = head().Verify(gitops.ModeOpenPGP, keys)
	g.Expect(reasonOf(err)).To(Equal(gitops.ReasonUntrustedSignature))
	g.Expect(err.Error()).To(ContainSubstring("commit " + forged[:12] + " is signed by OpenPGP key "))
	g.Expect(err.Error()).To(ContainSubstring("(release.asc)"))

	_, err = head().Verify(gitops.ModeSSH, keys)
	g.Expect(err).To(MatchError(ContainSubstring("has an OpenPGP signature, but verify.mode is SSH")))
	_, err = head().Verify(gitops.ModeOpenPGP, nil)
	g.Expect(err).To(MatchError(ContainSubstring("holds no keys")))
	g.Expect(signed).NotTo(Equal(forged))
}

func TestSSHSignaturesMadeByGit(t *testing.T) {
	g := NewWithT(t)
	keyFile, pub := gittest.NewSSHKey(t)
	otherFile, otherPub := gittest.NewSSHKey(t)
	repo := gittest.NewRepo(t, "app.git")
	url := repo.Daemon()
	head := func() *gitops.Snapshot {
		snap, err := fetch(t, gitops.Source{URL: url, Ref: gitops.Ref{Branch: "main"}}, gitops.DefaultLimits())
		g.Expect(err).NotTo(HaveOccurred())
		return snap
	}

	repo.Write("a.yaml", "a: 1\n")
	repo.CommitSSH("signed with ssh", keyFile)
	signer, err := head().Verify(gitops.ModeSSH, map[string][]byte{"release": pub, "spare": otherPub[:20]})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(signer).To(HavePrefix("release (SSH key SHA256:"))

	_, err = head().Verify(gitops.ModeOpenPGP, map[string][]byte{"release": pub})
	g.Expect(err).To(MatchError(ContainSubstring("has an SSH signature, but verify.mode is OpenPGP")))

	repo.Write("a.yaml", "a: 2\n")
	c := repo.CommitSSH("signed by another key", otherFile)
	_, err = head().Verify(gitops.ModeSSH, map[string][]byte{"release": pub})
	g.Expect(reasonOf(err)).To(Equal(gitops.ReasonUntrustedSignature))
	g.Expect(err.Error()).To(ContainSubstring("commit " + c[:12] + " is signed by SSH key SHA256:"))
}
