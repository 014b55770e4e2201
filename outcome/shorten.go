package outcome

import "unicode/utf8"

// Shorten bounds a message for status, conditions and Events to at most n
// bytes. A message that is longer is cut at a character boundary (never
// inside a UTF-8 sequence) and ends with "…", so a reader sees it was cut.
func Shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	if n < len(mark) {
		return ""
	}
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}
