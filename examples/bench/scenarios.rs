//! The measured operations, each once through the gateway and once as the equivalent LDAP
//! operation: find a user, create one, update three attributes, disable one, add a member to a
//! 10-member and to a huge group. Every operation gets data of its own (a new user name, a new
//! value, a user not yet disabled, a user not yet a member), so no operation is a no-op on either
//! side; what a run changed that would make the next one a no-op is undone after it, untimed.

use crate::entra::{
    add_members_body, add_members_mods, disable_body, disable_mods, mix, user_dn, user_filter_path,
    EntraUser, UserUpdate, PEOPLE,
};
use crate::runner::{run_pool, search_expecting, Conn, LdapOutcome, OpFuture, Side, Workload};
use crate::slapd::{BIG_GROUP_DN, SMALL_GROUP_DN};
use ldap3::controls::{Assertion, PostRead, RawControl};
use ldap3::{Ldap, Mod};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The directory the scenarios run on, as built by `directory::build`.
pub struct Directory {
    /// Users `bulk000000`…: all in the big group, the first 10 in the small one.
    pub users: usize,
    /// Users `pool000000`…, in no group: members to add to the big group.
    pub pool: usize,
    /// SCIM ids (entryUUID) of the bulk users, by number.
    pub bulk_ids: Vec<String>,
    pub pool_ids: Vec<String>,
    pub small_group_id: String,
    pub big_group_id: String,
    /// The attributes the gateway reads for a user list (from the demo config's mapping).
    pub user_read_attrs: Vec<String>,
    /// The demo config's `[mapping.users] filter`.
    pub user_filter: String,
    /// The demo config's `[mapping.groups] filter`.
    pub group_filter: String,
}

pub fn bulk_name(i: usize) -> String {
    format!("bulk{i:06}")
}

pub fn pool_name(i: usize) -> String {
    format!("pool{i:06}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Match,
    Create,
    Update,
    Disable,
    MemberSmall,
    MemberBig,
}

impl Scenario {
    pub const ALL: [Scenario; 6] = [
        Scenario::Match,
        Scenario::Create,
        Scenario::Update,
        Scenario::Disable,
        Scenario::MemberSmall,
        Scenario::MemberBig,
    ];

    /// The name on the command line (`membership` selects both group sizes).
    pub fn option(self) -> &'static str {
        match self {
            Scenario::Match => "match",
            Scenario::Create => "create",
            Scenario::Update => "update",
            Scenario::Disable => "disable",
            Scenario::MemberSmall | Scenario::MemberBig => "membership",
        }
    }

    /// The name in the report.
    pub fn label(self, dir: &Directory) -> String {
        match self {
            Scenario::MemberSmall => "membership (10)".to_string(),
            Scenario::MemberBig => format!("membership ({})", dir.users),
            other => other.option().to_string(),
        }
    }

    pub fn is_read(self) -> bool {
        self == Scenario::Match
    }

    /// The user operation `k` of a match (spread over the whole directory, the same sequence on
    /// both sides), update (the first half of the users, round robin) or disable (the second
    /// half, each once per run).
    pub fn user(self, dir: &Directory, k: usize) -> usize {
        let users = dir.users;
        match self {
            Scenario::Match => (mix(k as u64) % users as u64) as usize,
            Scenario::Update => k % (users / 2),
            Scenario::Disable => users / 2 + k,
            // The small group holds bulk000000..bulk000009 already.
            Scenario::MemberSmall => 10 + k,
            Scenario::Create | Scenario::MemberBig => k,
        }
    }

    /// Whether a run's requests name bulk users by id in a PATCH (update, disable). Entra reads a
    /// user before it patches it (the read-back it diffs against), so in a cycle the gateway has
    /// the user's DN from that read; the cell has the gateway read them first, untimed
    /// ([`ReadUsers`]), so that its PATCHes find what they would find there.
    pub fn patches_users(self) -> bool {
        matches!(self, Scenario::Update | Scenario::Disable)
    }

    /// How many operations one run may do before it runs out of fresh data.
    pub fn capacity(self, dir: &Directory) -> usize {
        match self {
            Scenario::Match | Scenario::Create | Scenario::Update => usize::MAX,
            Scenario::Disable => dir.users - dir.users / 2,
            Scenario::MemberSmall => dir.users - 10,
            Scenario::MemberBig => dir.pool,
        }
    }
}

