package docs

import (
	"bytes"
	"encoding"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tokenvendor/tokenvendor/internal/config"
	"github.com/tokenvendor/tokenvendor/internal/testsupport"
)

// root is the repository, seen from this package's directory.
const root = ".."

// maxReadme is the README's budget: a newcomer reads it in minutes, and the
// rest lives in docs/.
const maxReadme = 12 << 10

func TestReadmeStaysShort(t *testing.T) {
	info, err := os.Stat(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if info.Size() > maxReadme {
		t.Errorf("README.md is %d bytes, over its budget of %d: move the detail into docs/", info.Size(), maxReadme)
	}
}

// TestConfigurationDocumentsEveryKey holds the key table of
// docs/configuration.md to the keys the loader knows: every key has a row,
// and every row is a key.
func TestConfigurationDocumentsEveryKey(t *testing.T) {
	known := map[string]bool{}
	configKeys(reflect.TypeFor[config.Config](), "", known)
	if !known["listen"] || !known["profiles[].policy"] || !known["auth.aws_iam.principals[].role_arn"] {
		t.Fatalf("the walk over config.Config missed keys it must find; it found %v", sorted(known))
	}
	doc := readDoc(t, "configuration.md")
	rows := tableKeys(section(doc, "## Every key"))
	if len(rows) == 0 {
		t.Fatal("docs/configuration.md has no key table under ## Every key")
	}
	sameSets(t, known, rows,
		"config key %s has no row in docs/configuration.md (## Every key): add its default, range and what SIGHUP does",
		"docs/configuration.md documents %s, which the loader does not know")
}

var (
	unmarshaler     = reflect.TypeFor[yaml.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// configKeys adds the YAML keys of struct type t under prefix to out, as
// the docs write them: sections joined by dots, list entries as "[]"
// (profiles[].name). A field tagged yaml:"-" is no key; a type that decodes
// itself is one key, however it is built.
func configKeys(t reflect.Type, prefix string, out map[string]bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() && !f.Anonymous { // as yaml.v3: an embedded struct may be inlined
			continue
		}
		if !f.IsExported() && !strings.Contains(f.Tag.Get("yaml"), "inline") {
			continue
		}
		tag := f.Tag.Get("yaml")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if slices.Contains(strings.Split(opts, ","), "inline") {
			configKeys(deref(f.Type), prefix, out)
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name) // yaml.v3's default
		}
		key := prefix + name
		ft := deref(f.Type)
		if (ft.Kind() == reflect.Slice || ft.Kind() == reflect.Array) && isSection(deref(ft.Elem())) {
			configKeys(deref(ft.Elem()), key+"[].", out)
			continue
		}
		if isSection(ft) {
			configKeys(ft, key+".", out)
			continue
		}
		out[key] = true
	}
}

// isSection reports whether t is a struct the decoder walks into, rather
// than a value that decodes itself.
func isSection(t reflect.Type) bool {
	if t.Kind() != reflect.Struct || t == reflect.TypeFor[time.Time]() {
		return false
	}
	p := reflect.PointerTo(t)
	return !p.Implements(unmarshaler) && !p.Implements(textUnmarshaler)
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// level decodes itself, so it is one key however it is built.
type level struct{ n int }

func (l *level) UnmarshalYAML(*yaml.Node) error { return nil }

func TestConfigKeysWalksAsTheDecoderDoes(t *testing.T) {
	type inner struct {
		A string `yaml:"a"`
		B []int  `yaml:"b"`
	}
	type base struct {
		Shared string `yaml:"shared"`
	}
	type example struct {
		base     `yaml:",inline"`
		Plain    string            `yaml:"plain"`
		Section  inner             `yaml:"section"`
		Optional *inner            `yaml:"optional"`
		List     []inner           `yaml:"list"`
		Pointers []*inner          `yaml:"pointers"`
		Map      map[string]string `yaml:"map"`
		Level    level             `yaml:"level"`
		Untagged string
		Derived  string `yaml:"-"`
		hidden   string
	}
	got := map[string]bool{}
	configKeys(reflect.TypeFor[example](), "", got)
	want := []string{"level", "list[].a", "list[].b", "map", "optional.a", "optional.b", "plain", "pointers[].a",
		"pointers[].b", "section.a", "section.b", "shared", "untagged"}
	if !slices.Equal(sorted(got), want) {
		t.Errorf("configKeys = %v, want %v", sorted(got), want)
	}
}

// tableKeys are the keys in the first cell of a Markdown table's rows:
// | `auth.issuer` | ...
var tableRow = regexp.MustCompile("(?m)^\\| `([^`]+)` \\|")

func tableKeys(doc string) map[string]bool {
	out := map[string]bool{}
	for _, m := range tableRow.FindAllStringSubmatch(doc, -1) {
		out[m[1]] = true
	}
	return out
}

// TestOperationsDocumentsEveryMetric holds the metric table of
// docs/operations.md to the metrics the binary exports: every metric has a
// row, and every row is a metric.
//
// The names come from the source of the module's packages that
// cmd/tokenvendor links (go list -deps): every string literal that is a
// whole metric name. Building every collector through its constructor
// would tie this test to each constructor's config and peers (Redis, the
// tenant store); scanning the source needs neither, and it cannot miss a
// name because a metric whose name is put together (a Namespace or
// Subsystem, a concatenation, a format) fails the test until it is one
// literal.
func TestOperationsDocumentsEveryMetric(t *testing.T) {
	exported := exportedMetrics(t)
	if !exported["tokenvendor_requests_total"] || !exported["tokenvendor_sts_requests_total"] {
		t.Fatalf("the scan of the binary's packages missed metrics it must find; it found %v", sorted(exported))
	}
	rows := tableKeys(section(readDoc(t, "operations.md"), "## Metrics"))
	if len(rows) == 0 {
		t.Fatal("docs/operations.md has no metric table under ## Metrics")
	}
	sameSets(t, exported, rows,
		"metric %s has no row in docs/operations.md (## Metrics)",
		"docs/operations.md documents metric %s, which the binary does not export")
}

var metricName = regexp.MustCompile(`^tokenvendor_[a-z0-9_]+$`)

// promOpts are the client library's option types whose Name is a metric's.
var promOpts = map[string]bool{"Opts": true, "CounterOpts": true, "GaugeOpts": true, "HistogramOpts": true, "SummaryOpts": true, "UntypedOpts": true}

// exportedMetrics scans the non-test Go files of the module's packages
// linked into cmd/tokenvendor for metric names.
func exportedMetrics(t *testing.T) map[string]bool {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list the binary's packages: %v", err)
	}
	cmd := exec.Command(goTool, "list", "-deps", "-f",
		`{{if .Module}}{{if .Module.Main}}{{range .GoFiles}}{{$.Dir}}{{"/"}}{{.}}{{"\n"}}{{end}}{{end}}{{end}}`, "./cmd/tokenvendor")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps ./cmd/tokenvendor: %v\n%s", err, stderr.String())
	}
	names := map[string]bool{}
	fset := token.NewFileSet()
	for _, path := range strings.Fields(string(out)) {
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, problem := range scanMetrics(f, fset, names) {
			t.Error(problem)
		}
	}
	return names
}

