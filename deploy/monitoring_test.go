package deploy_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwt"
	"gopkg.in/yaml.v3"

	"github.com/tokenvendor/tokenvendor/internal/testsupport"
)

// The monitoring kit, relative to this package. rules.yaml is the source of
// the alerts; prometheusrule.yaml is generated from it.
const (
	monitoringDir      = "monitoring"
	rulesFile          = "monitoring/rules.yaml"
	ruleTestsFile      = "monitoring/rules_test.yaml"
	prometheusRuleFile = "monitoring/prometheusrule.yaml"
	dashboardFile      = "monitoring/dashboard.json"
	runbookFile        = "../docs/runbook.md"
	runbookURL         = "https://github.com/tokenvendor/tokenvendor/blob/main/docs/runbook.md"
)

// TestMain regenerates prometheusrule.yaml and the Helm chart's copy of the
// rules before any test runs under -update, so that the overlays' golden
// files and the chart, rendered in the same run, carry the new rules.
func TestMain(m *testing.M) {
	flag.Parse()
	if *update {
		src, err := os.ReadFile(rulesFile)
		if err == nil {
			err = os.WriteFile(prometheusRuleFile, prometheusRuleOf(src), 0o644)
		}
		if err == nil {
			// The Helm chart's copy (a chart reads no file outside its folder).
			err = os.WriteFile(chartRulesFile, src, 0o644)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "update", prometheusRuleFile, chartRulesFile+":", err)
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}

// ---------------------------------------------------------------- rules

type ruleFile struct {
	Groups []ruleGroup `yaml:"groups"`
}

type ruleGroup struct {
	Name  string     `yaml:"name"`
	Rules []promRule `yaml:"rules"`
}

type promRule struct {
	Alert       string            `yaml:"alert,omitempty"`
	Record      string            `yaml:"record,omitempty"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty"`
	Annotations map[string]string `yaml:"annotations,omitempty"`
}

func loadRules(t *testing.T, path string) []promRule {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []promRule
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	if len(out) == 0 {
		t.Fatalf("%s holds no rules", path)
	}
	return out
}

// alertExprs maps "alert NAME" to its expression.
func alertExprs(t *testing.T, path string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, r := range loadRules(t, path) {
		out["alert "+r.Alert] = r.Expr
	}
	return out
}

// prometheusRuleHeader is prometheusrule.yaml down to its spec.
const prometheusRuleHeader = `# Generated from rules.yaml by go test ./deploy/ -update: edit rules.yaml,
# not this file. tokenvendor's alerts for the Prometheus Operator; add the
# labels your Prometheus's ruleSelector wants (kube-prometheus-stack: the
# Helm release's, e.g. release: prometheus). docs/runbook.md has a section
# per alert.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: tokenvendor
  labels:
    app.kubernetes.io/name: tokenvendor
    app.kubernetes.io/component: credential-vendor
spec:
`

// prometheusRuleOf is the PrometheusRule whose spec is the rules file: its
// text indented under spec, comments and all, less its opening comment
// (which speaks of the file itself).
func prometheusRuleOf(rules []byte) []byte {
	var b bytes.Buffer
	b.WriteString(prometheusRuleHeader)
	opening := true
	for line := range strings.Lines(string(rules)) {
		if opening && strings.HasPrefix(line, "#") {
			continue
		}
		opening = false
		if strings.TrimSpace(line) != "" {
			b.WriteString("  ")
		}
		b.WriteString(line)
	}
	return b.Bytes()
}

// promtool runs promtool in dir. It comes from Debian's prometheus package,
// which make tools installs; without it the test fails, never skips.
func promtool(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool is needed to check the alerts and the dashboard (make tools installs Debian's prometheus package): %v", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestAlertRulesPassPromtool(t *testing.T) {
	if out, err := promtool(t, monitoringDir, "check", "rules", "rules.yaml"); err != nil {
		t.Fatalf("promtool check rules rules.yaml: %v\n%s", err, out)
	}
	if out, err := promtool(t, monitoringDir, "test", "rules", "rules_test.yaml"); err != nil {
		t.Fatalf("promtool test rules rules_test.yaml: %v\n%s", err, out)
	}
}

// checkGenerated fails unless the file at path holds want, made from src
// by go test ./deploy/ -update, and returns it.
func checkGenerated(t *testing.T, path string, want []byte, src string) []byte {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./deploy/ -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is not generated from %s; edit %s and run go test ./deploy/ -update", path, src, src)
	}
	return got
}

func TestPrometheusRuleIsGeneratedFromTheRulesFile(t *testing.T) {
	src, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	got := checkGenerated(t, prometheusRuleFile, prometheusRuleOf(src), rulesFile)

	// What the Operator reads is what Prometheus reads, as shipped and as
	// the standalone overlay renders it.
	var plain ruleFile
	if err := yaml.Unmarshal(src, &plain); err != nil {
		t.Fatal(err)
	}
	var pr struct {
		APIVersion string   `yaml:"apiVersion"`
		Kind       string   `yaml:"kind"`
		Metadata   meta     `yaml:"metadata"`
		Spec       ruleFile `yaml:"spec"`
	}
	if err := yaml.Unmarshal(got, &pr); err != nil {
		t.Fatal(err)
	}
	if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Kind != "PrometheusRule" || pr.Metadata.Name == "" {
		t.Errorf("%s is a %s %s named %q", prometheusRuleFile, pr.APIVersion, pr.Kind, pr.Metadata.Name)
	}
	if !reflect.DeepEqual(pr.Spec, plain) {
		t.Errorf("the PrometheusRule's spec differs from %s", rulesFile)
	}
	var rendered struct {
		Spec ruleFile `yaml:"spec"`
	}
	find(t, renderOverlay(t, "standalone"), "PrometheusRule", "tokenvendor").decode(t, &rendered)
	if !reflect.DeepEqual(rendered.Spec, plain) {
		t.Errorf("the standalone overlay's PrometheusRule differs from %s", rulesFile)
	}
}

// allowedGroupingLabels are the only labels an alert keeps: no caller, no
// tenant (profile is a name from the config).
var allowedGroupingLabels = map[string]bool{"namespace": true, "job": true, "instance": true, "profile": true, "le": true}

var (
	// Clauses that keep the labels they name (without and ignoring drop
	// theirs).
	groupingClause = regexp.MustCompile(`\b(?:by|on|group_left|group_right)\s*\(([^)]*)\)`)
	labelTemplate  = regexp.MustCompile(`\$labels\.([A-Za-z_][A-Za-z0-9_]*)`)
)

func TestEveryAlertHasASeverityASummaryAndARunbookSection(t *testing.T) {
	runbook, err := os.ReadFile(runbookFile)
	if err != nil {
		t.Fatal(err)
	}
	anchors := testsupport.HeadingAnchors(string(runbook))
	sections := markdownSections(string(runbook), "## ")
	seen := map[string]bool{}
	for _, r := range loadRules(t, rulesFile) {
		if r.Alert == "" || !strings.HasPrefix(r.Alert, "Tokenvendor") {
			t.Errorf("rule %q: want alerts named Tokenvendor…, and no recording rules", r.Alert+r.Record)
			continue
		}
		if seen[r.Alert] {
			t.Errorf("alert %s defined twice", r.Alert)
		}
		seen[r.Alert] = true
		if len(r.Labels) != 1 || (r.Labels["severity"] != "critical" && r.Labels["severity"] != "warning") {
			t.Errorf("alert %s labels %v: want severity critical or warning, and nothing else", r.Alert, r.Labels)
		}
		if r.For != "" {
			if d, err := time.ParseDuration(r.For); err != nil || d > 30*time.Minute {
				t.Errorf("alert %s for: %s: want a duration of at most 30m", r.Alert, r.For)
			}
		}
		keys := slices.Sorted(maps.Keys(r.Annotations))
		if !slices.Equal(keys, []string{"description", "runbook_url", "summary"}) || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
			t.Errorf("alert %s annotations %v: want a summary, a description and a runbook_url", r.Alert, keys)
		}
		for _, m := range groupingClause.FindAllStringSubmatch(r.Expr, -1) {
			for l := range strings.SplitSeq(m[1], ",") {
				if l = strings.TrimSpace(l); l != "" && !allowedGroupingLabels[l] {
					t.Errorf("alert %s keeps the label %s: alerts keep only %v", r.Alert, l, allowedGroupingLabels)
				}
			}
		}
		for _, text := range []string{r.Annotations["summary"], r.Annotations["description"]} {
			for _, m := range labelTemplate.FindAllStringSubmatch(text, -1) {
				if !allowedGroupingLabels[m[1]] {
					t.Errorf("alert %s annotation shows the label %s", r.Alert, m[1])
				}
			}
		}
		if read, err := labelsRead(r.Expr); err != nil {
			t.Errorf("alert %s: %v", r.Alert, err)
		} else if strings.Contains(read, "tenant") || strings.Contains(read, "caller") {
			t.Errorf("alert %s: its expression names a tenant or a caller", r.Alert)
		}

		anchor, ok := strings.CutPrefix(r.Annotations["runbook_url"], runbookURL+"#")
		switch {
		case !ok:
			t.Errorf("alert %s runbook_url %q: want %s#<section>", r.Alert, r.Annotations["runbook_url"], runbookURL)
		case !anchors[anchor]:
			t.Errorf("alert %s runbook_url: docs/runbook.md has no section #%s", r.Alert, anchor)
		case anchor != testsupport.HeadingAnchor(r.Alert):
			t.Errorf("alert %s links to #%s, not to its own section #%s", r.Alert, anchor, testsupport.HeadingAnchor(r.Alert))
		}
		section, ok := sections[r.Alert]
		if !ok {
			t.Errorf("docs/runbook.md has no section ## %s", r.Alert)
		}
		for _, part := range []string{"**What it means.**", "**What to check.**", "**What to do.**"} {
			if ok && !strings.Contains(section, part) {
				t.Errorf("docs/runbook.md ## %s lacks %s", r.Alert, part)
			}
		}
	}
	for heading := range sections {
		if strings.HasPrefix(heading, "Tokenvendor") && !seen[heading] {
			t.Errorf("docs/runbook.md has a section for %s, which is no alert", heading)
		}
	}
	for _, m := range localLink.FindAllStringSubmatch(string(runbook), -1) {
		if !anchors[m[1]] {
			t.Errorf("docs/runbook.md links to #%s, which is no section", m[1])
		}
	}
}

