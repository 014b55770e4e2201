package analysis

import (
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

func TestRenderEscapesArgumentsWhereTheyStand(t *testing.T) {
	cases := []struct {
		name, template string
		args           map[string]string
		want, err      string
	}{
		{"label value", `up{job="{{args.job}}"}`, map[string]string{"job": "api"}, `up{job="api"}`, ""},
		{"spaces in braces", `up{job="{{ args.job }}"}`, map[string]string{"job": "api"}, `up{job="api"}`, ""},
		{"injection in a double-quoted literal", `up{job="{{args.job}}"}`, map[string]string{"job": `"} or vector(1) #`},
			`up{job="\"} or vector(1) #"}`, ""},
		{"injection in a single-quoted literal", `up{job='{{args.job}}'}`, map[string]string{"job": `'} or vector(1) #`},
			`up{job='\'} or vector(1) #'}`, ""},
		{"backslash cannot escape the closing quote", `up{job="{{args.job}}"}`, map[string]string{"job": `\`}, `up{job="\\"}`, ""},
		{"newline and control characters", `up{job="{{args.job}}"}`, map[string]string{"job": "a\nb\x01"}, `up{job="a\nb\x01"}`, ""},
		{"raw string", "up{job=~`{{args.re}}`}", map[string]string{"re": `a.*\d`}, "up{job=~`a.*\\d`}", ""},
		{"backtick in a raw string", "up{job=~`{{args.re}}`}", map[string]string{"re": "a`) or vector(1"}, "", "contains a backtick"},
		{"bare metric name", `rate({{args.metric}}[5m])`, map[string]string{"metric": "http_requests_total"}, `rate(http_requests_total[5m])`, ""},
		{"bare duration", `rate(x[{{args.window}}])`, map[string]string{"window": "1m30s"}, `rate(x[1m30s])`, ""},
		{"bare number", `x > {{args.n}}`, map[string]string{"n": "0.25"}, `x > 0.25`, ""},
		{"bare injection", `rate({{args.metric}}[5m])`, map[string]string{"metric": `x[5m]) or vector(1) or (x`}, "", "outside a string literal"},
		{"bare keyword", `a {{args.op}} b`, map[string]string{"op": "or"}, "", "outside a string literal"},
		{"escaped quote in the template keeps the literal open", `x{a="q\"{{args.v}}"}`, map[string]string{"v": `"`}, `x{a="q\"\""}`, ""},
		{"placeholder in a comment", "x # {{args.v}}\n", map[string]string{"v": "note"}, "x # note\n", ""},
		{"line break in a comment", "x # {{args.v}}\n", map[string]string{"v": "a\nvector(1)"}, "", "line break"},
		{"hash inside a literal is not a comment", `x{a="#{{args.v}}"}`, map[string]string{"v": `"`}, `x{a="#\""}`, ""},
		{"missing argument", `up{job="{{args.job}}"}`, nil, "", `argument "job", which has no value`},
		{"not a placeholder", `up{job="{{job}}"}`, map[string]string{"job": "a"}, "", "not an {{args.NAME}} placeholder"},
		{"unterminated literal", `up{job="{{args.job}}}`, map[string]string{"job": "a"}, "", "unterminated"},
		{"too long", `x{a="{{args.v}}"}`, map[string]string{"v": strings.Repeat("a", MaxArgumentLength+1)}, "", "the limit is 1024"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			got, err := Render(tc.template, tc.args)
			if tc.err != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tc.err)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(Equal(tc.want))
		})
	}
}

// skeleton is the query's structure: string literals emptied, comments
// dropped, and each name, number or duration token reduced to "w". Two
// queries with the same skeleton differ only in literal contents and in
// single tokens.
func skeleton(q string) string {
	var b strings.Builder
	var quote byte
	word := false
	for i := 0; i < len(q); i++ {
		c := q[i]
		isWord := c == '_' || c == ':' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		switch {
		case quote == 0 && c == '#':
			for i < len(q) && q[i] != '\n' {
				i++
			}
			word = false
		case quote == 0 && isWord:
			if !word {
				b.WriteByte('w')
			}
			word = true
			continue
		case quote == 0:
			b.WriteByte(c)
			if c == '"' || c == '\'' || c == '`' {
				quote = c
			}
		case c == '\\' && quote != '`':
			i++
		case c == quote:
			b.WriteByte(c)
			quote = 0
		}
		word = false
	}
	return b.String()
}

// FuzzRenderKeepsStructure checks that no argument value changes a query's
// structure: whatever the value, the rendered query either is refused or
// has the skeleton of the same template rendered with a plain value.
func FuzzRenderKeepsStructure(f *testing.F) {
	templates := []string{
		`sum(rate(http_requests_total{service="{{args.v}}",code=~"5.."}[2m])) / sum(rate(http_requests_total{service="{{args.v}}"}[2m]))`,
		`up{job='{{args.v}}'} # {{args.v}}`,
		"up{job=~`{{args.v}}`}",
		`rate({{args.v}}[5m])`,
	}
	for _, seed := range []string{`"} or vector(1) #`, `'`, "`", `\`, "a\nb", "x", "1m", "or", `\"`} {
		for i := range templates {
			f.Add(i, seed)
		}
	}
	f.Fuzz(func(t *testing.T, i int, v string) {
		tpl := templates[((i%len(templates))+len(templates))%len(templates)]
		plain, err := Render(tpl, map[string]string{"v": "x"})
		if err != nil {
			t.Fatalf("rendering with a plain value: %v", err)
		}
		got, err := Render(tpl, map[string]string{"v": v})
		if err != nil {
			return
		}
		if skeleton(got) != skeleton(plain) {
			t.Fatalf("argument %q changed the query's structure:\n%s\nwant the skeleton of\n%s", v, got, plain)
		}
	})
}

func TestResolveArgs(t *testing.T) {
	g := NewWithT(t)
	def := "5m"
	declared := []Argument{{Name: "service"}, {Name: "window", Default: &def}}
	got, err := ResolveArgs(declared, map[string]string{"service": "api"})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(Equal(map[string]string{"service": "api", "window": "5m"}))

	_, err = ResolveArgs(declared, nil)
	g.Expect(err).To(MatchError(ContainSubstring("arguments without a value: service")))
	_, err = ResolveArgs(declared, map[string]string{"service": "a", "servcie": "b"})
	g.Expect(err).To(MatchError(ContainSubstring(`"servcie" is given but no template declares it`)))
}