// scanMetrics adds the whole metric names f spells to names, and returns
// what it finds built any other way.
func scanMetrics(f *ast.File, fset *token.FileSet, names map[string]bool) []string {
	prom := ""
	for _, imp := range f.Imports {
		if p, _ := strconv.Unquote(imp.Path.Value); p == "github.com/prometheus/client_golang/prometheus" {
			prom = "prometheus"
			if imp.Name != nil {
				prom = imp.Name.Name
			}
		}
	}
	var problems []string
	bad := func(n ast.Node, format string, args ...any) {
		problems = append(problems, fmt.Sprintf("%s: %s", fset.Position(n.Pos()), fmt.Sprintf(format, args...)))
	}
	isProm := func(e ast.Expr, names map[string]bool) (string, bool) {
		sel, ok := e.(*ast.SelectorExpr)
		if !ok {
			return "", false
		}
		x, ok := sel.X.(*ast.Ident)
		return sel.Sel.Name, ok && prom != "" && x.Name == prom && names[sel.Sel.Name]
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.BasicLit:
			if n.Kind != token.STRING {
				break
			}
			s, err := strconv.Unquote(n.Value)
			switch {
			case err != nil || !strings.HasPrefix(s, "tokenvendor_"):
			case metricName.MatchString(s):
				names[s] = true
			case strings.Contains(s, "%"):
				bad(n, "a metric name built with a format (%q): write it as one literal so the docs test sees it", s)
			}
		case *ast.BinaryExpr:
			for _, side := range []ast.Expr{n.X, n.Y} {
				if lit, ok := side.(*ast.BasicLit); ok && n.Op == token.ADD && strings.Contains(lit.Value, "tokenvendor_") {
					bad(n, "a metric name built by concatenation: write it as one literal so the docs test sees it")
				}
			}
		case *ast.CompositeLit:
			if _, ok := isProm(n.Type, promOpts); !ok {
				break
			}
			for _, el := range n.Elts {
				kv, ok := el.(*ast.KeyValueExpr)
				if !ok {
					continue
				}
				switch key, _ := kv.Key.(*ast.Ident); {
				case key == nil:
				case key.Name == "Namespace" || key.Name == "Subsystem":
					bad(kv, "a metric name built from %s: write the whole name as one literal in Name", key.Name)
				case key.Name == "Name":
					switch kv.Value.(type) {
					case *ast.BasicLit, *ast.Ident: // an identifier is a parameter its callers fill with literals
					default:
						bad(kv, "a metric Name computed at run time: write it as one literal")
					}
				}
			}
		case *ast.CallExpr:
			if _, ok := isProm(n.Fun, map[string]bool{"BuildFQName": true}); ok {
				bad(n, "prometheus.BuildFQName puts a metric name together: write it as one literal")
			}
		}
		return true
	})
	return problems
}