// labelsRead is expr in lower case with what may speak of tenants without
// naming one left out: the service's metric names (tokenvendor_tenant_…) and
// the values label matchers compare against (reason="other_tenant"), both
// bounded sets the live check holds to what the service exports. What
// remains are the labels the expression matches, keeps or makes, and its
// functions and strings; comments go too.
func labelsRead(expr string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(expr); {
		switch c := expr[i]; {
		case c == '"' || c == '\'' || c == '`':
			_, j, err := promqlString(expr, i)
			if err != nil {
				return "", err
			}
			b.WriteString(expr[i:j])
			i = j
		case c == '#':
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
		case c == '{':
			ms, j, err := promqlMatchers(expr, i)
			if err != nil {
				return "", err
			}
			b.WriteByte('{')
			for _, m := range ms {
				b.WriteString(m.label + m.op + `"",`)
			}
			b.WriteByte('}')
			i = j
		default:
			b.WriteByte(c)
			i++
		}
	}
	return strings.ToLower(metricPrefix.ReplaceAllString(b.String(), "")), nil
}

func TestLabelsRead(t *testing.T) {
	for _, tc := range []struct {
		expr         string
		namesATenant bool
	}{
		{expr: `sum by (namespace, job) (increase(tokenvendor_tenant_refusals_total{reason="other_tenant"}[5m])) > 0`},
		{expr: `sum by (namespace, job, tenant) (rate(tokenvendor_requests_total[5m]))`, namesATenant: true},
		{expr: `rate(tokenvendor_requests_total{tenant_id="acme"}[5m])`, namesATenant: true},
		{expr: `label_replace(up, "tenant", "$1", "instance", "(.*)")`, namesATenant: true},
		{expr: `count by (namespace, job) (tokenvendor_redis_up{caller=~".+"})`, namesATenant: true},
		{expr: "sum by (namespace, job) (tokenvendor_redis_up) # the tenant's {\n> 0"},
	} {
		read, err := labelsRead(tc.expr)
		if err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		if got := strings.Contains(read, "tenant") || strings.Contains(read, "caller"); got != tc.namesATenant {
			t.Errorf("%s: read as %q, names a tenant or a caller: %v, want %v", tc.expr, read, got, tc.namesATenant)
		}
	}
}

