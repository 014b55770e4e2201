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

// startProc starts bin with args in its own process group, logging to
// dir/logs/NAME.log.
func startProc(dir, name, bin string, args []string) (*proc, error) {
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return nil, fmt.Errorf("creating log dir: %w", err)
	}
	logf, err := os.Create(filepath.Join(dir, "logs", name+".log"))
	if err != nil {
		return nil, fmt.Errorf("creating log of %s: %w", name, err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// A session of its own: the process outlives `make dev-cluster` and is
	// not hit by a Ctrl-C meant for the shell.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
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

// stop sends SIGTERM, waits up to grace, then SIGKILLs and waits again.
func (p *proc) stop(grace time.Duration) error {
	if !p.alive() {
		return nil
	}
	_ = syscall.Kill(p.PID, syscall.SIGTERM)
	if waitGone(p, grace) {
		return nil
	}
	_ = syscall.Kill(p.PID, syscall.SIGKILL)
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
