package testsupport

import (
	"fmt"
	"strings"
	"unicode"
)

// HeadingAnchor is the anchor GitHub gives a heading's text: lower case,
// spaces to '-', punctuation dropped.
func HeadingAnchor(text string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(text)) {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

// HeadingAnchors are the anchors of a Markdown document's ATX headings
// ("## Text"), outside code fences, with GitHub's -1, -2… for repeats.
func HeadingAnchors(doc string) map[string]bool {
	out := map[string]bool{}
	seen := map[string]int{}
	inCode := false
	for _, line := range strings.Split(doc, "\n") {
		if Fence(line) {
			inCode = !inCode
			continue
		}
		text, ok := Heading(line)
		if inCode || !ok {
			continue
		}
		a := HeadingAnchor(text)
		if n := seen[a]; n > 0 {
			out[fmt.Sprintf("%s-%d", a, n)] = true
		} else {
			out[a] = true
		}
		seen[a]++
	}
	return out
}

// Fence reports whether line opens or closes a code fence.
func Fence(line string) bool {
	s := strings.TrimLeft(line, " ")
	return strings.HasPrefix(s, "```") || strings.HasPrefix(s, "~~~")
}

// Heading is the text of an ATX heading line ("## Text").
func Heading(line string) (string, bool) {
	level := len(line) - len(strings.TrimLeft(line, "#"))
	if level < 1 || level > 6 || (len(line) > level && line[level] != ' ') {
		return "", false
	}
	return strings.TrimSpace(line[level:]), true
}