var localLink = regexp.MustCompile(`\]\(#([^)]+)\)`)

// markdownSections maps each heading of the given level ("## ") to its
// text, down to the next heading of that level or of the title's.
func markdownSections(doc, level string) map[string]string {
	out := map[string]string{}
	var heading string
	var text strings.Builder
	flush := func() {
		if heading != "" {
			out[heading] = text.String()
		}
		text.Reset()
	}
	for line := range strings.Lines(doc) {
		if h, ok := strings.CutPrefix(line, level); ok {
			flush()
			heading = strings.TrimSpace(h)
			continue
		}
		if strings.HasPrefix(line, "# ") {
			flush()
			heading = ""
			continue
		}
		text.WriteString(line)
	}
	flush()
	return out
}

// ruleTests is promtool's unit test file, as far as these tests read it.
type ruleTests struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		Name        string `yaml:"name"`
		InputSeries []struct {
			Series string `yaml:"series"`
		} `yaml:"input_series"`
		AlertRuleTest []struct {
			EvalTime  string           `yaml:"eval_time"`
			Alertname string           `yaml:"alertname"`
			ExpAlerts []map[string]any `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// TestEveryAlertIsUnitTested holds rules_test.yaml to firing every alert on
// a synthetic series, and to a case where it stays quiet on series it
// reads (quiet on no data proves nothing).
func TestEveryAlertIsUnitTested(t *testing.T) {
	b, err := os.ReadFile(ruleTestsFile)
	if err != nil {
		t.Fatal(err)
	}
	var rt ruleTests
	if err := yaml.Unmarshal(b, &rt); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rt.RuleFiles, []string{"rules.yaml"}) {
		t.Errorf("rule_files %v: want rules.yaml", rt.RuleFiles)
	}
	rules := map[string]string{}
	for _, r := range loadRules(t, rulesFile) {
		rules[r.Alert] = r.Expr
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range rt.Tests {
		inputs := map[string]bool{}
		for _, s := range tc.InputSeries {
			name, _, _ := strings.Cut(s.Series, "{")
			inputs[strings.TrimSpace(name)] = true
		}
		for _, c := range tc.AlertRuleTest {
			expr, ok := rules[c.Alertname]
			if !ok {
				t.Errorf("test %q checks %s, which is no alert", tc.Name, c.Alertname)
				continue
			}
			if len(c.ExpAlerts) > 0 {
				fires[c.Alertname] = true
				continue
			}
			sels, err := promqlSelectors(expr)
			if err != nil {
				t.Fatalf("alert %s: %v", c.Alertname, err)
			}
			for _, s := range sels {
				if inputs[s.name] {
					quiet[c.Alertname] = true
				}
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(rules)) {
		if !fires[name] {
			t.Errorf("no promtool test fires %s", name)
		}
		if !quiet[name] {
			t.Errorf("no promtool test keeps %s quiet on series it reads", name)
		}
	}
}

// ------------------------------------------------------------ dashboard

type dashboard struct {
	Title      string           `json:"title"`
	UID        string           `json:"uid"`
	Panels     []dashboardPanel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Datasource *datasourceRef  `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

type dashboardPanel struct {
	ID         int              `json:"id"`
	Type       string           `json:"type"`
	Title      string           `json:"title"`
	Datasource *datasourceRef   `json:"datasource"`
	Panels     []dashboardPanel `json:"panels"` // a collapsed row's
	Targets    []struct {
		RefID      string         `json:"refId"`
		Expr       string         `json:"expr"`
		Datasource *datasourceRef `json:"datasource"`
	} `json:"targets"`
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

func loadDashboard(t *testing.T, path string) dashboard {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return d
}

func (d dashboard) panels() []dashboardPanel {
	var out []dashboardPanel
	for _, p := range d.Panels {
		out = append(out, p)
		out = append(out, p.Panels...)
	}
	return out
}

// grafanaVariables stand for Grafana's variables in a query, so that
// promtool can parse it: intervals become durations, the job and instance
// selections a regexp matching any.
var grafanaVariables = strings.NewReplacer(
	"$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h",
	"${namespace}", ".+", "$namespace", ".+", "${job}", ".+", "$job", ".+", "${instance}", ".+", "$instance", ".+",
)

var labelValuesQuery = regexp.MustCompile(`^label_values\((.+),\s*([A-Za-z_][A-Za-z0-9_]*)\)$`)

// dashboardExprs maps "panel ID "TITLE" REF" and "variable NAME" to the
// PromQL each runs, variables substituted.
func dashboardExprs(t *testing.T, path string) map[string]string {
	t.Helper()
	d := loadDashboard(t, path)
	out := map[string]string{}
	for _, p := range d.panels() {
		for _, tg := range p.Targets {
			out[fmt.Sprintf("panel %d %q %s", p.ID, p.Title, tg.RefID)] = grafanaVariables.Replace(tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Fatalf("variable %s: query %s: %v", v.Name, v.Query, err)
		}
		m := labelValuesQuery.FindStringSubmatch(q.Query)
		if m == nil {
			t.Fatalf("variable %s: query %q: want label_values(SELECTOR, LABEL)", v.Name, q.Query)
		}
		out["variable "+v.Name] = grafanaVariables.Replace(m[1])
	}
	return out
}

// TestDashboardQueriesParse puts every query of the dashboard into a rules
// file, as recording rules, for promtool check rules; and checks the
// dashboard's selectors and panels.
func TestDashboardQueriesParse(t *testing.T) {
	d := loadDashboard(t, dashboardFile)
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard uid %q, title %q", d.UID, d.Title)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
		if v.Type == "query" && (v.Datasource == nil || v.Datasource.UID != "${datasource}") {
			t.Errorf("variable %s does not query ${datasource}", v.Name)
		}
	}
	if vars["datasource"] != "datasource" || vars["namespace"] != "query" || vars["job"] != "query" || vars["instance"] != "query" {
		t.Errorf("variables %v: want datasource, namespace, job and instance", vars)
	}

	var rules ruleGroup
	rules.Name = "dashboard"
	ids := map[int]bool{}
	used := map[string]bool{}
	for _, p := range d.panels() {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %d %q: want queries on ${datasource}", p.ID, p.Title)
		}
		for _, tg := range p.Targets {
			where := fmt.Sprintf("panel %d %q %s", p.ID, p.Title, tg.RefID)
			if tg.Datasource != nil && tg.Datasource.UID != "${datasource}" {
				t.Errorf("%s queries %s, not ${datasource}", where, tg.Datasource.UID)
			}
			sels, err := promqlSelectors(tg.Expr)
			if err != nil || len(sels) == 0 {
				t.Errorf("%s: %q: %v", where, tg.Expr, err)
			}
			// Every selector follows the namespace, job and instance
			// selection: one job name may run in several namespaces.
			for _, s := range sels {
				used[s.name] = true
				has := map[string]bool{}
				for _, m := range s.matchers {
					has[m.label+m.op+m.value] = true
				}
				if !has[`namespace=~$namespace`] || !has[`job=~$job`] || !has[`instance=~$instance`] {
					t.Errorf("%s: %s lacks namespace=~\"$namespace\", job=~\"$job\", instance=~\"$instance\"", where, s.name)
				}
			}
			expr := grafanaVariables.Replace(tg.Expr)
			if strings.Contains(expr, "$") {
				t.Errorf("%s: a Grafana variable this test does not know: %q", where, tg.Expr)
			}
			rules.Rules = append(rules.Rules, promRule{Record: fmt.Sprintf("dashboard:panel_%d_%s", p.ID, tg.RefID), Expr: expr})
		}
	}
	// The panels the issue asks for.
	for _, name := range []string{
		"tokenvendor_requests_total", "tokenvendor_request_duration_seconds_bucket", "tokenvendor_requests_in_flight",
		"tokenvendor_cache_requests_total", "tokenvendor_cache_entries", "tokenvendor_sts_requests_total",
		"tokenvendor_sts_request_duration_seconds_bucket", "tokenvendor_auth_failures_total", "tokenvendor_jwks_refreshes_total",
		"tokenvendor_shared_cache_requests_total", "tokenvendor_redis_errors_total", "tokenvendor_redis_up",
		"tokenvendor_isolation_canary", "tokenvendor_isolation_canary_runs_total", "tokenvendor_aws_iam_requests_total",
		"tokenvendor_sts_budget_waits_total", "tokenvendor_tenant_refusals_total",
		"go_goroutines", "go_memstats_heap_inuse_bytes", "go_gc_duration_seconds_count",
	} {
		if !used[name] {
			t.Errorf("no panel shows %s", name)
		}
	}
	if raw, _ := os.ReadFile(dashboardFile); !bytes.Contains(raw, []byte(`code=\"429\"`)) {
		t.Error("no panel shows the 429s")
	}

	out, err := yaml.Marshal(ruleFile{Groups: []ruleGroup{rules}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dashboard_rules.yaml"), out, 0o600); err != nil {
		t.Fatal(err)
	}
	if msg, err := promtool(t, dir, "check", "rules", "dashboard_rules.yaml"); err != nil {
		t.Fatalf("the dashboard's queries, as recording rules, do not parse: %v\n%s", err, msg)
	}
}

// ------------------------------------------------------ PromQL selectors

// promSelector is one vector selector of a PromQL expression.
type promSelector struct {
	name     string
	matchers []promMatcher
}

type promMatcher struct {
	label, op, value string
}

// labelListWords are followed by a list of label names; promqlWords are
// PromQL's other keywords and aggregation operators (case-insensitive).
var (
	labelListWords = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}
	promqlWords    = map[string]bool{
		"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true, "inf": true, "nan": true,
		"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true, "count": true,
		"count_values": true, "bottomk": true, "topk": true, "quantile": true, "limitk": true, "limit_ratio": true,
	}
)

// promqlSelectors lists the vector selectors of expr, which promtool has
// parsed: the metric names are the identifiers that are not inside a
// string, a label matcher list, a range or a label list, not keywords, and
// not followed by "(" (functions). It is a lexer, not a parser: it need
// only handle valid PromQL, and namedOutsideStrings checks it against a
// plain sweep for the metric prefixes.
func promqlSelectors(expr string) ([]promSelector, error) {
	var out []promSelector
	s := expr
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			_, j, err := promqlString(s, i)
			if err != nil {
				return nil, err
			}
			i = j
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '[':
			j := strings.IndexByte(s[i:], ']')
			if j < 0 {
				return nil, fmt.Errorf("unclosed [ at %d", i)
			}
			i += j + 1
		case c == '{':
			ms, j, err := promqlMatchers(s, i)
			if err != nil {
				return nil, err
			}
			sel := promSelector{matchers: ms}
			for _, m := range ms {
				if m.label == "__name__" && m.op == "=" {
					sel.name = m.value
				}
			}
			out = append(out, sel)
			i = j
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			// A number or a duration: 5m, 0.99, 1e-3, 0x1f.
			for i < len(s) && (isIdentChar(s[i]) || s[i] == '.') {
				if (s[i] == 'e' || s[i] == 'E') && i+1 < len(s) && (s[i+1] == '+' || s[i+1] == '-') {
					i++
				}
				i++
			}
		case c == '$': // a Grafana variable, if not substituted
			i++
			if i < len(s) && s[i] == '{' {
				for i < len(s) && s[i] != '}' {
					i++
				}
			}
			for i < len(s) && isIdentChar(s[i]) {
				i++
			}
		case isIdentChar(c):
			j := i
			for j < len(s) && isIdentChar(s[j]) {
				j++
			}
			word := s[i:j]
			k := j
			for k < len(s) && unicode.IsSpace(rune(s[k])) {
				k++
			}
			switch {
			case labelListWords[strings.ToLower(word)]:
				if k < len(s) && s[k] == '(' {
					end := strings.IndexByte(s[k:], ')')
					if end < 0 {
						return nil, fmt.Errorf("unclosed label list after %s", word)
					}
					j = k + end + 1
				}
			case promqlWords[strings.ToLower(word)]:
			case k < len(s) && s[k] == '(': // a function
			default:
				sel := promSelector{name: word}
				if k < len(s) && s[k] == '{' {
					ms, end, err := promqlMatchers(s, k)
					if err != nil {
						return nil, err
					}
					sel.matchers, j = ms, end
				}
				out = append(out, sel)
			}
			i = j
		default:
			i++
		}
	}
	return out, nil
}

