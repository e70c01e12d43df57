//! The audit trail: one JSON record per write sent to the directory.
//!
//! A record names who (the token's name), what (the SCIM operation and the LDAP operation, the
//! target DN and the attributes changed), the LDAP result, and the request id that ties it to the
//! access log. Values of sensitive attributes are replaced by `[redacted]`; tokens and the bind
//! password never reach this module at all.
//!
//! The request's identity travels in a task-local [`RequestContext`] set by the HTTP layer, so the
//! directory layer can write the record without every service passing it along.

use crate::config::{AuditOutput, AuditSettings};
use crate::metrics::ProcessMetrics;
use serde_json::{json, Value};
use std::io::Write;
use std::sync::Mutex;

/// Attributes whose values are always redacted.
const ALWAYS_REDACTED: &[&str] = &["userpassword", "unicodepwd", "authpassword"];
/// At most this many values of one attribute are recorded; the rest are counted.
const MAX_VALUES: usize = 20;

/// Who is asking, for the audit records of the writes a request causes.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    /// The token's configured name, never its value.
    pub token: String,
    /// `POST /Users`, `PATCH /Groups`, `POST /Bulk` …: method and resource, no ids.
    pub operation: String,
}

tokio::task_local! {
    static CONTEXT: RequestContext;
}

/// Run `f` with `ctx` as the current request context.
pub async fn with_context<F: std::future::Future>(ctx: RequestContext, f: F) -> F::Output {
    CONTEXT.scope(ctx, f).await
}

/// The context of the request being served, if any.
pub fn current() -> Option<RequestContext> {
    CONTEXT.try_with(|c| c.clone()).ok()
}

/// One change of an LDAP write, for the record.
pub struct AuditChange<'a> {
    /// `add`, `delete` or `replace`.
    pub op: &'static str,
    pub attribute: &'a str,
    pub values: &'a [String],
}

/// One LDAP write, for the record.
pub struct AuditWrite<'a> {
    /// `add`, `modify`, `modrdn` or `delete`.
    pub operation: &'static str,
    pub dn: &'a str,
    pub new_dn: Option<&'a str>,
    pub changes: Vec<AuditChange<'a>>,
    /// An LDAP result-code name, `timeout`, `connection_error` or `refused_outside_subtree`.
    pub result: &'a str,
}

enum Output {
    Log,
    Stdout,
    Stderr,
    File(std::fs::File),
}

struct Sink {
    output: Output,
    redact: Vec<String>,
}

/// Writes audit records to the configured output.
pub struct Auditor {
    sink: Mutex<Sink>,
    metrics: Option<ProcessMetrics>,
}

fn open(settings: &AuditSettings) -> std::io::Result<Output> {
    Ok(match &settings.output {
        AuditOutput::Log => Output::Log,
        AuditOutput::Stdout => Output::Stdout,
        AuditOutput::Stderr => Output::Stderr,
        AuditOutput::File(path) => Output::File(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        ),
    })
}

impl Auditor {
    /// Open the output (creating the file if needed).
    pub fn new(settings: &AuditSettings, metrics: Option<ProcessMetrics>) -> std::io::Result<Self> {
        Ok(Auditor {
            sink: Mutex::new(Sink {
                output: open(settings)?,
                redact: settings.redact_attributes.clone(),
            }),
            metrics,
        })
    }

    /// Switch to new settings; the file is reopened, which is what log rotation needs.
    pub fn reconfigure(&self, settings: &AuditSettings) -> std::io::Result<()> {
        let output = open(settings)?;
        if let Ok(mut s) = self.sink.lock() {
            s.output = output;
            s.redact = settings.redact_attributes.clone();
        }
        Ok(())
    }

    /// Write the record of one LDAP write.
    pub fn record(&self, w: &AuditWrite<'_>) {
        let Ok(mut sink) = self.sink.lock() else {
            return;
        };
        let ctx = current();
        let line = render(w, ctx.as_ref(), &sink.redact, now_rfc3339()).to_string();
        let written = match &mut sink.output {
            Output::Log => {
                tracing::info!(target: "audit", record = %line, "directory write");
                Ok(())
            }
            Output::Stdout => writeln!(std::io::stdout().lock(), "{line}"),
            Output::Stderr => writeln!(std::io::stderr().lock(), "{line}"),
            Output::File(f) => f.write_all(format!("{line}\n").as_bytes()),
        };
        let outcome = match written {
            Ok(()) => "written",
            Err(e) => {
                tracing::error!(error = %e, "cannot write an audit record");
                "failed"
            }
        };
        if let Some(m) = &self.metrics {
            m.audit_records.with_label_values(&[outcome]).inc();
        }
    }
}

