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
use serde::Serialize;
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

    /// Write the record of one LDAP write. The record is serialized once, straight into its
    /// output (the log line, the file): no intermediate JSON tree or string.
    pub fn record(&self, w: &AuditWrite<'_>) {
        let time = now_rfc3339();
        let written = CONTEXT
            .try_with(|ctx| self.write(w, Some(ctx), &time))
            .unwrap_or_else(|_| self.write(w, None, &time));
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

    fn write(
        &self,
        w: &AuditWrite<'_>,
        ctx: Option<&RequestContext>,
        time: &str,
    ) -> std::io::Result<()> {
        let Ok(mut sink) = self.sink.lock() else {
            return Ok(());
        };
        let sink = &mut *sink;
        let record = render(w, ctx, &sink.redact, time);
        match &mut sink.output {
            Output::Log => {
                tracing::info!(target: "audit", record = %record, "directory write");
                Ok(())
            }
            Output::Stdout => record.write_line(&mut std::io::stdout().lock()),
            Output::Stderr => record.write_line(&mut std::io::stderr().lock()),
            // One write per record, so appends from several processes never interleave.
            Output::File(f) => {
                let mut line = Vec::with_capacity(512);
                record.write_line(&mut line)?;
                f.write_all(&line)
            }
        }
    }
}

/// One audit record, borrowing everything it shows; serializes as one JSON object.
#[derive(Debug, Serialize)]
pub struct Record<'a> {
    time: &'a str,
    request_id: Option<&'a str>,
    token: Option<&'a str>,
    scim_operation: Option<&'a str>,
    ldap_operation: &'a str,
    dn: &'a str,
    changes: Vec<ChangeRecord<'a>>,
    result: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    new_dn: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct ChangeRecord<'a> {
    op: &'a str,
    attribute: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    values: Option<Values<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    values_omitted: Option<usize>,
}

/// The values a change shows: the first [`MAX_VALUES`], or one `[redacted]` for secrets.
#[derive(Debug)]
enum Values<'a> {
    Shown(&'a [String]),
    Redacted,
}

impl Serialize for Values<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Values::Shown(v) => v.serialize(s),
            Values::Redacted => ["[redacted]"].serialize(s),
        }
    }
}

impl Record<'_> {
    /// The record and a newline.
    fn write_line(&self, out: &mut impl Write) -> std::io::Result<()> {
        serde_json::to_writer(&mut *out, self)?;
        out.write_all(b"\n")
    }
}

/// The JSON text, for the log line: serialized into one buffer and handed to the formatter in
/// one piece (through an `io::Write` adapter it took one UTF-8 check and one formatter call per
/// JSON token, about 90 per record).
impl std::fmt::Display for Record<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut text = Vec::with_capacity(512);
        serde_json::to_writer(&mut text, self).map_err(|_| std::fmt::Error)?;
        // serde_json writes UTF-8 only; the check is one pass over the buffer.
        f.write_str(std::str::from_utf8(&text).map_err(|_| std::fmt::Error)?)
    }
}

/// The record of `w`; pure, so the redaction rules are unit-tested.
pub fn render<'a>(
    w: &'a AuditWrite<'a>,
    ctx: Option<&'a RequestContext>,
    redact: &[String],
    time: &'a str,
) -> Record<'a> {
    let changes = w
        .changes
        .iter()
        .map(|c| {
            let secret = ALWAYS_REDACTED
                .iter()
                .copied()
                .chain(redact.iter().map(String::as_str))
                .any(|r| c.attribute.eq_ignore_ascii_case(r));
            let (values, values_omitted) = if secret {
                ((!c.values.is_empty()).then_some(Values::Redacted), None)
            } else {
                let shown = &c.values[..c.values.len().min(MAX_VALUES)];
                let omitted = (c.values.len() > MAX_VALUES).then(|| c.values.len() - MAX_VALUES);
                (Some(Values::Shown(shown)), omitted)
            };
            ChangeRecord {
                op: c.op,
                attribute: c.attribute,
                values,
                values_omitted,
            }
        })
        .collect();
    Record {
        time,
        request_id: ctx.map(|c| c.request_id.as_str()),
        token: ctx.map(|c| c.token.as_str()),
        scim_operation: ctx.map(|c| c.operation.as_str()),
        ldap_operation: w.operation,
        dn: w.dn,
        changes,
        result: w.result,
        new_dn: w.new_dn,
    }
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
    use serde_json::{json, Value};

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
        let c = ctx();
        let record = render(&w, Some(&c), &["employeepin".into()], "t");
        let text = record.to_string();
        let r: Value = serde_json::from_str(&text).unwrap();
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
        let r = serde_json::to_value(render(&w, None, &[], "t")).unwrap();
        assert_eq!(r["changes"][0]["values"].as_array().unwrap().len(), 20);
        assert_eq!(r["changes"][0]["values_omitted"], 5);
        assert!(r["request_id"].is_null());
    }

    #[test]
    fn the_log_line_and_the_file_line_are_the_same_json() {
        let names = vec!["Zoë \"Z\" 東京\\n".to_string()];
        let w = AuditWrite {
            operation: "modrdn",
            dn: "uid=zoe,ou=people",
            new_dn: Some("uid=zoë,ou=people"),
            changes: vec![
                AuditChange {
                    op: "replace",
                    attribute: "cn",
                    values: &names,
                },
                AuditChange {
                    op: "delete",
                    attribute: "userPassword",
                    values: &[],
                },
            ],
            result: "success",
        };
        let c = ctx();
        let record = render(&w, Some(&c), &[], "2026-11-23T00:00:00.000Z");
        let shown = record.to_string();
        let mut line = Vec::new();
        record.write_line(&mut line).unwrap();
        assert_eq!(line, format!("{shown}\n").into_bytes());
        let r: Value = serde_json::from_str(&shown).unwrap();
        assert_eq!(r["changes"][0]["values"], json!(["Zoë \"Z\" 東京\\n"]));
        assert_eq!(r["new_dn"], "uid=zoë,ou=people");
        // A secret attribute deleted whole: nothing to redact, no values key.
        assert!(r["changes"][1].get("values").is_none(), "{shown}");
        let keys: Vec<&String> = r.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "time",
                "request_id",
                "token",
                "scim_operation",
                "ldap_operation",
                "dn",
                "changes",
                "result",
                "new_dn"
            ]
        );
    }

    fn current() -> Option<RequestContext> {
        CONTEXT.try_with(|c| c.clone()).ok()
    }

    #[tokio::test]
    async fn the_context_is_visible_inside_its_scope_only() {
        assert!(current().is_none());
        let seen = with_context(ctx(), async { current().map(|c| c.request_id) }).await;
        assert_eq!(seen.as_deref(), Some("req-1"));
        assert!(current().is_none());
    }
}
