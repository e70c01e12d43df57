//! Mixed SCIM traffic over many keep-alive TLS connections, one client (so one connection) per
//! task. Each connection owns a seeded user (`load-<n>`, see [`write_users_ldif`]) and sends, with
//! a random think time after each, a random mix of requests: find its user, read it back, update
//! it, create or delete a user of its own, and find a seeded user everybody shares. Every request's
//! latency and answer is recorded, and every answer is checked against what the connection was
//! told before (read-your-writes).

use super::{filter_url, send, title_patch, user_body, Reply};
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Semaphore};

/// The title every seeded user starts with.
const SEEDED_TITLE: &str = "seeded";

/// LDIF of `count` users `uid=load-<n>` for `Slapd::start_with_ldif`.
pub fn write_users_ldif(path: &Path, count: usize) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for n in 0..count {
        write!(
            out,
            "dn: uid=load-{n},ou=people,dc=example,dc=org\n\
             objectClass: top\n\
             objectClass: person\n\
             objectClass: organizationalPerson\n\
             objectClass: inetOrgPerson\n\
             uid: load-{n}\n\
             cn: Load User {n}\n\
             sn: User {n}\n\
             mail: load-{n}@example.org\n\
             title: {SEEDED_TITLE}\n\n"
        )
        .unwrap();
    }
    out.flush().unwrap();
}

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `GET /Users?filter=userName eq "load-<n>"`: the connection's user, found once.
    Find,
    /// `GET /Users/<id>`: shows the last acknowledged update.
    ReadBack,
    /// `PATCH /Users/<id>` (title)
    Update,
    /// `POST /Users`: a user of the connection's own, when it has none.
    Create,
    /// `DELETE /Users/<id>` of that user.
    Delete,
    /// `GET /Users?filter=userName eq "alice"`
    FindShared,
}

impl Step {
    pub fn is_read(self) -> bool {
        matches!(self, Step::Find | Step::ReadBack | Step::FindShared)
    }

    fn expected_status(self) -> u16 {
        match self {
            Step::Create => 201,
            Step::Delete => 204,
            _ => 200,
        }
    }
}

/// One request of the load.
pub struct Sample {
    pub step: Step,
    pub took: Duration,
    /// The status, or why there was none.
    pub outcome: Result<u16, String>,
}

/// What one connection did.
#[derive(Default)]
pub struct ConnectionReport {
    pub samples: Vec<Sample>,
    /// Answers outside the contract: a status other than the step's, 429 or 503, no answer at
    /// all, or a body that contradicts an acknowledged write.
    pub violations: Vec<String>,
}

/// Statuses any request may get by design: a quota (429) or an overload limit (503).
pub fn is_refusal(reply: &Reply) -> bool {
    (reply.status == 429 || reply.status == 503) && reply.retry_after.is_some()
}

/// A small deterministic generator for think times and the request mix (xorshift64*).
struct Jitter(u64);