func TestScanMetricsRefusesNamesPutTogether(t *testing.T) {
	const src = `package p

import prom "github.com/prometheus/client_golang/prometheus"

var (
	whole  = prom.CounterOpts{Name: "tokenvendor_whole_total"}
	parts  = prom.CounterOpts{Namespace: "tokenvendor", Name: "parts_total"}
	joined = prom.GaugeOpts{Name: "tokenvendor_" + "joined"}
	called = prom.GaugeOpts{Name: name()}
	formed = fmt.Sprintf("tokenvendor_%s_total", "formed")
	built  = prom.BuildFQName("tokenvendor", "built", "total")
)
`
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "p.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	problems := scanMetrics(f, fset, names)
	if !slices.Equal(sorted(names), []string{"tokenvendor_whole_total"}) {
		t.Errorf("names = %v, want only tokenvendor_whole_total", sorted(names))
	}
	for _, want := range []string{"Namespace", "concatenation", "computed at run time", "format", "BuildFQName"} {
		if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, want) }) {
			t.Errorf("no problem reported for a name built by %s; problems: %q", want, problems)
		}
	}
}

// TestLinksResolve follows every relative link of README.md and docs/: the
// file must exist, and an anchor must be a heading of its page. The README
// links every page of docs/.
func TestLinksResolve(t *testing.T) {
	pages, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	files := append([]string{filepath.Join(root, "README.md")}, pages...)
	anchorsOf := map[string]map[string]bool{}
	anchors := func(path string) map[string]bool {
		if a, ok := anchorsOf[path]; ok {
			return a
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		anchorsOf[path] = testsupport.HeadingAnchors(string(b))
		return anchorsOf[path]
	}
	fromReadme := map[string]bool{}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range links(string(b)) {
			if external.MatchString(l.target) {
				continue
			}
			path, anchor, _ := strings.Cut(l.target, "#")
			target := file
			if path != "" {
				target = filepath.Join(filepath.Dir(file), path)
				if _, err := os.Stat(target); err != nil {
					t.Errorf("%s:%d: link to %s: no such file", file, l.line, l.target)
					continue
				}
			}
			if file == files[0] {
				fromReadme[abs(t, target)] = true
			}
			if anchor != "" && strings.HasSuffix(target, ".md") && !anchors(target)[anchor] {
				t.Errorf("%s:%d: link to %s: %s has no heading with anchor #%s", file, l.line, l.target, target, anchor)
			}
		}
	}
	for _, page := range pages {
		if !fromReadme[abs(t, page)] {
			t.Errorf("README.md does not link docs/%s: add it to the map of docs/", page)
		}
	}
}