/// One run of a scenario on one side. `run` is unique per run, so the names and values a run
/// writes are its own.
pub struct ScenarioRun {
    pub scenario: Scenario,
    pub side: Side,
    pub run: usize,
    pub dir: Arc<Directory>,
    /// Controls the direct side adds to its write (`controls` only; the cells send none).
    pub answer: Answer,
    /// Each direct `Resolved` member add in its two parts, timed apart: the member-id search
    /// and the asserted modify after it.
    pub parts: std::sync::Mutex<Vec<(Duration, Duration)>>,
}

/// Which of the controls that the gateway's one-operation PATCH carries a direct write adds:
/// the assertion that the entry is still the user with that id, and the post-read that returns
/// the entry for the SCIM answer (a create carries the post-read only: its answer has the id
/// the directory gave the entry). A membership add has its own: `Resolved`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Answer {
    Plain,
    Assertion,
    PostRead,
    Both,
    /// A member add as the gateway sends it: the member's id resolved by a search first (the
    /// direct side is handed the member's DN), then the group's modify asserted on the group's
    /// id or the member's (what `Members::member_tolerant_guard` writes for slapd's memberof
    /// overlay).
    Resolved,
}

impl Answer {
    pub const ALL: [Answer; 4] = [
        Answer::Plain,
        Answer::Assertion,
        Answer::PostRead,
        Answer::Both,
    ];

    /// Sets the controls on the next operation of `ldap`; a plain write gets none at all.
    fn attach(self, ldap: &mut Ldap, dir: &Directory, id: &str) {
        let controls = self.controls(dir, id);
        if !controls.is_empty() {
            ldap.with_controls(controls);
        }
    }

    fn controls(self, dir: &Directory, id: &str) -> Vec<RawControl> {
        let mut out = Vec::new();
        if matches!(self, Answer::Assertion | Answer::Both) {
            // As the gateway builds it: the users filter, the id, the attributes the general
            // path would fill when empty.
            let filter = format!("(&{}(entryUUID={id})(sn=*)(cn=*))", dir.user_filter);
            out.push(Assertion::new(&filter));
        }
        if matches!(self, Answer::PostRead | Answer::Both) {
            out.push(PostRead::new(dir.user_read_attrs.clone()));
        }
        out
    }
}

impl Workload for ScenarioRun {
    fn op<'a>(&'a self, conn: &'a mut Conn, k: usize) -> OpFuture<'a> {
        Box::pin(async move {
            match self.side {
                Side::Direct => {
                    if let Conn::Paired(_, http) = conn {
                        http.get("/ServiceProviderConfig", 200).await?;
                    }
                    self.direct(conn.ldap()?, k).await
                }
                Side::Gateway => self.gateway(conn, k).await,
            }
        })
    }
}

impl ScenarioRun {
    pub fn new(
        scenario: Scenario,
        side: Side,
        run: usize,
        dir: Arc<Directory>,
        answer: Answer,
    ) -> ScenarioRun {
        ScenarioRun {
            scenario,
            side,
            run,
            dir,
            answer,
            parts: Default::default(),
        }
    }

    fn tag(&self, k: usize) -> String {
        format!("{}{}-{k}", self.side.letter(), self.run)
    }

    fn user(&self, k: usize) -> usize {
        self.scenario.user(&self.dir, k)
    }