impl Jitter {
    fn new(seed: u64) -> Jitter {
        Jitter(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn between(&mut self, min: Duration, max: Duration) -> Duration {
        let span = max.saturating_sub(min).as_micros() as u64;
        min + Duration::from_micros(self.next() % (span + 1))
    }

    fn percent(&mut self) -> u64 {
        self.next() % 100
    }
}

/// The work of one connection.
pub struct Connection {
    pub index: usize,
    pub client: reqwest::Client,
    pub base: String,
    /// The pause after each request is drawn from this range.
    pub think: (Duration, Duration),
}

/// What the connection has been told so far.
struct Known {
    id: String,
    title: String,
    /// The id of the extra user it created, if any.
    extra: Option<String>,
    created: usize,
}

impl Connection {
    /// Opens the connection by finding its user (at most `opening` connections at once), says
    /// so on `opened`, then sends requests until `stop` turns true. Requests start at once, so
    /// that no connection idles long enough for the gateway to close it.
    pub async fn run(
        self,
        opening: Arc<Semaphore>,
        opened: mpsc::Sender<()>,
        mut stop: watch::Receiver<bool>,
    ) -> ConnectionReport {
        let mut report = ConnectionReport::default();
        let user_name = format!("load-{}", self.index);
        let found = {
            let _permit = opening.acquire().await.unwrap();
            send(self.client.get(filter_url(&self.base, &user_name)), None).await
        };
        let _ = opened.send(()).await;
        let id = match found.as_ref().map(|r| (r.status, r.json())) {
            Ok((200, body)) if body["totalResults"] == 1 => {
                body["Resources"][0]["id"].as_str().map(str::to_string)
            }
            _ => None,
        };
        let Some(id) = id else {
            report.violations.push(format!(
                "connection {}: finding {user_name} got {found:?}",
                self.index
            ));
            return report;
        };
        let mut known = Known {
            id,
            title: SEEDED_TITLE.to_string(),
            extra: None,
            created: 0,
        };
        let mut jitter = Jitter::new(self.index as u64 + 1);
        // Spread the first requests over one think time, not all at once.
        let mut pause = jitter.between(Duration::ZERO, self.think.1);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.wait_for(|stop| *stop) => break,
            }
            let step = match jitter.percent() {
                0..45 => Step::Find,
                45..60 => Step::ReadBack,
                60..85 => Step::Update,
                85..95 if known.extra.is_some() => Step::Delete,
                85..95 => Step::Create,
                _ => Step::FindShared,
            };
            self.request(step, &user_name, &mut known, &mut report)
                .await;
            pause = jitter.between(self.think.0, self.think.1);
        }
        report
    }

    /// Sends one request and checks its answer against `known`, which it then updates.
    async fn request(
        &self,
        step: Step,
        user_name: &str,
        known: &mut Known,
        report: &mut ConnectionReport,
    ) {
        let users = format!("{}/Users", self.base);
        let extra_name = format!("{user_name}-extra-{}", known.created + 1);
        let new_title = format!("{user_name} update {}", report.samples.len());
        let extra = known.extra.clone().unwrap_or_default();
        let (request, body) = match step {
            Step::Find => (self.client.get(filter_url(&self.base, user_name)), None),
            Step::FindShared => (self.client.get(filter_url(&self.base, "alice")), None),
            Step::ReadBack => (self.client.get(format!("{users}/{}", known.id)), None),
            Step::Update => (
                self.client.patch(format!("{users}/{}", known.id)),
                Some(title_patch(&new_title)),
            ),
            Step::Create => (
                self.client.post(&users),
                Some(user_body(&extra_name, "extra")),
            ),
            Step::Delete => (self.client.delete(format!("{users}/{extra}")), None),
        };
        let started = Instant::now();
        let outcome = send(request, body.as_ref()).await;
        report.samples.push(Sample {
            step,
            took: started.elapsed(),
            outcome: outcome.as_ref().map(|r| r.status).map_err(Clone::clone),
        });
        let reply = match outcome {
            Ok(r) if r.status == step.expected_status() => r,
            Ok(r) if is_refusal(&r) => return,
            other => {
                report
                    .violations
                    .push(format!("connection {} {step:?}: {other:?}", self.index));
                return;
            }
        };
        let body = reply.json();
        let contradiction = match step {
            Step::Find | Step::FindShared if body["totalResults"] != 1 => {
                Some("the user is not found exactly once")
            }
            Step::Find if body["Resources"][0]["title"].as_str() != Some(known.title.as_str()) => {
                Some("does not show the last acknowledged update")
            }
            Step::ReadBack if body["title"].as_str() != Some(known.title.as_str()) => {
                Some("does not show the last acknowledged update")
            }
            _ => None,
        };
        if let Some(what) = contradiction {
            report.violations.push(format!(
                "connection {} {step:?}: {what} ({:?}): {body}",
                self.index, known.title
            ));
        }
        match step {
            Step::Update => known.title = new_title,
            Step::Create => {
                known.created += 1;
                known.extra = body["id"].as_str().map(str::to_string);
            }
            Step::Delete => known.extra = None,
            _ => {}
        }
    }
}

/// The `q` quantile (0..=1) of `sorted` (nearest rank).
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
