package gitops

import (
	"container/list"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Push is what a push delivery of GitHub, GitLab or Gitea says.
type Push struct {
	// Provider is github, gitlab or gitea.
	Provider string
	// Delivery is the delivery's id, as the provider's header gives it.
	Delivery string
	// Repositories are the URLs the payload gives for the repository,
	// normalised with NormalizeURL.
	Repositories []string
	// Ref is the pushed ref, such as refs/heads/main.
	Ref string
}

// ErrNotPush is returned for deliveries of other events (a ping, an issue).
var ErrNotPush = errors.New("the delivery is not a push event")

// Header is the part of an HTTP header ParsePush reads.
type Header interface{ Get(string) string }

// ParsePush reads a delivery. The body must already be bounded by the
// caller; nothing of it is trusted until Authentic says so.
func ParsePush(h Header, body []byte) (*Push, error) {
	p := &Push{}
	var event string
	switch {
	case h.Get("X-GitHub-Event") != "":
		p.Provider, event, p.Delivery = "github", h.Get("X-GitHub-Event"), h.Get("X-GitHub-Delivery")
	case h.Get("X-Gitea-Event") != "":
		p.Provider, event, p.Delivery = "gitea", h.Get("X-Gitea-Event"), h.Get("X-Gitea-Delivery")
	case h.Get("X-Gitlab-Event") != "":
		p.Provider, event = "gitlab", h.Get("X-Gitlab-Event")
		p.Delivery = h.Get("X-Gitlab-Event-UUID")
		if p.Delivery == "" {
			p.Delivery = h.Get("Idempotency-Key")
		}
	default:
		return nil, errors.New("the delivery names no provider event (X-GitHub-Event, X-Gitea-Event or X-Gitlab-Event)")
	}
	switch event {
	case "push", "Push Hook", "Tag Push Hook":
	default:
		return p, ErrNotPush
	}
	var payload struct {
		Ref        string `json:"ref"`
		Repository struct {
			CloneURL string `json:"clone_url"`
			SSHURL   string `json:"ssh_url"`
			HTMLURL  string `json:"html_url"`
			GitURL   string `json:"git_url"`
			URL      string `json:"url"`
			HTTPURL  string `json:"git_http_url"`
			SSH      string `json:"git_ssh_url"`
		} `json:"repository"`
		Project struct {
			HTTPURL string `json:"git_http_url"`
			SSHURL  string `json:"git_ssh_url"`
			WebURL  string `json:"web_url"`
		} `json:"project"`
	}
	if err := json.Unmarshal(body, &payload); err != nil {
		return nil, fmt.Errorf("the push payload is not valid JSON: %w", err)
	}
	p.Ref = payload.Ref
	r, pr := payload.Repository, payload.Project
	seen := map[string]bool{}
	for _, u := range []string{r.CloneURL, r.SSHURL, r.HTMLURL, r.GitURL, r.URL, r.HTTPURL, r.SSH, pr.HTTPURL, pr.SSHURL, pr.WebURL} {
		if n := NormalizeURL(u); n != "" && !seen[n] {
			seen[n] = true
			p.Repositories = append(p.Repositories, n)
		}
	}
	if len(p.Repositories) == 0 {
		return nil, errors.New("the push payload names no repository URL")
	}
	return p, nil
}

// Authentic checks a delivery against a shared secret: GitHub's
// X-Hub-Signature-256 and Gitea's X-Gitea-Signature are HMAC-SHA256 of the
// body; GitLab sends the secret itself in X-Gitlab-Token, compared in
// constant time.
func Authentic(p *Push, h Header, body, secret []byte) bool {
	if len(secret) == 0 {
		return false
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	sum := mac.Sum(nil)
	switch p.Provider {
	case "github":
		got, ok := strings.CutPrefix(h.Get("X-Hub-Signature-256"), "sha256=")
		return ok && equalHex(got, sum)
	case "gitea":
		return equalHex(h.Get("X-Gitea-Signature"), sum)
	case "gitlab":
		return subtle.ConstantTimeCompare([]byte(h.Get("X-Gitlab-Token")), secret) == 1
	}
	return false
}

func equalHex(s string, want []byte) bool {
	got, err := hex.DecodeString(strings.TrimSpace(s))
	return err == nil && hmac.Equal(got, want)
}

// Seen remembers deliveries for a while, by id and by body digest, so a
// replayed delivery is noticed even if its (unsigned) id header was
// changed. It holds at most max entries; the oldest go first.
type Seen struct {
	mu    sync.Mutex
	max   int
	ttl   time.Duration
	order *list.List
	at    map[string]*list.Element
}

type seenEntry struct {
	key string
	at  time.Time
}

// NewSeen remembers up to max deliveries for ttl.
func NewSeen(max int, ttl time.Duration) *Seen {
	return &Seen{max: max, ttl: ttl, order: list.New(), at: map[string]*list.Element{}}
}

// Add records a delivery and reports whether it was new.
func (s *Seen) Add(now time.Time, delivery string, body []byte) bool {
	digest := sha256.Sum256(body)
	keys := []string{"body:" + hex.EncodeToString(digest[:])}
	if delivery != "" {
		keys = append(keys, "id:"+delivery)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for e := s.order.Front(); e != nil && now.Sub(e.Value.(seenEntry).at) > s.ttl; e = s.order.Front() {
		delete(s.at, e.Value.(seenEntry).key)
		s.order.Remove(e)
	}
	for _, k := range keys {
		if _, ok := s.at[k]; ok {
			return false
		}
	}
	for _, k := range keys {
		s.at[k] = s.order.PushBack(seenEntry{key: k, at: now})
		if s.order.Len() > s.max {
			e := s.order.Front()
			delete(s.at, e.Value.(seenEntry).key)
			s.order.Remove(e)
		}
	}
	return true
}