func isIdentChar(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// promqlString reads the string literal at s[i] and returns its value and
// the index after it.
func promqlString(s string, i int) (string, int, error) {
	q := s[i]
	j := i + 1
	for j < len(s) && s[j] != q {
		if s[j] == '\\' && q != '`' {
			j++
		}
		j++
	}
	if j >= len(s) {
		return "", 0, fmt.Errorf("unclosed string at %d", i)
	}
	raw := s[i+1 : j]
	if q == '`' {
		return raw, j + 1, nil
	}
	if q == '\'' {
		raw = strings.ReplaceAll(strings.ReplaceAll(raw, `\'`, `'`), `"`, `\"`)
	}
	v, err := strconv.Unquote(`"` + raw + `"`)
	return v, j + 1, err
}

// promqlMatchers reads the label matchers at s[i] == '{' and returns them
// and the index after the closing brace.
func promqlMatchers(s string, i int) ([]promMatcher, int, error) {
	var out []promMatcher
	i++
	for {
		for i < len(s) && (unicode.IsSpace(rune(s[i])) || s[i] == ',') {
			i++
		}
		if i >= len(s) {
			return nil, 0, errors.New("unclosed {")
		}
		if s[i] == '}' {
			return out, i + 1, nil
		}
		j := i
		for j < len(s) && isIdentChar(s[j]) {
			j++
		}
		label := s[i:j]
		for j < len(s) && unicode.IsSpace(rune(s[j])) {
			j++
		}
		var op string
		for _, o := range []string{"=~", "!~", "!=", "="} {
			if strings.HasPrefix(s[j:], o) {
				op = o
				break
			}
		}
		if label == "" || op == "" {
			return nil, 0, fmt.Errorf("label matcher at %d: %q", i, s[i:min(len(s), i+20)])
		}
		j += len(op)
		for j < len(s) && unicode.IsSpace(rune(s[j])) {
			j++
		}
		if j >= len(s) || (s[j] != '"' && s[j] != '\'' && s[j] != '`') {
			return nil, 0, fmt.Errorf("label matcher %s%s: no string", label, op)
		}
		v, end, err := promqlString(s, j)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, promMatcher{label: label, op: op, value: v})
		i = end
	}
}