    async fn gateway(&self, conn: &Conn, k: usize) -> Result<(), String> {
        let http = conn.http()?;
        let dir = &self.dir;
        let i = self.user(k);
        match self.scenario {
            Scenario::Match => http
                .find(&user_filter_path(&bulk_name(i)), 1)
                .await
                .map(drop),
            Scenario::Create => {
                let user = EntraUser::new(format!("create-{}", self.tag(k)), k);
                http.create("/Users", &user.body()).await.map(drop)
            }
            Scenario::Update => {
                let update = UserUpdate::new(&bulk_name(i), &self.tag(k));
                let path = format!("/Users/{}", dir.bulk_ids[i]);
                http.patch(&path, &update.body()).await
            }
            Scenario::Disable => {
                let path = format!("/Users/{}", dir.bulk_ids[i]);
                http.patch(&path, &disable_body()).await
            }
            Scenario::MemberSmall => {
                let path = format!("/Groups/{}", dir.small_group_id);
                let body = add_members_body([dir.bulk_ids[i].as_str()]);
                http.patch(&path, &body).await
            }
            Scenario::MemberBig => {
                let path = format!("/Groups/{}", dir.big_group_id);
                http.patch(&path, &add_members_body([dir.pool_ids[i].as_str()]))
                    .await
            }
        }
    }

    async fn direct(&self, ldap: &mut Ldap, k: usize) -> Result<(), String> {
        let dir = &self.dir;
        let i = self.user(k);
        match self.scenario {
            Scenario::Match => {
                let filter = format!("(&{}(uid={}))", dir.user_filter, bulk_name(i));
                search_expecting(ldap, PEOPLE, &filter, &dir.user_read_attrs, 1)
                    .await
                    .map(drop)
            }
            Scenario::Create => {
                let user = EntraUser::new(format!("create-{}", self.tag(k)), k);
                let dn = user_dn(&user.user_name);
                self.answer.attach(ldap, dir, "");
                ldap.add(&dn, user.entry())
                    .await
                    .named(|| format!("add {dn}"))
            }
            Scenario::Update => {
                let dn = user_dn(&bulk_name(i));
                let mods = UserUpdate::new(&bulk_name(i), &self.tag(k)).mods();
                self.answer.attach(ldap, dir, &dir.bulk_ids[i]);
                ldap.modify(&dn, mods)
                    .await
                    .named(|| format!("modify {dn}"))
            }
            Scenario::Disable => {
                let dn = user_dn(&bulk_name(i));
                self.answer.attach(ldap, dir, &dir.bulk_ids[i]);
                ldap.modify(&dn, disable_mods())
                    .await
                    .named(|| format!("modify {dn}"))
            }
            Scenario::MemberSmall | Scenario::MemberBig => {
                let (group, group_id, name, id) = if self.scenario == Scenario::MemberSmall {
                    (
                        SMALL_GROUP_DN,
                        &dir.small_group_id,
                        bulk_name(i),
                        &dir.bulk_ids[i],
                    )
                } else {
                    (
                        BIG_GROUP_DN,
                        &dir.big_group_id,
                        pool_name(i),
                        &dir.pool_ids[i],
                    )
                };
                // As the gateway sends it, timed in its two parts: the search first.
                let search = if self.answer == Answer::Resolved {
                    // As `Members::resolve_ids` searches for one id.
                    let filter = format!("(&{}(|(entryUUID={id})))", dir.user_filter);
                    let attrs = ["entryUUID".to_string(), "uid".to_string()];
                    let started = Instant::now();
                    search_expecting(ldap, PEOPLE, &filter, &attrs, 1).await?;
                    let search = started.elapsed();
                    let guard = format!(
                        "(|(&{}(entryUUID={group_id}))(&{}(|(entryUUID={id}))))",
                        dir.group_filter, dir.user_filter
                    );
                    ldap.with_controls(vec![Assertion::new(&guard)]);
                    Some(search)
                } else {
                    None
                };
                let started = Instant::now();
                ldap.modify(group, add_members_mods([user_dn(&name)]))
                    .await
                    .named(|| format!("modify {group}"))?;
                if let Some(search) = search {
                    let modify = started.elapsed();
                    self.parts
                        .lock()
                        .expect("not poisoned")
                        .push((search, modify));
                }
                Ok(())
            }
        }
    }

