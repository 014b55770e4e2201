package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// proc is one process the cluster started. StartTime (from /proc) guards
// against signalling an unrelated process that reused the pid.
type proc struct {
	Name      string `json:"name"`
	PID       int    `json:"pid"`
	StartTime string `json:"startTime"`
	cmd       *exec.Cmd
}

// state is what `dev-cluster down` needs to stop a cluster it did not start.
type state struct {
	Procs []proc `json:"procs"`
}

const stateFile = "state.json"

// startProc starts bin with args (and env added to this process's
// environment) in a session and process group of its own, logging to
// dir/logs/NAME.log.
// With dieWithParent the kernel kills it when this program exits, however
// it exits: for tests, whose cleanup a timeout skips.
func startProc(dir, name, bin string, args, env []string, dieWithParent bool) (*proc, error) {
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return nil, fmt.Errorf("creating log dir: %w", err)
	}
	// Appended to, so a restarted process keeps its predecessor's log.
	logf, err := os.OpenFile(filepath.Join(dir, "logs", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("creating log of %s: %w", name, err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	// A session of its own: the process outlives `make dev-cluster` and is
	// not hit by a Ctrl-C meant for the shell.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if dieWithParent {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s (%s): %w", name, bin, err)
	}
	st, err := procStartTime(cmd.Process.Pid)
	if err != nil {
		_ = cmd.Process.Kill()
		return nil, err
	}
	p := &proc{Name: name, PID: cmd.Process.Pid, StartTime: st, cmd: cmd}
	// Reap the process when it exits so that a stopped process never lingers
	// as a zombie of this program.
	go func() { _ = cmd.Wait() }()
	return p, nil
}

// statFields returns the fields of /proc/PID/stat after the command name,
// which may itself hold spaces: fields[0] is the state, fields[19] the start
// time in clock ticks since boot.
func statFields(pid int) ([]string, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, err
	}
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 20 {
		return nil, fmt.Errorf("parsing /proc/%d/stat: too few fields", pid)
	}
	return fields, nil
}

func procStartTime(pid int) (string, error) {
	fields, err := statFields(pid)
	if err != nil {
		return "", fmt.Errorf("reading start time of pid %d: %w", pid, err)
	}
	return fields[19], nil
}

// alive reports whether p is still the process that was started: it exists,
// is not a zombie, and has the recorded start time.
func (p *proc) alive() bool {
	fields, err := statFields(p.PID)
	return err == nil && fields[0] != "Z" && fields[19] == p.StartTime
}

// stop sends SIGTERM to the process group (so children such as git
// daemon's go too), waits up to grace, then SIGKILLs it and waits again.
func (p *proc) stop(grace time.Duration) error {
	if !p.alive() {
		return nil
	}
	_ = syscall.Kill(-p.PID, syscall.SIGTERM)
	if waitGone(p, grace) {
		_ = syscall.Kill(-p.PID, syscall.SIGKILL) // stragglers of the group
		return nil
	}
	_ = syscall.Kill(-p.PID, syscall.SIGKILL)
	if waitGone(p, 10*time.Second) {
		return nil
	}
	return fmt.Errorf("%s (pid %d) did not exit after SIGKILL", p.Name, p.PID)
}

func waitGone(p *proc, d time.Duration) bool {
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, d, true,
		func(context.Context) (bool, error) { return !p.alive(), nil })
	return err == nil
}

func writeState(dir string, procs []*proc) error {
	var s state
	for _, p := range procs {
		s.Procs = append(s.Procs, *p)
	}
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding state: %w", err)
	}
	tmp := filepath.Join(dir, stateFile+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("writing state: %w", err)
	}
	return os.Rename(tmp, filepath.Join(dir, stateFile))
}

func readState(dir string) (state, error) {
	var s state
	data, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return s, err
	}
	if err != nil {
		return s, fmt.Errorf("reading state: %w", err)
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return s, fmt.Errorf("decoding %s: %w", filepath.Join(dir, stateFile), err)
	}
	return s, nil
}

// stopAll stops procs in reverse start order and reports every failure.
func stopAll(procs []proc) error {
	var errs []error
	for i := len(procs) - 1; i >= 0; i-- {
		if err := procs[i].stop(15 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Processes is a set of long-running processes recorded in dir/state.json
// as each starts, so that another program can stop them all with StopDir.
// The demo and the end-to-end suite run their servers this way.
type Processes struct {
	// DieWithParent makes the kernel kill each process when the program
	// that started it exits (tests set it; the demo's servers outlive it).
	DieWithParent bool
	dir           string
	mu            sync.Mutex
	procs         []*proc
}

// OpenProcesses starts a set in dir, refusing when processes recorded
// there still run.
func OpenProcesses(dir string) (*Processes, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", dir, err)
	}
	if s, err := readState(abs); err == nil {
		for i := range s.Procs {
			if s.Procs[i].alive() {
				return nil, fmt.Errorf("processes started from %s still run (%s, pid %d); stop them first", abs, s.Procs[i].Name, s.Procs[i].PID)
			}
		}
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", abs, err)
	}
	return &Processes{dir: abs}, nil
}

// Start runs bin with args and env, logging to dir/logs/NAME.log.
func (ps *Processes) Start(name, bin string, args, env []string) error {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	p, err := startProc(ps.dir, name, bin, args, env, ps.DieWithParent)
	if err != nil {
		return err
	}
	ps.procs = append(ps.procs, p)
	return writeState(ps.dir, ps.procs)
}

// Kill SIGKILLs the running process called name, as a crash would, and
// waits until it is gone.
func (ps *Processes) Kill(name string) error {
	p := ps.find(name)
	if p == nil {
		return fmt.Errorf("no running process called %s", name)
	}
	_ = syscall.Kill(-p.PID, syscall.SIGKILL)
	if !waitGone(p, 10*time.Second) {
		return fmt.Errorf("%s (pid %d) did not exit after SIGKILL", p.Name, p.PID)
	}
	return nil
}

// Alive reports whether a process called name runs.
func (ps *Processes) Alive(name string) bool { return ps.find(name) != nil }

// Log is the path of name's log.
func (ps *Processes) Log(name string) string { return filepath.Join(ps.dir, "logs", name+".log") }

// Stop stops every process of the set and forgets them.
func (ps *Processes) Stop() error { return StopDir(ps.dir) }

// PID is the process id of the running process name, or 0.
func (ps *Processes) PID(name string) int {
	if p := ps.find(name); p != nil {
		return p.PID
	}
	return 0
}

func (ps *Processes) find(name string) *proc {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, p := range ps.procs {
		if p.Name == name && p.alive() {
			return p
		}
	}
	return nil
}