/// The JSON record; pure, so the redaction rules are unit-tested.
pub fn render(
    w: &AuditWrite<'_>,
    ctx: Option<&RequestContext>,
    redact: &[String],
    time: String,
) -> Value {
    let changes: Vec<Value> = w
        .changes
        .iter()
        .map(|c| {
            let lower = c.attribute.to_ascii_lowercase();
            let secret = ALWAYS_REDACTED.contains(&lower.as_str()) || redact.contains(&lower);
            let mut change = json!({"op": c.op, "attribute": c.attribute});
            if secret {
                if !c.values.is_empty() {
                    change["values"] = json!(["[redacted]"]);
                }
            } else {
                let shown: Vec<&String> = c.values.iter().take(MAX_VALUES).collect();
                change["values"] = json!(shown);
                if c.values.len() > MAX_VALUES {
                    change["values_omitted"] = json!(c.values.len() - MAX_VALUES);
                }
            }
            change
        })
        .collect();
    let mut record = json!({
        "time": time,
        "request_id": ctx.map(|c| c.request_id.as_str()),
        "token": ctx.map(|c| c.token.as_str()),
        "scim_operation": ctx.map(|c| c.operation.as_str()),
        "ldap_operation": w.operation,
        "dn": w.dn,
        "changes": changes,
        "result": w.result,
    });
    if let Some(n) = w.new_dn {
        record["new_dn"] = json!(n);
    }
    record
}

/// The current time as RFC 3339 UTC with milliseconds.
fn now_rfc3339() -> String {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    crate::scim::time::unix_to_rfc3339(since.as_secs(), since.subsec_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> RequestContext {
        RequestContext {
            request_id: "req-1".into(),
            token: "entra".into(),
            operation: "POST /Users".into(),
        }
    }

    #[test]
    fn records_carry_who_what_and_result_but_never_secret_values() {
        let pw = vec!["Sup3rSecret!".to_string()];
        let mail = vec!["alice@example.org".to_string()];
        let pin = vec!["1234".to_string()];
        let w = AuditWrite {
            operation: "add",
            dn: "uid=alice,ou=people,dc=example,dc=org",
            new_dn: None,
            changes: vec![
                AuditChange {
                    op: "add",
                    attribute: "userPassword",
                    values: &pw,
                },
                AuditChange {
                    op: "add",
                    attribute: "mail",
                    values: &mail,
                },
                AuditChange {
                    op: "add",
                    attribute: "employeePin",
                    values: &pin,
                },
            ],
            result: "success",
        };
        let r = render(&w, Some(&ctx()), &["employeepin".into()], "t".into());
        let text = r.to_string();
        assert!(!text.contains("Sup3rSecret!"), "{text}");
        assert!(!text.contains("1234"), "{text}");
        assert_eq!(r["request_id"], "req-1");
        assert_eq!(r["token"], "entra");
        assert_eq!(r["scim_operation"], "POST /Users");
        assert_eq!(r["ldap_operation"], "add");
        assert_eq!(r["result"], "success");
        assert_eq!(r["changes"][0]["attribute"], "userPassword");
        assert_eq!(r["changes"][0]["values"], json!(["[redacted]"]));
        assert_eq!(r["changes"][1]["values"], json!(["alice@example.org"]));
        assert_eq!(r["changes"][2]["values"], json!(["[redacted]"]));
    }

    #[test]
    fn long_value_lists_are_cut_and_counted() {
        let members: Vec<String> = (0..25).map(|i| format!("uid=u{i},ou=people")).collect();
        let w = AuditWrite {
            operation: "modify",
            dn: "cn=g,ou=groups",
            new_dn: None,
            changes: vec![AuditChange {
                op: "add",
                attribute: "member",
                values: &members,
            }],
            result: "success",
        };
        let r = render(&w, None, &[], "t".into());
        assert_eq!(r["changes"][0]["values"].as_array().unwrap().len(), 20);
        assert_eq!(r["changes"][0]["values_omitted"], 5);
        assert!(r["request_id"].is_null());
    }

    #[tokio::test]
    async fn the_context_is_visible_inside_its_scope_only() {
        assert!(current().is_none());
        let seen = with_context(ctx(), async { current().map(|c| c.request_id) }).await;
        assert_eq!(seen.as_deref(), Some("req-1"));
        assert!(current().is_none());
    }
}