// metricPrefix finds the service's metric names anywhere in a text.
var metricPrefix = regexp.MustCompile(`\b(?:tokenvendor|go|process)_[A-Za-z0-9_:]+`)

// namedOutsideStrings are the names with the service's prefixes that expr
// mentions outside string literals: a cross-check of promqlSelectors.
func namedOutsideStrings(expr string) []string {
	var b strings.Builder
	for i := 0; i < len(expr); {
		if c := expr[i]; c == '"' || c == '\'' || c == '`' {
			if _, j, err := promqlString(expr, i); err == nil {
				b.WriteByte(' ')
				i = j
				continue
			}
		}
		b.WriteByte(expr[i])
		i++
	}
	return metricPrefix.FindAllString(b.String(), -1)
}

func TestPromQLSelectors(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string // name, then label op value of each matcher
	}{
		{expr: `sum by (namespace, job) (rate(tokenvendor_requests_total{route=~"/credentials|/v1/x/.*", code="503"}[5m])) > 0`,
			want: []string{"tokenvendor_requests_total", `route=~/credentials|/v1/x/.*`, `code=503`}},
		{expr: `histogram_quantile(0.99, sum by (le) (rate(a_bucket{x='it\'s'}[5m]))) > 1e-3`,
			want: []string{"a_bucket", `x=it's`}},
		{expr: `x unless on (job, instance) y offset 5m`, want: []string{"x", "y"}},
		{expr: `SUM(x) BY (le) + count_values("version", build_info) or vector(1)`, want: []string{"x", "build_info"}},
		{expr: `label_replace(up, "dst", "$1", "src", "(.*)")`, want: []string{"up"}},
		{expr: `{__name__="foo", job!="x"}`, want: []string{"foo", "__name__=foo", "job!=x"}},
		{expr: `sum(rate(m[5m] @ end())) without (instance) * bool 2`, want: []string{"m"}},
		{expr: `time() - process_start_time_seconds`, want: []string{"process_start_time_seconds"}},
		{expr: `max_over_time(x{a=~"b{1}"}[1h:5m]) # a comment naming y`, want: []string{"x", "a=~b{1}"}},
		{expr: `1 + 2 * -0x1f / .5`, want: nil},
		{expr: `rate(tokenvendor_sts_request_duration_seconds_count[$__rate_interval]) / on() group_left(a) b{job=~"$job"}`,
			want: []string{"tokenvendor_sts_request_duration_seconds_count", "b", "job=~$job"}},
	} {
		sels, err := promqlSelectors(tc.expr)
		if err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		var got []string
		for _, s := range sels {
			if s.name != "" {
				got = append(got, s.name)
			}
			for _, m := range s.matchers {
				got = append(got, m.label+m.op+m.value)
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s:\n got %q\nwant %q", tc.expr, got, tc.want)
		}
	}
}

