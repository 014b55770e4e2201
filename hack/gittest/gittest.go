// Package gittest makes Git repositories with the machine's git and serves
// them on loopback with git's own server programs: `git daemon` (git://,
// in inetd mode behind a loopback listener) and `git http-backend`
// (smart HTTP, behind net/http/cgi, optionally with basic auth). Commits
// can be signed with an OpenPGP key (through go-git) or an SSH key
// (through git and ssh-keygen).
package gittest

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Repo is a working repository whose commits are pushed to a bare one
// under Root, which the servers serve.
type Repo struct {
	t    testing.TB
	Root string // directory the servers export
	Name string // the bare repository's name under Root, e.g. "app.git"
	Work string // the working tree
	env  []string
	when time.Time
}

// NewRepo makes an empty bare repository Root/name and a working clone of
// it with one branch, main.
func NewRepo(t testing.TB, name string) *Repo {
	t.Helper()
	root := t.TempDir()
	home := t.TempDir()
	r := &Repo{t: t, Root: root, Name: name, Work: filepath.Join(root, "work"),
		when: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	r.env = append(os.Environ(), "HOME="+home, "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=Vigil Test", "GIT_AUTHOR_EMAIL=test@vigil.dev",
		"GIT_COMMITTER_NAME=Vigil Test", "GIT_COMMITTER_EMAIL=test@vigil.dev")
	bare := filepath.Join(root, name)
	r.Git(root, "init", "-q", "--bare", "-b", "main", bare)
	r.Git(bare, "config", "uploadpack.allowReachableSHA1InWant", "true")
	r.Git(bare, "config", "http.receivepack", "false")
	r.Git(root, "init", "-q", "-b", "main", r.Work)
	r.Git(r.Work, "remote", "add", "origin", bare)
	return r
}

// Git runs git in dir and returns its trimmed output; a failure fails the test.
func (r *Repo) Git(dir string, args ...string) string {
	r.t.Helper()
	out, err := r.run(dir, nil, args...)
	if err != nil {
		r.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(out)
}

func (r *Repo) run(dir string, stdin io.Reader, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(r.env, "GIT_AUTHOR_DATE="+r.when.Format(time.RFC3339), "GIT_COMMITTER_DATE="+r.when.Format(time.RFC3339))
	cmd.Stdin = stdin
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// Write puts content at path in the working tree.
func (r *Repo) Write(path, content string) {
	r.t.Helper()
	p := filepath.Join(r.Work, path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// Remove deletes path from the working tree.
func (r *Repo) Remove(path string) {
	r.t.Helper()
	if err := os.RemoveAll(filepath.Join(r.Work, path)); err != nil {
		r.t.Fatal(err)
	}
}

// Symlink makes path a symlink to target in the working tree.
func (r *Repo) Symlink(path, target string) {
	r.t.Helper()
	p := filepath.Join(r.Work, path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		r.t.Fatal(err)
	}
}

// Commit commits everything in the working tree, unsigned, pushes it and
// returns the commit's hash. Each commit is a minute after the last.
func (r *Repo) Commit(msg string) string {
	r.t.Helper()
	return r.commit(msg)
}

// commit runs git commit with git options (such as -c key=value) before it.
func (r *Repo) commit(msg string, gitOptions ...string) string {
	r.t.Helper()
	r.when = r.when.Add(time.Minute)
	r.Git(r.Work, "add", "-A")
	r.Git(r.Work, append(gitOptions, "commit", "-q", "--allow-empty", "-m", msg)...)
	return r.push()
}

func (r *Repo) push() string {
	r.t.Helper()
	r.Git(r.Work, "push", "-q", "-f", "origin", "HEAD:main")
	return r.Git(r.Work, "rev-parse", "HEAD")
}

// CommitOn commits everything on branch (made from main's HEAD if new),
// pushes that branch, returns to main and returns the commit's hash: a
// commit that main does not contain.
func (r *Repo) CommitOn(branch, msg string) string {
	r.t.Helper()
	r.when = r.when.Add(time.Minute)
	r.Git(r.Work, "checkout", "-q", "-B", branch)
	r.Git(r.Work, "add", "-A")
	r.Git(r.Work, "commit", "-q", "--allow-empty", "-m", msg)
	r.Git(r.Work, "push", "-q", "-f", "origin", branch)
	hash := r.Git(r.Work, "rev-parse", "HEAD")
	r.Git(r.Work, "checkout", "-q", "main")
	return hash
}

// CommitPGP commits everything, signed with key through go-git, and pushes.
func (r *Repo) CommitPGP(msg string, key *openpgp.Entity) string {
	r.t.Helper()
	r.when = r.when.Add(time.Minute)
	r.Git(r.Work, "add", "-A")
	repo, err := git.PlainOpen(r.Work)
	if err != nil {
		r.t.Fatal(err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		r.t.Fatal(err)
	}
	sig := &object.Signature{Name: "Vigil Test", Email: "test@vigil.dev", When: r.when}
	if _, err := wt.Commit(msg, &git.CommitOptions{Author: sig, Committer: sig, SignKey: key, AllowEmptyCommits: true}); err != nil {
		r.t.Fatal(err)
	}
	return r.push()
}

// CommitSSH commits everything signed with the SSH private key in
// keyFile (by git and ssh-keygen) and pushes.
func (r *Repo) CommitSSH(msg, keyFile string) string {
	r.t.Helper()
	return r.commit(msg, "-c", "gpg.format=ssh", "-c", "user.signingkey="+keyFile, "-c", "commit.gpgsign=true")
}

// Tag makes an annotated tag of HEAD and pushes it.
func (r *Repo) Tag(name string) {
	r.t.Helper()
	r.Git(r.Work, "tag", "-a", "-m", name, name)
	r.Git(r.Work, "push", "-q", "origin", "refs/tags/"+name)
}

// FastImport feeds a fast-import stream to the working repository (for
// trees too big to write file by file) and pushes main without checking
// it out.
func (r *Repo) FastImport(stream io.Reader) string {
	r.t.Helper()
	if out, err := r.run(r.Work, stream, "fast-import", "--quiet", "--force"); err != nil {
		r.t.Fatalf("git fast-import: %v\n%s", err, out)
	}
	return r.push()
}

// ImportFiles commits, through fast-import, files that all hold content,
// at the paths name(0) to name(n-1), plus one file of size zero bytes at
// big (when size > 0), streamed so neither is held in memory.
func (r *Repo) ImportFiles(content string, n int, name func(int) string, big string, size int64) string {
	r.t.Helper()
	pr, pw := io.Pipe()
	go func() {
		fmt.Fprintf(pw, "blob\nmark :1\ndata %d\n%s\n", len(content), content)
		if size > 0 {
			fmt.Fprintf(pw, "blob\nmark :2\ndata %d\n", size)
			if _, err := io.CopyN(pw, zeros{}, size); err != nil {
				pw.CloseWithError(err)
				return
			}
			fmt.Fprint(pw, "\n")
		}
		fmt.Fprintf(pw, "commit refs/heads/main\ncommitter Vigil Test <test@vigil.dev> %d +0000\ndata 8\nimported\n", r.when.Unix())
		for i := range n {
			fmt.Fprintf(pw, "M 100644 :1 %s\n", name(i))
		}
		if size > 0 {
			fmt.Fprintf(pw, "M 100644 :2 %s\n", big)
		}
		pw.Close()
	}()
	return r.FastImport(pr)
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// Daemon serves Root over git:// on loopback: each connection runs
// `git daemon --inetd`. It is stopped when the test ends.
func (r *Repo) Daemon() string {
	r.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		r.t.Fatal(err)
	}
	var wg sync.WaitGroup
	r.t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				cmd := exec.Command("git", "daemon", "--inetd", "--export-all", "--base-path="+r.Root, r.Root)
				cmd.Env = r.env
				cmd.Stdin, cmd.Stdout = c, c
				_ = cmd.Run()
			})
		}
	})
	return "git://" + ln.Addr().String() + "/" + r.Name
}

// HTTPServer serves Root over smart HTTP with git http-backend.
type HTTPServer struct {
	URL string
	// Requests counts the requests served.
	Requests atomic.Int64
	stall    atomic.Bool
}

// Stall makes the server hold every request until the test ends (or
// Stall(false)).
func (s *HTTPServer) Stall(on bool) { s.stall.Store(on) }

// HTTP serves Root over http:// on loopback; with user set, requests need
// basic auth with user and password.
func (r *Repo) HTTP(user, password string) *HTTPServer {
	r.t.Helper()
	execPath := r.Git(r.Root, "--exec-path")
	backend := &cgi.Handler{
		Path: filepath.Join(execPath, "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + r.Root, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1"},
	}
	s := &HTTPServer{}
	done := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		s.Requests.Add(1)
		for s.stall.Load() {
			select {
			case <-done:
				return
			case <-req.Context().Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
		if user != "" {
			u, p, ok := req.BasicAuth()
			if !ok || u != user || p != password {
				w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			req.Header.Set("REMOTE_USER", u)
		}
		backend.ServeHTTP(w, req)
	})
	srv := httptest.NewServer(h)
	r.t.Cleanup(func() { close(done); srv.Close() })
	s.URL = srv.URL + "/" + r.Name
	return s
}

// NewPGPKey makes an OpenPGP key pair and returns it with its armored
// public key ring.
func NewPGPKey(t testing.TB, name string) (*openpgp.Entity, []byte) {
	t.Helper()
	e, err := openpgp.NewEntity(name, "test", name+"@vigil.dev", nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, "PGP PUBLIC KEY BLOCK", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Serialize(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return e, buf.Bytes()
}

// NewSSHKey makes an ed25519 key pair with ssh-keygen and returns the
// private key's file and the public key's authorized_keys line.
func NewSSHKey(t testing.TB) (string, []byte) {
	t.Helper()
	dir := t.TempDir()
	key := filepath.Join(dir, "id_ed25519")
	out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vigil-test", "-f", key).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return key, pub
}

// Stalling is a loopback listener that accepts connections and never
// answers, to test timeouts.
func Stalling(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	return fmt.Sprintf("git://%s/stalled.git", ln.Addr())
}