    /// Undoes what the first `done` operations changed that would turn later ones into no-ops
    /// (disabled users, added members), with the rootdn connections `admins`.
    pub async fn undo(&self, admins: &[Conn], done: usize) -> Result<(), String> {
        let (group, members): (&str, Vec<String>) = match self.scenario {
            Scenario::Match | Scenario::Create | Scenario::Update => return Ok(()),
            Scenario::Disable => {
                let enable = Arc::new(Enable {
                    first: self.user(0),
                });
                return run_pool(admins, enable, done, None).await.map(drop);
            }
            Scenario::MemberSmall => (
                SMALL_GROUP_DN,
                (0..done)
                    .map(|k| user_dn(&bulk_name(self.user(k))))
                    .collect(),
            ),
            Scenario::MemberBig => (
                BIG_GROUP_DN,
                (0..done).map(|k| user_dn(&pool_name(k))).collect(),
            ),
        };
        if members.is_empty() {
            return Ok(());
        }
        let mut admin = admins[0].clone();
        let members: HashSet<String> = members.into_iter().collect();
        admin
            .ldap()?
            .modify(group, vec![Mod::Delete("member".to_string(), members)])
            .await
            .named(|| format!("removing the added members from {group}"))
    }
}

/// Enables `bulk<first + k>` again.
struct Enable {
    first: usize,
}

impl Workload for Enable {
    fn op<'a>(&'a self, conn: &'a mut Conn, k: usize) -> OpFuture<'a> {
        Box::pin(async move {
            let dn = user_dn(&bulk_name(self.first + k));
            let unlock = Mod::Delete("pwdAccountLockedTime".to_string(), HashSet::new());
            conn.ldap()?
                .modify(&dn, vec![unlock])
                .await
                .named(|| format!("enabling {dn} again"))
        })
    }
}

/// `GET /Users/<id>` of the users that operations `0..count` of a run of `scenario` patch: what
/// Entra's read-back before a PATCH gives the gateway (see [`Scenario::patches_users`]).
pub struct ReadUsers {
    paths: Vec<String>,
}

impl ReadUsers {
    pub fn new(scenario: Scenario, dir: &Directory, count: usize) -> ReadUsers {
        let mut seen = HashSet::new();
        let paths = (0..count)
            .map(|k| scenario.user(dir, k))
            .filter(|&i| seen.insert(i))
            .map(|i| format!("/Users/{}", dir.bulk_ids[i]))
            .collect();
        ReadUsers { paths }
    }

    pub fn len(&self) -> usize {
        self.paths.len()
    }
}

impl Workload for ReadUsers {
    fn op<'a>(&'a self, conn: &'a mut Conn, k: usize) -> OpFuture<'a> {
        Box::pin(async move { conn.http()?.get(&self.paths[k], 200).await.map(drop) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directory(users: usize) -> Directory {
        Directory {
            users,
            pool: 0,
            bulk_ids: (0..users).map(|i| format!("id{i}")).collect(),
            pool_ids: Vec::new(),
            small_group_id: String::new(),
            big_group_id: String::new(),
            user_read_attrs: Vec::new(),
            user_filter: String::new(),
            group_filter: String::new(),
        }
    }

    #[test]
    fn the_users_read_before_the_patches_are_those_the_patches_name_once_each() {
        let dir = directory(10);
        // A disable patches the second half, each user once per run.
        assert_eq!(
            ReadUsers::new(Scenario::Disable, &dir, 3).paths,
            ["/Users/id5", "/Users/id6", "/Users/id7"]
        );
        // An update goes round the first half: more operations than users read each once.
        assert_eq!(
            ReadUsers::new(Scenario::Update, &dir, 12).paths,
            [
                "/Users/id0",
                "/Users/id1",
                "/Users/id2",
                "/Users/id3",
                "/Users/id4"
            ]
        );
        assert!(Scenario::Update.patches_users() && Scenario::Disable.patches_users());
        assert!(!Scenario::Create.patches_users() && !Scenario::MemberSmall.patches_users());
    }
}
