//! The deployment kit names only metrics that exist: every PromQL expression of the alert rules
//! (and every series their unit tests feed in) and of the Grafana dashboard is checked against the
//! families the real exporter produces, and the dashboard shows every family.
//! (deploy/validate.sh checks the rest of the kit.)

use scim_ldap_gateway::metrics::{encode, DirectoryMetrics, HttpMetrics, Metrics, ProcessMetrics};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Series Prometheus makes up itself for every target.
const PROMETHEUS_SERIES: &[&str] = &["up"];

fn deploy_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// Family name → type, from the exposition of a fresh registry on which every family has a
/// series. The destructuring is exhaustive: a new metric does not compile here until it is
/// touched below, so it cannot be missing from the list.
fn exported_families() -> BTreeMap<String, String> {
    let registry = prometheus::Registry::new();
    let Metrics {
        http:
            HttpMetrics {
                requests,
                duration,
                in_flight,
                connections,
                rate_limited,
                overloaded,
                tls_handshake_failures,
                tls_certificate_expiry,
            },
        directory:
            DirectoryMetrics {
                operations,
                duration: directory_duration,
                in_flight: directory_in_flight,
                queued,
                rejected,
                connections: pool_connections,
                search_connections,
                reconnects,
                up,
            },
        process:
            ProcessMetrics {
                reloads,
                last_reload_success,
                audit_records,
            },
    } = Metrics::register(&registry).unwrap();
    requests.with_label_values(&["Users", "GET", "2xx"]).inc();
    duration.with_label_values(&["Users", "GET"]).observe(0.01);
    in_flight.set(1);
    connections.set(1);
    rate_limited.with_label_values(&["token_write"]).inc();
    overloaded.inc();
    tls_handshake_failures.with_label_values(&["error"]).inc();
    tls_certificate_expiry.set(4e9);
    operations.with_label_values(&["search", "success"]).inc();
    directory_duration
        .with_label_values(&["search"])
        .observe(0.002);
    directory_in_flight.set(1);
    queued.set(1);
    rejected.with_label_values(&["queue_full"]).inc();
    pool_connections.with_label_values(&["open"]).set(4);
    search_connections.with_label_values(&["open"]).set(8);
    reconnects.inc();
    up.set(1);
    reloads.with_label_values(&["success"]).inc();
    last_reload_success.set(1.7e9);
    audit_records.with_label_values(&["written"]).inc();

    let families: BTreeMap<String, String> = encode(&registry)
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').unwrap();
            (name.to_string(), kind.to_string())
        })
        .collect();
    // The 20 families above, plus scim_gateway_build_info.
    assert_eq!(families.len(), 21, "{families:?}");
    families
}

/// The names a query may use for a family: histograms are queried through their series.
fn series_names(family: &str, kind: &str) -> Vec<String> {
    match kind {
        "histogram" => ["_bucket", "_sum", "_count"]
            .iter()
            .map(|s| format!("{family}{s}"))
            .collect(),
        _ => vec![family.to_string()],
    }
}