// ------------------------------------------------------- a live /metrics

// exposition is what one /metrics answer holds: each sample name (a
// histogram's _bucket, _sum and _count apart) with its labels and their
// values.
type exposition struct {
	series map[string]map[string]map[string]bool
}

// targetLabels are added by Prometheus or its Operator, not the service.
var targetLabels = map[string]bool{"job": true, "instance": true, "namespace": true, "pod": true, "service": true, "container": true, "endpoint": true}

var (
	sampleLine = regexp.MustCompile(`^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+\S+`)
	labelPair  = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"`)
)

func parseExposition(text string) *exposition {
	e := &exposition{series: map[string]map[string]map[string]bool{}}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := sampleLine.FindStringSubmatch(sc.Text())
		if m == nil || strings.HasPrefix(sc.Text(), "#") {
			continue
		}
		labels := e.series[m[1]]
		if labels == nil {
			labels = map[string]map[string]bool{}
			e.series[m[1]] = labels
		}
		for _, p := range labelPair.FindAllStringSubmatch(m[2], -1) {
			if labels[p[1]] == nil {
				labels[p[1]] = map[string]bool{}
			}
			labels[p[1]][p[2]] = true
		}
	}
	return e
}

// families are the metric names, a histogram's or summary's suffixes
// stripped, for messages.
func (e *exposition) families() []string {
	seen := map[string]bool{}
	for name := range e.series {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && e.series[base+"_count"] != nil && e.series[base+"_sum"] != nil {
				name = base
			}
		}
		seen[name] = true
	}
	return slices.Sorted(maps.Keys(seen))
}

// problems lists what expr names that the service does not export: a
// metric (a histogram by its _bucket, _sum or _count series, as PromQL
// reads it), a label, or a value of a label whose values all exist from the
// start. code is left out: a status's series appears with its first answer.
func (e *exposition) problems(expr string) []string {
	sels, err := promqlSelectors(expr)
	if err != nil {
		return []string{err.Error()}
	}
	var out []string
	names := map[string]bool{}
	for _, s := range sels {
		names[s.name] = true
		labels, ok := e.series[s.name]
		switch {
		case !ok && e.series[s.name+"_bucket"] != nil:
			out = append(out, fmt.Sprintf("metric %s is a histogram: PromQL reads its _bucket, _sum or _count series", s.name))
			continue
		case !ok:
			out = append(out, fmt.Sprintf("metric %s is not one tokenvendor exports", s.name))
			continue
		}
		for _, m := range s.matchers {
			if targetLabels[m.label] || m.label == "__name__" {
				continue
			}
			values, ok := labels[m.label]
			if !ok {
				out = append(out, fmt.Sprintf("metric %s has no label %s", s.name, m.label))
				continue
			}
			if m.label == "code" {
				continue
			}
			var match func(string) bool
			switch m.op {
			case "=":
				match = func(v string) bool { return v == m.value }
			case "=~":
				re, err := regexp.Compile("^(?:" + m.value + ")$")
				if err != nil {
					out = append(out, fmt.Sprintf("%s{%s=~%q}: %v", s.name, m.label, m.value, err))
					continue
				}
				match = re.MatchString
			default:
				continue
			}
			found := false
			for v := range values {
				found = found || match(v)
			}
			if !found {
				out = append(out, fmt.Sprintf("metric %s has no %s %s%q; it has %v", s.name, m.label, m.op, m.value, slices.Sorted(maps.Keys(values))))
			}
		}
	}
	for _, n := range namedOutsideStrings(expr) {
		if !names[n] {
			out = append(out, fmt.Sprintf("%s is named but was not read as a metric: the lexer missed it", n))
		}
	}
	return out
}

