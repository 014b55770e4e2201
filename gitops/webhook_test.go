package gitops_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/vigil-dev/vigil/gitops"
)

func sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

func TestParseAndAuthenticatePushes(t *testing.T) {
	secret := []byte("hook-secret")
	github := []byte(`{"ref":"refs/heads/main","repository":{"clone_url":"https://GitHub.com/acme/shop.git","ssh_url":"git@github.com:acme/shop.git","html_url":"https://github.com/acme/shop"}}`)
	gitlab := []byte(`{"ref":"refs/heads/main","project":{"git_http_url":"https://gitlab.com/acme/shop.git","git_ssh_url":"git@gitlab.com:acme/shop.git"}}`)
	gitea := []byte(`{"ref":"refs/heads/dev","repository":{"clone_url":"http://127.0.0.1:3000/acme/shop.git"}}`)
	for _, tc := range []struct {
		name    string
		headers map[string]string
		body    []byte
		valid   bool
		repo    string
		ref     string
	}{
		{"github", map[string]string{"X-GitHub-Event": "push", "X-GitHub-Delivery": "d1", "X-Hub-Signature-256": "sha256=" + sign(secret, github)}, github, true, "github.com/acme/shop", "refs/heads/main"},
		{"github bad signature", map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + sign([]byte("other"), github)}, github, false, "github.com/acme/shop", "refs/heads/main"},
		{"github sha1 only", map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature": "sha1=00"}, github, false, "github.com/acme/shop", "refs/heads/main"},
		{"gitea", map[string]string{"X-Gitea-Event": "push", "X-Gitea-Delivery": "d2", "X-Gitea-Signature": sign(secret, gitea)}, gitea, true, "127.0.0.1:3000/acme/shop", "refs/heads/dev"},
		{"gitea unsigned", map[string]string{"X-Gitea-Event": "push"}, gitea, false, "127.0.0.1:3000/acme/shop", "refs/heads/dev"},
		{"gitlab", map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Event-UUID": "d3", "X-Gitlab-Token": "hook-secret"}, gitlab, true, "gitlab.com/acme/shop", "refs/heads/main"},
		{"gitlab wrong token", map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "hook-secreT"}, gitlab, false, "gitlab.com/acme/shop", "refs/heads/main"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			h := http.Header{}
			for k, v := range tc.headers {
				h.Set(k, v)
			}
			p, err := gitops.ParsePush(h, tc.body)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(p.Repositories).To(ContainElement(tc.repo))
			g.Expect(p.Ref).To(Equal(tc.ref))
			g.Expect(gitops.Authentic(p, h, tc.body, secret)).To(Equal(tc.valid))
			if p.Provider != "gitlab" { // GitLab's token does not cover the body
				g.Expect(gitops.Authentic(p, h, append([]byte(" "), tc.body...), secret)).To(BeFalse(), "a changed body never verifies")
			}
		})
	}
}

func TestParsePushRefusals(t *testing.T) {
	g := NewWithT(t)
	h := http.Header{}
	_, err := gitops.ParsePush(h, []byte(`{}`))
	g.Expect(err).To(MatchError(ContainSubstring("names no provider event")))
	h.Set("X-GitHub-Event", "ping")
	_, err = gitops.ParsePush(h, []byte(`{}`))
	g.Expect(err).To(MatchError(gitops.ErrNotPush))
	h.Set("X-GitHub-Event", "push")
	_, err = gitops.ParsePush(h, []byte(`{"ref":1`))
	g.Expect(err).To(MatchError(ContainSubstring("not valid JSON")))
	_, err = gitops.ParsePush(h, []byte(`{"ref":"refs/heads/main"}`))
	g.Expect(err).To(MatchError(ContainSubstring("names no repository URL")))
}

func TestSeenRefusesReplaysByIDAndByBody(t *testing.T) {
	g := NewWithT(t)
	s := gitops.NewSeen(3, time.Minute)
	now := time.Now()
	g.Expect(s.Add(now, "d1", []byte("a"))).To(BeTrue())
	g.Expect(s.Add(now, "d1", []byte("b"))).To(BeFalse(), "same delivery id")
	g.Expect(s.Add(now, "d2", []byte("a"))).To(BeFalse(), "same body under a new id")
	g.Expect(s.Add(now.Add(2*time.Minute), "d1", []byte("a"))).To(BeTrue(), "forgotten after the ttl")
	for _, b := range []string{"c", "d", "e", "f"} {
		g.Expect(s.Add(now.Add(2*time.Minute), "", []byte(b))).To(BeTrue())
	}
	g.Expect(s.Add(now.Add(2*time.Minute), "", []byte("c"))).To(BeTrue(), "bounded: the oldest entries went first")
}

func FuzzParsePush(f *testing.F) {
	f.Add("push", []byte(`{"ref":"refs/heads/main","repository":{"clone_url":"https://github.com/a/b.git"}}`))
	f.Add("Push Hook", []byte(`{"project":{"git_ssh_url":"git@x:y/z.git"}}`))
	f.Add("push", []byte(`{"repository":{"clone_url":"::::"}}`))
	f.Fuzz(func(t *testing.T, event string, body []byte) {
		h := http.Header{}
		h.Set("X-GitHub-Event", event)
		p, err := gitops.ParsePush(h, body)
		if err != nil {
			return
		}
		for _, r := range p.Repositories {
			if r == "" || gitops.NormalizeURL("https://"+r) != r {
				t.Fatalf("repository %q is not in normal form", r)
			}
		}
	})
}