func abs(t *testing.T, path string) string {
	a, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

var external = regexp.MustCompile(`^[a-z][a-z0-9+.-]*:`)

type link struct {
	target string
	line   int
}

var (
	inlineLink = regexp.MustCompile(`\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	codeSpan   = regexp.MustCompile("`[^`\n]*`")
)

// links are the inline links of a Markdown document, outside code.
func links(doc string) []link {
	var out []link
	inCode := false
	for i, line := range strings.Split(doc, "\n") {
		if testsupport.Fence(line) {
			inCode = !inCode
			continue
		}
		if inCode {
			continue
		}
		for _, m := range inlineLink.FindAllStringSubmatch(codeSpan.ReplaceAllString(line, "``"), -1) {
			out = append(out, link{m[1], i + 1})
		}
	}
	return out
}

// TestPackageMapNamesEveryPackage holds the package map of
// docs/development.md to the package directories under internal/ and
// client/: every one is named, and every one named exists.
func TestPackageMapNamesEveryPackage(t *testing.T) {
	have := map[string]bool{}
	for _, dir := range []string{"internal", "client"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && d.Name() == "testdata" {
				return filepath.SkipDir
			}
			if !d.IsDir() && strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
				rel, err := filepath.Rel(root, filepath.Dir(path))
				if err != nil {
					return err
				}
				have[filepath.ToSlash(rel)] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if !have["client"] || !have["internal/vend"] {
		t.Fatalf("the walk missed packages it must find; it found %v", sorted(have))
	}
	named := packageMap(section(readDoc(t, "development.md"), "## Package map"))
	if len(named) == 0 {
		t.Fatal("docs/development.md has no package map (a code block under ## Package map)")
	}
	sameSets(t, have, named,
		"package %s is missing from the package map of docs/development.md",
		"the package map of docs/development.md names %s, which is no package")
}

// packageMap is the first word of each line of the section's code block
// that names a directory under internal/ or client/.
func packageMap(sec string) map[string]bool {
	out := map[string]bool{}
	inCode := false
	for _, line := range strings.Split(sec, "\n") {
		if testsupport.Fence(line) {
			inCode = !inCode
			continue
		}
		fields := strings.Fields(line)
		if !inCode || len(fields) == 0 {
			continue
		}
		p := strings.TrimRight(fields[0], "/,")
		if p == "client" || strings.HasPrefix(p, "client/") || strings.HasPrefix(p, "internal/") {
			out[p] = true
		}
	}
	return out
}

func readDoc(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// section is the part of doc from the heading line head to the next
// heading of the same or a higher level, or "" when doc lacks it.
func section(doc, head string) string {
	level := strings.Index(head, " ")
	lines := strings.Split(doc, "\n")
	start := slices.Index(lines, head)
	if start < 0 {
		return ""
	}
	inCode := false
	for i := start + 1; i < len(lines); i++ {
		if testsupport.Fence(lines[i]) {
			inCode = !inCode
			continue
		}
		if _, ok := testsupport.Heading(lines[i]); ok && !inCode {
			if n := len(lines[i]) - len(strings.TrimLeft(lines[i], "#")); n <= level {
				return strings.Join(lines[start:i], "\n")
			}
		}
	}
	return strings.Join(lines[start:], "\n")
}

func sorted(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// sameSets fails for each name of real missing from documented (missing,
// a format of the name) and each documented name not in real (unknown).
func sameSets(t *testing.T, real, documented map[string]bool, missing, unknown string) {
	t.Helper()
	for _, name := range sorted(real) {
		if !documented[name] {
			t.Errorf(missing, name)
		}
	}
	for _, name := range sorted(documented) {
		if !real[name] {
			t.Errorf(unknown, name)
		}
	}
}