/// The metric names a PromQL expression selects: identifiers outside strings, label matchers,
/// ranges and grouping lists that are neither called (functions, aggregations) nor keywords.
fn metric_names(expr: &str) -> Vec<String> {
    const KEYWORDS: &[&str] = &[
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    const GROUPING: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    // Past the string whose opening quote is at `i - 1`.
    let skip_string = |mut i: usize, quote: char| {
        while i < chars.len() && chars[i] != quote {
            i += if chars[i] == '\\' { 2 } else { 1 };
        }
        i + 1
    };
    // Past the `close` that ends what starts at `i`, stepping over quoted strings.
    let skip_to = |mut i: usize, close: char| {
        while i < chars.len() && chars[i] != close {
            i = if matches!(chars[i], '"' | '\'' | '`') {
                skip_string(i + 1, chars[i])
            } else {
                i + 1
            };
        }
        i + 1
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            i = skip_to(i + 1, '}');
        } else if c == '[' {
            i = skip_to(i + 1, ']');
        } else if matches!(c, '"' | '\'' | '`') {
            i = skip_string(i + 1, c);
        } else if c == '$' || c.is_ascii_digit() {
            // A Grafana variable, a number or a duration.
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let called = chars.get(next) == Some(&'(');
            if GROUPING.contains(&word.as_str()) {
                if called {
                    i = skip_to(next + 1, ')');
                }
            } else if !called && !KEYWORDS.contains(&word.as_str()) {
                names.push(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The `expr:` values of a Prometheus rule file (inline or `|` blocks, as alerts.yml writes
/// them) and the names of its recording rules.
fn rule_expressions(yaml: &str) -> (Vec<String>, BTreeSet<String>) {
    let lines: Vec<&str> = yaml.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut exprs = Vec::new();
    let mut records = BTreeSet::new();
    for (n, line) in lines.iter().enumerate() {
        let item = line.trim_start().trim_start_matches("- ");
        if let Some(name) = item.strip_prefix("record:") {
            records.insert(name.trim().to_string());
        }
        let Some(value) = item.strip_prefix("expr:") else {
            continue;
        };
        let value = value.trim();
        if value.starts_with('|') || value.starts_with('>') {
            let block: Vec<&str> = lines[n + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || indent(l) > indent(line))
                .map(|l| l.trim())
                .collect();
            exprs.push(block.join(" "));
        } else {
            exprs.push(value.trim_matches('\'').trim_matches('"').to_string());
        }
    }
    (exprs, records)
}

/// The `series:` selectors of a promtool unit-test file.
fn test_series(yaml: &str) -> Vec<String> {
    yaml.lines()
        .filter_map(|l| {
            l.trim_start()
                .trim_start_matches("- ")
                .strip_prefix("series:")
        })
        .map(|s| s.trim().trim_matches('\'').trim_matches('"').to_string())
        .collect()
}

/// Every PromQL expression of the dashboard: panel targets and template-variable queries.
fn dashboard_expressions(json: &str) -> Vec<String> {
    let dashboard: serde_json::Value = serde_json::from_str(json).unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = var["query"]["query"].as_str() {
            // label_values(<selector>, <label>): the label is not a metric.
            let selector = query
                .strip_prefix("label_values(")
                .and_then(|q| q.rsplit_once(','))
                .map_or(query, |(s, _)| s);
            exprs.push(selector.to_string());
        }
    }
    exprs
}

/// The names in `exprs` that are none of `allowed`, with the expression that uses them.
fn unknown_names(exprs: &[String], allowed: &BTreeSet<String>) -> Vec<(String, String)> {
    exprs
        .iter()
        .flat_map(|e| metric_names(e).into_iter().map(move |n| (n, e.clone())))
        .filter(|(n, _)| !allowed.contains(n))
        .collect()
}

fn allowed_series(families: &BTreeMap<String, String>) -> BTreeSet<String> {
    families
        .iter()
        .flat_map(|(f, kind)| series_names(f, kind))
        .chain(PROMETHEUS_SERIES.iter().map(|s| s.to_string()))
        .collect()
}

#[test]
fn promql_names_come_from_the_language_not_from_labels_or_functions() {
    assert_eq!(
        metric_names(
            r#"histogram_quantile(0.99, sum by (le, resource) (rate(a_bucket{job=~"$job", le=~"1|1\\.0"}[$__rate_interval])))"#
        ),
        vec!["a_bucket"]
    );
    assert_eq!(
        metric_names(
            "job:x:ratio_rate1h > (14.4 * 0.01) and on (job) b{q=\"}'\"} offset 5m or absent(up{job=\"g\"})"
        ),
        vec!["job:x:ratio_rate1h", "b", "up"]
    );
    assert_eq!(metric_names("(c > 0) - time() < 14 * 86400"), vec!["c"]);
    assert_eq!(
        metric_names("sum without (instance) (d) / ignoring(x) group_left e"),
        vec!["d", "e"]
    );
    let (exprs, records) = rule_expressions(
        "groups:\n  - rules:\n      - record: r:x\n        expr: |\n          sum(a)\n          / b\n      - alert: A\n        expr: c == 0\n        for: 1m\n",
    );
    assert_eq!(exprs, vec!["sum(a) / b", "c == 0"]);
    assert_eq!(records, BTreeSet::from(["r:x".to_string()]));
}

#[test]
fn alert_rules_and_their_tests_name_only_exported_metrics() {
    let families = exported_families();
    let rules = deploy_file("prometheus/alerts.yml");
    let (exprs, records) = rule_expressions(&rules);
    // One expression per rule: a missed block would otherwise go unchecked.
    let rule_count = rules
        .lines()
        .filter(|l| {
            let t = l.trim_start().trim_start_matches("- ");
            t.starts_with("alert:") || t.starts_with("record:")
        })
        .count();
    assert_eq!(exprs.len(), rule_count, "{exprs:#?}");
    assert!(rule_count >= 12, "{rule_count} rules");
    let mut allowed = allowed_series(&families);
    allowed.extend(records);
    assert_eq!(unknown_names(&exprs, &allowed), vec![]);

    // A quiet case fed a misspelt series would pass without testing anything.
    let series = test_series(&deploy_file("prometheus/alerts_test.yml"));
    assert!(series.len() >= 20, "{series:?}");
    assert_eq!(unknown_names(&series, &allowed_series(&families)), vec![]);
}

#[test]
fn the_dashboard_shows_every_family_and_nothing_else() {
    let families = exported_families();
    let exprs = dashboard_expressions(&deploy_file("grafana/scim-ldap-gateway.json"));
    assert!(exprs.len() >= 20, "{exprs:?}");
    assert_eq!(unknown_names(&exprs, &allowed_series(&families)), vec![]);
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    let missing: Vec<&String> = families
        .iter()
        .filter(|(f, kind)| !series_names(f, kind).iter().any(|s| used.contains(s)))
        .map(|(f, _)| f)
        .collect();
    assert!(missing.is_empty(), "families without a panel: {missing:?}");
}