// monitoringProblems checks every alert of a rules file and every query of
// a dashboard against what the service exports.
func monitoringProblems(t *testing.T, e *exposition, rules, dash string) []string {
	t.Helper()
	var out []string
	for _, exprs := range []map[string]string{alertExprs(t, rules), dashboardExprs(t, dash)} {
		for where, expr := range exprs {
			for _, p := range e.problems(expr) {
				out = append(out, where+": "+p)
			}
		}
	}
	slices.Sort(out)
	return out
}

var live struct {
	once sync.Once
	exp  *exposition
	err  error
}

// liveMetrics is what a running tokenvendor exports, read once for the
// package's tests.
func liveMetrics(t *testing.T) *exposition {
	t.Helper()
	live.once.Do(func() { live.exp, live.err = scrapeLiveMetrics() })
	if live.err != nil {
		t.Fatalf("reading a live /metrics: %v", live.err)
	}
	return live.exp
}

// scrapeLiveMetrics builds and starts tokenvendor with every section that
// adds metrics (redis, on a redis-server it starts; canary, reading a stub
// S3 that answers 403), against a stub JWKS and a stub STS; sends a valid
// token, a bad one and one without a tenant; waits for the first canary
// run; and reads /metrics on the admin listener.
func scrapeLiveMetrics() (_ *exposition, err error) {
	dir, err := os.MkdirTemp("", "tokenvendor-monitoring-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	var stops []func()
	defer func() {
		for _, stop := range slices.Backward(stops) {
			stop()
		}
	}()

	bin := filepath.Join(dir, "tokenvendor")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/tokenvendor/tokenvendor/cmd/tokenvendor").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build ./cmd/tokenvendor: %v\n%s", err, out)
	}

	signer, err := testsupport.NewKey("monitoring-1", jwa.ES256)
	if err != nil {
		return nil, err
	}
	jwks := httptest.NewServer(testsupport.JWKS(signer))
	stops = append(stops, jwks.Close)
	sts := httptest.NewServer(testsupport.STS("ASIAMONITORING00001", 200, time.Hour))
	stops = append(stops, sts.Close)
	s3 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusForbidden)
	}))
	stops = append(stops, s3.Close)

	redisAddr, stopRedis, err := testsupport.StartRedis()
	if err != nil {
		return nil, err
	}
	stops = append(stops, stopRedis)
	keyFile := filepath.Join(dir, "redis.key")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))+"\n"), 0o600); err != nil {
		return nil, err
	}

	listen, admin := freeLoopbackAddr(), freeLoopbackAddr()
	cfg := fmt.Sprintf(`listen: %s
admin_listen: %s
auth:
  issuer: https://idp.monitoring.test/
  jwks_url: %s/jwks
  audiences: [tokenvendor]
  algorithms: [ES256]
  aws_iam:
    server_id: tokenvendor.monitoring.test
    sts_endpoint: %[4]s
    principals:
      - {role_arn: "arn:aws:iam::123456789012:role/orders-api", tenant: acme}
sts:
  region: us-east-1
  endpoint: %[4]s
  role_chaining: "off"
redis:
  url: redis://%s/0
  key_file: %s
canary:
  interval: 1m
  tenants: [canary-a, canary-b]
  endpoints: {s3: %s}
  probes:
    - profile: objects
      s3: {bucket: tenant-data, key: "{{ .TenantID }}/canary"}
profiles:
  - name: objects
    role_arn: arn:aws:iam::123456789012:role/TenantData
    policy: '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject"],"Resource":"arn:aws:s3:::tenant-data/{{ .TenantID }}/*"}]}'
    tags: {TenantID: "{{ .TenantID }}"}
`, listen, admin, jwks.URL, sts.URL, redisAddr, keyFile, s3.URL)
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	var logs testsupport.Buffer
	tv := exec.Command(bin, "serve", "--config", cfgPath)
	tv.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID=AKIDMONITORING", "AWS_SECRET_ACCESS_KEY=monitoring", "AWS_REGION=us-east-1",
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true")
	tv.Stdout, tv.Stderr = &logs, &logs
	if err := tv.Start(); err != nil {
		return nil, err
	}
	stops = append(stops, func() { _ = tv.Process.Kill(); _ = tv.Wait() })
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w\ntokenvendor's log:\n%s", err, logs.String())
		}
	}()

	adminURL, apiURL := "http://"+admin, "http://"+listen
	if err := testsupport.Poll(20*time.Second, func() error {
		res, err := quickClient.Get(adminURL + "/readyz")
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz answered %d", res.StatusCode)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("tokenvendor not ready: %w", err)
	}

	sign := func(claims map[string]any) string {
		b := jwt.NewBuilder().Issuer("https://idp.monitoring.test/").Audience([]string{"tokenvendor"}).Subject("svc-monitoring").
			IssuedAt(time.Now()).Expiration(time.Now().Add(time.Hour))
		for k, v := range claims {
			b = b.Claim(k, v)
		}
		tok, err := b.Build()
		if err != nil {
			panic(err)
		}
		signed, err := signer.Sign(tok)
		if err != nil {
			panic(err)
		}
		return signed
	}
	valid := sign(map[string]any{"tenant_id": "acme"})
	for _, r := range []struct {
		method, path, token string
		want                int
	}{
		{http.MethodPost, "/credentials", valid, http.StatusOK},
		{http.MethodPost, "/credentials", valid, http.StatusOK},
		{http.MethodGet, "/v1/container-credentials/objects", valid, http.StatusOK},
		{http.MethodPost, "/credentials", "not-a-token", http.StatusUnauthorized},
		{http.MethodPost, "/credentials", sign(nil), http.StatusForbidden},
	} {
		req, _ := http.NewRequest(r.method, apiURL+r.path, nil)
		req.Header.Set("Authorization", "Bearer "+r.token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != r.want {
			return nil, fmt.Errorf("%s %s: %d %s, want %d", r.method, r.path, res.StatusCode, body, r.want)
		}
	}

	// The canary's gauge appears after its first run, which starts once
	// the key set is fetched.
	var text string
	if err := testsupport.Poll(20*time.Second, func() error {
		res, err := quickClient.Get(adminURL + "/metrics")
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		text = string(b)
		if res.StatusCode != http.StatusOK || !strings.Contains(text, "\ntokenvendor_isolation_canary{") {
			return fmt.Errorf("no tokenvendor_isolation_canary on /metrics (%d)", res.StatusCode)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("%w:\n%s", err, text)
	}
	return parseExposition(text), nil
}

func freeLoopbackAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestAlertsAndPanelsNameOnlyExportedMetrics reads a live /metrics: every
// metric an alert or a panel names, with the labels and label values it
// matches, is one the service exports. A renamed metric breaks the build.
func TestAlertsAndPanelsNameOnlyExportedMetrics(t *testing.T) {
	e := liveMetrics(t)
	for _, p := range monitoringProblems(t, e, rulesFile, dashboardFile) {
		t.Error(p)
	}
	if t.Failed() {
		t.Logf("tokenvendor exports %v", e.families())
	}
}

// TestChecksFailWhenAnAlertNamesAMetricThatDoesNotExist renames a metric in
// one alert's expression, and in one panel's, in copies of the kit: the
// rules still parse, but the unit tests and the live check fail.
func TestChecksFailWhenAnAlertNamesAMetricThatDoesNotExist(t *testing.T) {
	const alert, metric, renamed = "TokenvendorSTSThrottled", "tokenvendor_sts_requests_total", "tokenvendor_sts_calls_total"
	e := liveMetrics(t)
	dir := t.TempDir()
	for _, f := range []string{"rules.yaml", "rules_test.yaml", "dashboard.json"} {
		b, err := os.ReadFile(filepath.Join(monitoringDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The copies pass as they are.
	if out, err := promtool(t, dir, "test", "rules", "rules_test.yaml"); err != nil {
		t.Fatalf("the unmodified copy fails: %v\n%s", err, out)
	}
	if ps := monitoringProblems(t, e, filepath.Join(dir, "rules.yaml"), filepath.Join(dir, "dashboard.json")); len(ps) > 0 {
		t.Fatalf("the unmodified copy fails: %v", ps)
	}

	// Rename the metric in the alert's expression only.
	rules, _ := os.ReadFile(filepath.Join(dir, "rules.yaml"))
	start := bytes.Index(rules, []byte("- alert: "+alert+"\n"))
	end := bytes.Index(rules[start:], []byte("\n        for:"))
	if start < 0 || end < 0 || bytes.Count(rules[start:start+end], []byte(metric)) != 1 {
		t.Fatalf("%s does not name %s once in %s", alert, metric, rulesFile)
	}
	mutated := slices.Concat(rules[:start], bytes.Replace(rules[start:start+end], []byte(metric), []byte(renamed), 1), rules[start+end:])
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), mutated, 0o600); err != nil {
		t.Fatal(err)
	}
	if alertExprs(t, filepath.Join(dir, "rules.yaml"))["alert "+alert] == alertExprs(t, rulesFile)["alert "+alert] {
		t.Fatal("the expression did not change")
	}

	// promtool check rules cannot tell: the expression still parses.
	if out, err := promtool(t, dir, "check", "rules", "rules.yaml"); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	// The unit tests fail: the alert never fires on the series they feed.
	out, err := promtool(t, dir, "test", "rules", "rules_test.yaml")
	if err == nil || !strings.Contains(out, "alertname: "+alert) {
		t.Errorf("promtool test rules passed with %s renamed in %s (err %v):\n%s", metric, alert, err, out)
	}
	// The live check fails, naming it.
	want := fmt.Sprintf("alert %s: metric %s is not one tokenvendor exports", alert, renamed)
	if ps := monitoringProblems(t, e, filepath.Join(dir, "rules.yaml"), filepath.Join(dir, "dashboard.json")); !slices.Equal(ps, []string{want}) {
		t.Errorf("problems %q, want %q", ps, want)
	}

	// A panel naming a metric that does not exist fails the live check
	// too (its query still parses).
	dash, _ := os.ReadFile(filepath.Join(dir, "dashboard.json"))
	dash = bytes.Replace(dash, []byte("tokenvendor_cache_requests_total"), []byte("tokenvendor_cache_lookups_total"), 1)
	if err := os.WriteFile(filepath.Join(dir, "dashboard.json"), dash, 0o600); err != nil {
		t.Fatal(err)
	}
	ps := monitoringProblems(t, e, rulesFile, filepath.Join(dir, "dashboard.json"))
	if len(ps) != 1 || !strings.Contains(ps[0], "metric tokenvendor_cache_lookups_total is not one tokenvendor exports") {
		t.Errorf("problems %q, want one naming tokenvendor_cache_lookups_total", ps)
	}
}

// quickClient bounds every request of the live check, so that a hung
// tokenvendor fails the test in time instead of stalling it.
var quickClient = &http.Client{Timeout: 5 * time.Second}
