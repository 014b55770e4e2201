package analysis

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"

	"github.com/vigil-dev/vigil/outcome"
)

// Outcome of one measurement, and the verdict of a metric or a whole
// analysis once it ends (named as the API names them). A verdict is
// Running until then; a measurement never is. An analysis' Unknown is its
// Unknown budget spent.
type Outcome string

const (
	Successful   Outcome = "Successful"
	Failed       Outcome = "Failed"
	Inconclusive Outcome = "Inconclusive"
	Unknown      Outcome = "Unknown"
	Running      Outcome = "Running"
)

// Conditions decide a measurement's outcome from Prometheus' answer. CEL
// sees the answer as `result`: a double when the answer is a scalar or a
// single sample, a list of doubles otherwise; `results` is always the list.
//
// When both conditions are set, failure wins, then success, and neither
// holding is Inconclusive. With only successCondition, not holding is
// Failed; with only failureCondition, not holding is Successful.
type Conditions struct {
	Success, Failure string
	// NoData is the outcome of an empty answer: Unknown or Inconclusive.
	NoData Outcome
}

// costLimit bounds the work of one condition; the conditions of an SLO are
// comparisons, a few list macros at most.
const costLimit = 100_000

var (
	envOnce sync.Once
	env     *cel.Env
	envErr  error

	programs sync.Map // expression -> cel.Program
)

func celEnv() (*cel.Env, error) {
	envOnce.Do(func() {
		env, envErr = cel.NewEnv(
			cel.Variable("result", cel.DynType),
			cel.Variable("results", cel.ListType(cel.DoubleType)),
		)
	})
	return env, envErr
}

// maxPrograms bounds the compiled-condition cache.
const maxPrograms = 4096

// compile compiles a condition once; an expression that is not a boolean
// is an error that names it.
func compile(expr string) (cel.Program, error) {
	if p, ok := programs.Load(expr); ok {
		return p.(cel.Program), nil
	}
	e, err := celEnv()
	if err != nil {
		return nil, err
	}
	ast, iss := e.Compile(expr)
	if iss.Err() != nil {
		return nil, fmt.Errorf("condition %q: %w", outcome.Shorten(expr, 80), iss.Err())
	}
	if t := ast.OutputType(); t != cel.BoolType && t != cel.DynType {
		return nil, fmt.Errorf("condition %q is a %s, not a bool", outcome.Shorten(expr, 80), t)
	}
	p, err := e.Program(ast, cel.CostLimit(costLimit))
	if err != nil {
		return nil, fmt.Errorf("condition %q: %w", outcome.Shorten(expr, 80), err)
	}
	if n := programCount.Add(1); n <= maxPrograms {
		programs.Store(expr, p)
	}
	return p, nil
}

var programCount atomic.Int64

// Validate compiles both conditions, so a bad template is reported before
// any query runs.
func (c Conditions) Validate() error {
	if c.Success == "" && c.Failure == "" {
		return errors.New("a metric needs a successCondition, a failureCondition, or both")
	}
	for _, expr := range []string{c.Success, c.Failure} {
		if expr == "" {
			continue
		}
		if _, err := compile(expr); err != nil {
			return err
		}
	}
	return nil
}

// Evaluate decides the outcome of an answer. An empty answer is c.NoData
// (never Successful), NaN is Unknown, and a condition that cannot be
// evaluated is Unknown; reason explains every outcome but Successful.
func (c Conditions) Evaluate(v Value) (Outcome, string, string) {
	if len(v.Samples) == 0 {
		if c.NoData == Inconclusive {
			return Inconclusive, CauseNoData, "the query returned no data"
		}
		return Unknown, CauseNoData, "the query returned no data"
	}
	if anyNaN(v) {
		return Unknown, CauseNaN, "the query returned NaN"
	}
	vars := map[string]any{"results": v.Samples}
	if v.Scalar || len(v.Samples) == 1 {
		vars["result"] = v.Samples[0]
	} else {
		vars["result"] = v.Samples
	}
	holds := func(expr string) (bool, error) {
		p, err := compile(expr)
		if err != nil {
			return false, err
		}
		out, _, err := p.Eval(vars)
		if err != nil {
			return false, fmt.Errorf("evaluating %q: %w", outcome.Shorten(expr, 80), err)
		}
		b, ok := out.(types.Bool)
		if !ok {
			return false, fmt.Errorf("condition %q gave %v, not a bool", outcome.Shorten(expr, 80), out)
		}
		return bool(b), nil
	}
	var failed, succeeded bool
	var err error
	if c.Failure != "" {
		if failed, err = holds(c.Failure); err != nil {
			return Unknown, CauseEvaluationError, err.Error()
		}
		if failed {
			return Failed, "", fmt.Sprintf("failureCondition %s holds", outcome.Shorten(c.Failure, 200))
		}
	}
	if c.Success != "" {
		if succeeded, err = holds(c.Success); err != nil {
			return Unknown, CauseEvaluationError, err.Error()
		}
		if succeeded {
			return Successful, "", ""
		}
		if c.Failure == "" {
			return Failed, "", fmt.Sprintf("successCondition %s does not hold", outcome.Shorten(c.Success, 200))
		}
		return Inconclusive, "", "neither successCondition nor failureCondition holds"
	}
	return Successful, "", ""
}
