// Package analysis measures SLOs for canary analysis: it renders PromQL
// query templates with escaped arguments, runs them against Prometheus,
// evaluates CEL conditions over the answer, and accounts for outcomes.
//
// Every measurement ends in one of four outcomes. Successful and Failed are
// evidence; Inconclusive means neither condition held; Unknown means there
// is no evidence at all (a timeout, a transport or HTTP error, NaN, an empty
// answer, a condition that could not be evaluated). Unknown is never a pass
// and never silently a failure: it has its own budget and is retried on a
// backoff.
//
// The package does not import controller-runtime; the AnalysisRun
// controller wires it to the cluster.
package analysis

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/vigil-dev/vigil/outcome"
)

// MaxArgumentLength bounds one argument value.
const MaxArgumentLength = 1024

// placeholder matches {{args.NAME}}, with optional spaces inside the braces.
var placeholder = regexp.MustCompile(`^\{\{\s*args\.([a-zA-Z][a-zA-Z0-9_-]{0,62})\s*\}\}`)

// bareValue is what an argument may be when it stands outside a string
// literal: a metric or label name, a number, or a duration. None of these
// can open or close a PromQL construct.
var bareValue = regexp.MustCompile(`^(?:[a-zA-Z_:][a-zA-Z0-9_:]*|[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|(?:[0-9]+(?:ms|s|m|h|d|w|y))+)$`)

// keywords are PromQL's binary operators and modifiers: a bare argument
// must not be one, so it can only ever be a name or a number.
var keywords = map[string]bool{
	"and": true, "or": true, "unless": true, "atan2": true, "by": true, "without": true,
	"on": true, "ignoring": true, "group_left": true, "group_right": true, "offset": true,
	"bool": true, "start": true, "end": true, "step": true, "range": true, "smoothed": true,
	"anchored": true, "limit": true, "limit_ratio": true,
}

// Render substitutes args into a PromQL query template so that no argument
// can change the query's structure:
//   - inside a "..." or '...' string literal, the value is escaped as the
//     literal's content (quotes, backslashes and control characters);
//   - inside a `...` raw string, a value with a backtick is refused;
//   - anywhere else, the value must be a name (not a keyword), a number or
//     a duration: one token, which cannot open or close anything.
//
// A placeholder naming an argument that was not given, or a "{{" that is
// not a placeholder, is an error.
func Render(template string, args map[string]string) (string, error) {
	var b strings.Builder
	b.Grow(len(template))
	var quote byte // the open string literal's quote, or 0
	comment := false
	for i := 0; i < len(template); {
		c := template[i]
		if strings.HasPrefix(template[i:], "{{") {
			m := placeholder.FindStringSubmatch(template[i:])
			if m == nil {
				return "", fmt.Errorf("query has %q at offset %d, which is not an {{args.NAME}} placeholder", outcome.Shorten(template[i:], 20), i)
			}
			value, ok := args[m[1]]
			if !ok {
				return "", fmt.Errorf("query uses argument %q, which has no value", m[1])
			}
			escaped, err := escape(m[1], value, quote, comment)
			if err != nil {
				return "", err
			}
			b.WriteString(escaped)
			i += len(m[0])
			continue
		}
		b.WriteByte(c)
		i++
		switch {
		case comment:
			comment = c != '\n'
		case quote == 0 && c == '#':
			comment = true
		case quote == 0 && (c == '"' || c == '\'' || c == '`'):
			quote = c
		case quote != 0 && quote != '`' && c == '\\' && i < len(template):
			b.WriteByte(template[i]) // an escaped character never ends the literal
			i++
		case quote != 0 && c == quote:
			quote = 0
		}
	}
	if quote != 0 {
		return "", fmt.Errorf("query has an unterminated %c string literal", quote)
	}
	return b.String(), nil
}

// escape makes value safe where it stands.
func escape(name, value string, quote byte, comment bool) (string, error) {
	if len(value) > MaxArgumentLength {
		return "", fmt.Errorf("argument %q is %d bytes long; the limit is %d", name, len(value), MaxArgumentLength)
	}
	switch {
	case comment:
		if strings.ContainsAny(value, "\r\n") {
			return "", fmt.Errorf("argument %q is used in a comment and contains a line break", name)
		}
		return value, nil
	case quote == '`':
		if strings.ContainsRune(value, '`') {
			return "", fmt.Errorf("argument %q is used in a `raw string` and contains a backtick", name)
		}
		return value, nil
	case quote != 0:
		return quoteContent(value), nil
	case bareValue.MatchString(value) && !keywords[strings.ToLower(value)]:
		return value, nil
	default:
		return "", fmt.Errorf("argument %q is used outside a string literal, where only a name, a number or a duration is allowed; got %q", name, outcome.Shorten(value, 64))
	}
}

// quoteContent escapes s as the content of a PromQL "..." or '...' string
// literal, which follows Go's escaping rules.
func quoteContent(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\\' || r == '"' || r == '\'':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Argument is a declared argument of a template: its name and optional
// default.
type Argument struct {
	Name    string
	Default *string
}

// ResolveArgs gives every declared argument its value: the given one, or
// else the default. An argument without either is an error, and so is a
// given argument no template declares (a typo would otherwise go unseen).
func ResolveArgs(declared []Argument, given map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(declared))
	known := make(map[string]bool, len(declared))
	var missing []string
	for _, d := range declared {
		known[d.Name] = true
		switch v, ok := given[d.Name]; {
		case ok:
			out[d.Name] = v
		case d.Default != nil:
			out[d.Name] = *d.Default
		default:
			missing = append(missing, d.Name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("arguments without a value: %s", strings.Join(missing, ", "))
	}
	for name := range given {
		if !known[name] {
			return nil, fmt.Errorf("argument %q is given but no template declares it", name)
		}
	}
	return out, nil
}
