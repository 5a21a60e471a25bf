//! Workload identity: which process, which service, which container, which
//! pod and service account an event belongs to.
//!
//! Input: the process-lifecycle and cgroup records of `probes/process.rs`
//! (exec, fork, exit, cgroup mkdir), and the [`Task`] every sensor event
//! carries, captured in the kernel at event time. Output: one lookup,
//! [`Identity::workload`], used by the pipeline for every event with a task,
//! and the typed workload it sets on that event's record
//! ([`Identity::typed_workload`], [`Identity::typed_consumer`]).
//!
//! Invariants:
//! - processes are keyed by (tgid, start time): a reused pid is a new entry;
//! - the cgroup (so unit, container and pod) comes from the event's own
//!   cgroup id, not from the process table: a process moved between cgroups
//!   is named by where it was when the event happened;
//! - everything is bounded (process table, cgroup and pod caches, user
//!   names), and the table reconciles against /proc so lost exit records
//!   cannot make it grow;
//! - secrets (argv values, environments, service-account tokens) stay in
//!   [`crate::secret::Secret`]; only masked arguments, variable names and
//!   decoded non-secret claims come out.
//!
//! Layout: `table` (process table), `proc` (/proc scan, look-ups,
//! reconciliation), `cgroup` (ids to paths to unit/container/pod), `k8s`
//! (service-account token claims), `env` (environment credentials), `args`
//! (argv masking), `users` (uid to name).
use std::{
    num::NonZeroUsize,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    clock::BootClock,
    decode::{CgroupMkdir, ProcessExec, ProcessExit, ProcessFork, Task},
    model::Consumer,
    secret::Secret,
    stats::Stats,
};

pub mod args;
pub mod cgroup;
pub mod env;
pub mod k8s;
pub mod proc;
pub mod table;
mod users;

use cgroup::{CgroupInfo, Cgroups};
use k8s::{Pods, SaClaims};
use table::{Origin, ProcKey, ProcessEntry, ProcessTable};

/// Exited processes stay this long (boot time) for events still in flight.
const EXITED_GRACE_NS: u64 = 10_000_000_000;
/// Ancestors listed in `nhi.process.ancestors`.
const MAX_ANCESTORS: usize = 8;
const CGROUP_CACHE: usize = 16_384;
const POD_CACHE: usize = 4_096;

/// Settings (the `[process]` section of the config).
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    pub capture_args: bool,
    pub table_capacity: NonZeroUsize,
    pub reconcile_interval: Duration,
    pub stats_interval: Duration,
}

pub struct Identity {
    cfg: IdentityConfig,
    table: ProcessTable,
    cgroups: Cgroups,
    pods: Pods,
    users: users::Users,
    clock: BootClock,
    stats: Arc<Stats>,
    last_reconcile: Instant,
    last_stats: Instant,
}

/// Everything known about the workload behind one event.
#[derive(Debug, Clone, Default)]
pub struct Workload {
    pub process: Option<ProcessEntry>,
    pub ancestors: Vec<String>,
    pub creation_time: Option<std::time::SystemTime>,
    pub user_name: Option<Arc<str>>,
    pub cgroup: Option<Arc<CgroupInfo>>,
    pub service_account: Option<Arc<SaClaims>>,
}

impl Identity {
    /// Scans /proc and the cgroup tree. Runs before the probes attach.
    pub fn new(cfg: IdentityConfig, stats: Arc<Stats>) -> Self {
        let tick = proc::ns_per_tick();
        let mut me = Self {
            table: ProcessTable::new(cfg.table_capacity, tick),
            cgroups: Cgroups::new(NonZeroUsize::new(CGROUP_CACHE).unwrap_or(NonZeroUsize::MIN)),
            pods: Pods::new(NonZeroUsize::new(POD_CACHE).unwrap_or(NonZeroUsize::MIN)),
            users: users::Users::default(),
            clock: BootClock::new(),
            stats,
            last_reconcile: Instant::now(),
            last_stats: Instant::now(),
            cfg,
        };
        let scanned = proc::scan(tick, me.cfg.capture_args);
        let n = scanned.len();
        for (mut entry, cgroup_path) in scanned {
            entry.cgroup_id = cgroup_path.and_then(|p| me.cgroups.dir_id(&p)).unwrap_or(0);
            me.table.insert(entry);
        }
        tracing::info!(
            processes = n,
            table = me.table.len(),
            capacity = me.table.capacity(),
            cgroups = me.cgroups.len(),
            cgroup2 = ?me.cgroups.mount(),
            "process table loaded from /proc"
        );
        me.publish_stats();
        me
    }

    pub fn on_exec(&mut self, ev: &ProcessExec) {
        let key = key_of(&ev.task);
        let parent_key = self.table.get_mut(key).and_then(|e| e.parent);
        let parent = parent_key.or_else(|| self.table.key_of(ev.task.ppid).filter(|k| k.tgid != key.tgid));
        let capture_args = self.cfg.capture_args;
        let fill = |e: &mut ProcessEntry| {
            e.coarse = false;
            e.origin = Origin::Exec;
            e.parent = parent;
            e.ppid = ev.task.ppid;
            e.uid = ev.task.uid;
            e.gid = ev.task.gid;
            // The name changes at exec; the string is shared when it did not.
            if *e.comm != *ev.task.comm {
                e.comm = ev.task.comm.as_str().into();
            }
            e.cgroup_id = ev.task.cgroup_id;
            e.exe = ev.exe.as_ref().map(|w| Arc::from(w.path.to_string_lossy()));
            let filename = ev.filename.to_string_lossy();
            e.exec_path = (!filename.is_empty() && e.exe.as_deref() != Some(&*filename)).then(|| Arc::from(filename));
            e.tty = ev.tty.as_deref().map(|t| Arc::from(proc::kernel_tty_name(t)));
            (e.args, e.args_truncated) =
                if capture_args { (Some(Arc::from(args::mask(&ev.args))), ev.args_truncated) } else { (None, false) };
            e.exited = None;
        };
        // The fork record made the entry: rewritten in place (a new entry
        // in its place cost an allocation and two more hash-table updates
        // per exec).
        if let Some(e) = self.table.get_mut(key).filter(|e| e.key == key) {
            fill(e);
            return;
        }
        let mut e = ProcessEntry::new(key, Origin::Exec);
        fill(&mut e);
        self.table.remove(&key);
        self.table.insert(e);
    }

    pub fn on_fork(&mut self, ev: &ProcessFork) {
        let parent_key = key_of(&ev.parent);
        let child_key = ProcKey { tgid: ev.child_tgid, start_boot_ns: ev.child_start_boot_ns };
        let mut child = match self.table.get(parent_key) {
            Some(p) => {
                let mut c = p.clone();
                c.key = child_key;
                c.coarse = false;
                c.exited = None;
                c
            }
            None => {
                let mut c = ProcessEntry::new(child_key, Origin::Fork);
                fill_from_task(&mut c, &ev.parent);
                c
            }
        };
        child.origin = Origin::Fork;
        child.ppid = ev.parent.tgid;
        child.parent = Some(self.table.key_of(ev.parent.tgid).unwrap_or(parent_key));
        child.cgroup_id = ev.child_cgroup_id;
        self.table.insert(child);
    }

    pub fn on_exit(&mut self, ev: &ProcessExit) {
        if let Some(e) = self.table.get_mut(ProcKey { tgid: ev.tgid, start_boot_ns: ev.start_boot_ns }) {
            e.exited = Some(ev.boot_ns);
        }
    }

    pub fn on_cgroup_mkdir(&mut self, ev: &CgroupMkdir) {
        if !ev.path_truncated {
            self.cgroups.insert(ev.cgroup_id, ev.path.clone());
        }
    }

    /// The environment of an exec for credential detection: the kernel's
    /// copy, or, when the kernel had to cut it, the whole block from /proc
    /// while the process still runs. The flag says whether the result is cut.
    /// (The kernel's copy is borrowed, not cloned: this runs for every exec.)
    pub fn exec_environment<'e>(&self, ev: &'e ProcessExec) -> (std::borrow::Cow<'e, Secret>, bool) {
        if ev.env_truncated
            && let Some(full) = proc::environ(key_of(&ev.task), self.table.ns_per_tick())
        {
            return (std::borrow::Cow::Owned(full), false);
        }
        (std::borrow::Cow::Borrowed(&ev.env), ev.env_truncated)
    }

    /// The one lookup: the workload behind an event's task.
    pub fn workload(&mut self, task: &Task) -> Workload {
        let key = key_of(task);
        if self.table.get(key).is_none() {
            self.learn(task);
        }
        let process = self.table.get(key).cloned();
        let ancestors = self
            .table
            .ancestors(key, MAX_ANCESTORS)
            .iter()
            .map(|a| format!("{} {}", a.key.tgid, a.exe.as_deref().unwrap_or(&a.comm)))
            .collect();
        let creation_time = (task.start_boot_ns != 0).then(|| self.clock.wall_time(task.start_boot_ns));
        let user_name = self.users.name(task.uid);
        let cgroup = self.cgroups.resolve(task.cgroup_id, task.tgid);
        let service_account = match cgroup.as_ref().and_then(|c| c.workload.pod_uid.clone().map(|u| (u, c.clone()))) {
            Some((pod_uid, info)) => {
                let cgroups = &self.cgroups;
                let tgid = task.tgid;
                self.pods.lookup(&pod_uid, || {
                    let mut pids = vec![tgid];
                    if let Some(pod_dir) = &info.workload.pod_cgroup {
                        pids.extend(cgroups.pids_under(pod_dir, k8s::MAX_CANDIDATES));
                    }
                    pids.dedup();
                    pids
                })
            }
            None => None,
        };
        Workload { process, ancestors, creation_time, user_name, cgroup, service_account }
    }

    /// A task opened a service-account token path: if its pod had no
    /// readable token when last looked up, look again at its next event.
    pub fn token_opened(&mut self, task: &Task) {
        if let Some(uid) = self.cgroups.resolve(task.cgroup_id, task.tgid).and_then(|c| c.workload.pod_uid.clone()) {
            self.pods.token_opened(&uid);
        }
    }

    /// The task's ancestors' keys, nearest first (up to `depth`), for the
    /// correlator: a credential read by a parent is used by its children.
    pub fn ancestor_keys(&mut self, task: &Task, depth: usize) -> Vec<ProcKey> {
        let key = key_of(task);
        if self.table.get(key).is_none() {
            self.learn(task);
        }
        self.table.ancestors(key, depth).iter().map(|a| a.key).collect()
    }

    /// The typed workload of `task`'s process; fills in the `process`'s
    /// parent and executable where the kernel did not capture them.
    pub fn typed_workload(
        &mut self,
        task: &Task,
        process: &mut crate::model::records::Process,
    ) -> crate::model::records::Workload {
        let w = self.workload(task);
        w.fill_process(process);
        w.typed()
    }

    /// [`Identity::typed_workload`], and the typed consumer of the same
    /// workload (`exe`: the executable path the event carries, if any).
    pub fn typed_consumer(
        &mut self,
        task: &Task,
        exe: Option<&crate::decode::WalkedPath>,
        process: &mut crate::model::records::Process,
    ) -> (crate::model::records::Workload, Consumer) {
        let w = self.workload(task);
        w.fill_process(process);
        (w.typed(), w.consumer_with(task, exe_text(exe, process)))
    }

    /// A process the table does not know: from /proc if it is still the same
    /// process, else from what the event's task carries.
    fn learn(&mut self, task: &Task) {
        let key = key_of(task);
        let tick = self.table.ns_per_tick();
        let entry = match proc::read_process(task.tgid, Some(task.start_boot_ns), tick, self.cfg.capture_args) {
            Some((mut e, _)) => {
                e.key = key;
                e.coarse = false;
                e.cgroup_id = task.cgroup_id;
                e
            }
            None => {
                let mut e = ProcessEntry::new(key, Origin::Task);
                fill_from_task(&mut e, task);
                e
            }
        };
        self.table.insert(entry);
    }

    /// Periodic work: expire exited entries, reconcile against /proc, log
    /// and publish the table's size. Cheap when nothing is due.
    pub fn maintain(&mut self) {
        let now_ns = boot_now_ns();
        self.table.expire(now_ns, EXITED_GRACE_NS);
        if self.last_reconcile.elapsed() >= self.cfg.reconcile_interval {
            self.last_reconcile = Instant::now();
            let tick = self.table.ns_per_tick();
            let removed = self.table.reconcile(|e| proc::alive(e.key, tick));
            if removed > 0 {
                tracing::debug!(removed, "process table: removed processes whose exit record was lost");
            }
        }
        self.publish_stats();
        if self.last_stats.elapsed() >= self.cfg.stats_interval {
            self.last_stats = Instant::now();
            let c = self.table.counters;
            tracing::info!(
                process_table = self.table.len(),
                capacity = self.table.capacity(),
                evicted = c.evicted,
                expired = c.expired,
                reconciled = c.reconciled,
                cgroups = self.cgroups.len(),
                cgroups_unresolved = self.cgroups.unresolved,
                sa_tokens_read = self.pods.tokens_read,
                sa_token_errors = self.pods.token_errors,
                "identity stats"
            );
        }
    }

    fn publish_stats(&self) {
        let s = &self.stats;
        Stats::set(&s.process_table_size, self.table.len() as u64);
        Stats::set(&s.process_table_evicted, self.table.counters.evicted);
        Stats::set(&s.process_table_reconciled, self.table.counters.reconciled);
    }
}

fn key_of(task: &Task) -> ProcKey {
    ProcKey { tgid: task.tgid, start_boot_ns: task.start_boot_ns }
}

fn fill_from_task(e: &mut ProcessEntry, task: &Task) {
    e.ppid = task.ppid;
    e.uid = task.uid;
    e.gid = task.gid;
    e.comm = task.comm.as_str().into();
    e.cgroup_id = task.cgroup_id;
}

use crate::clock::boot_now_ns;

/// The kernel's executable path (`exe`) as text: the record's process has
/// the same walk as text already (`Process::new`), copied when it is that
/// walk rather than converted again.
fn exe_text(exe: Option<&crate::decode::WalkedPath>, process: &crate::model::records::Process) -> Option<String> {
    exe.map(|e| match &process.executable_path {
        Some(text) if text.as_bytes() == e.path.as_encoded_bytes() => text.clone(),
        _ => e.lossy(),
    })
}

impl Workload {
    /// The values that name this workload as a credential's consumer, as
    /// the record of an event shows them: the executable path the kernel
    /// captured with the event (`exe`) when there is one, else the process
    /// table's.
    pub fn consumer(&self, task: &Task, exe: Option<&crate::decode::WalkedPath>) -> Consumer {
        self.consumer_with(task, exe.map(crate::decode::WalkedPath::lossy))
    }

    /// [`Workload::consumer`], with the kernel's executable path already as
    /// text (`exe`).
    fn consumer_with(&self, task: &Task, exe: Option<String>) -> Consumer {
        let process = self.process.as_ref();
        let executable_path = exe.or_else(|| process.and_then(|p| p.exe.as_deref().map(str::to_owned)));
        let cgroup = self.cgroup.as_ref().map(|c| &c.workload);
        Consumer {
            executable_path,
            user_id: Some(task.uid),
            user_name: self.user_name.as_deref().map(str::to_owned),
            interactive: process.map(|p| p.tty.is_some()),
            systemd_unit: cgroup.and_then(|w| w.systemd_unit.clone()),
            container_id: cgroup.and_then(|w| w.container_id.clone()),
            container_runtime: cgroup.and_then(|w| w.container_runtime).map(str::to_owned),
            namespace: self.service_account.as_ref().map(|sa| sa.namespace.clone()),
            service_account: self.service_account.as_ref().map(|sa| format!("{}/{}", sa.namespace, sa.service_account)),
        }
    }

    /// This workload as records show it.
    pub fn typed(&self) -> crate::model::records::Workload {
        let process = self.process.as_ref();
        let cgroup = self.cgroup.as_ref();
        let w = cgroup.map(|c| &c.workload);
        let sa = self.service_account.as_ref();
        crate::model::records::Workload {
            exec_path: process.and_then(|p| p.exec_path.as_deref().map(String::from)),
            command_args: process.and_then(|p| p.args.as_ref().map(|a| a.to_vec())),
            command_args_truncated: process.is_some_and(|p| p.args.is_some() && p.args_truncated),
            group_id: process.map(|p| p.gid),
            interactive: process.map(|p| p.tty.is_some()),
            tty: process.and_then(|p| p.tty.as_deref().map(String::from)),
            creation_time: self.creation_time.map(crate::model::rfc3339),
            ancestors: self.ancestors.clone(),
            user_name: self.user_name.as_deref().map(str::to_owned),
            cgroup_path: cgroup.map(|c| c.path.clone()),
            systemd_unit: w.and_then(|w| w.systemd_unit.clone()),
            container_id: w.and_then(|w| w.container_id.clone()),
            container_runtime: w.and_then(|w| w.container_runtime).map(str::to_owned),
            pod_uid: w.and_then(|w| w.pod_uid.clone()).or_else(|| sa.and_then(|sa| sa.pod_uid.clone())),
            namespace: sa.map(|sa| sa.namespace.clone()),
            pod_name: sa.and_then(|sa| sa.pod_name.clone()),
            service_account: sa.map(|sa| format!("{}/{}", sa.namespace, sa.service_account)),
            service_account_uid: sa.and_then(|sa| sa.service_account_uid.clone()),
            node_name: sa.and_then(|sa| sa.node_name.clone()),
            token_issuer: sa.and_then(|sa| sa.issuer.clone()),
            token_expires: sa
                .and_then(|sa| sa.expires)
                .and_then(|exp| u64::try_from(exp).ok())
                .map(|t| crate::model::rfc3339(std::time::UNIX_EPOCH + Duration::from_secs(t))),
        }
    }

    /// Fills in the process's parent and executable where the kernel did
    /// not capture them, from the process table.
    pub fn fill_process(&self, process: &mut crate::model::records::Process) {
        if let Some(p) = &self.process {
            if process.parent_pid.is_none() && p.ppid != 0 {
                process.parent_pid = Some(p.ppid);
            }
            if process.executable_path.is_none() {
                process.executable_path = p.exe.as_deref().map(str::to_owned);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        decode::WalkedPath,
        model::{CONSUMER_KEYS, Value},
    };

    fn task() -> Task {
        Task { tgid: 10, pid: 11, ppid: 1, uid: 1000, gid: 1000, cgroup_id: 5, start_boot_ns: 7, comm: "aws".into() }
    }

    fn workload(pod: bool) -> Workload {
        let mut p = ProcessEntry::new(key_of(&task()), Origin::Task);
        p.exe = Some("/usr/bin/aws-from-table".into());
        p.tty = Some("pts/1".into());
        let mut cgroup = CgroupInfo::new(5, "/kubepods/pod1/c1".into());
        cgroup.workload.container_id = Some("c1".into());
        cgroup.workload.container_runtime = Some("containerd");
        cgroup.workload.systemd_unit = Some("x.service".into());
        Workload {
            process: Some(p),
            ancestors: vec!["1 /sbin/init".into()],
            creation_time: None,
            user_name: Some(Arc::from("alice")),
            cgroup: Some(Arc::new(cgroup)),
            service_account: pod.then(|| {
                Arc::new(SaClaims {
                    namespace: "ns".into(),
                    service_account: "sa".into(),
                    service_account_uid: None,
                    pod_name: Some("pod-1".into()),
                    pod_uid: None,
                    node_name: None,
                    issuer: None,
                    expires: None,
                })
            }),
        }
    }

    /// The typed consumer is what the record shows for the same names: the
    /// correlator keys usages by it, and `nhi.usage` records list it.
    #[test]
    fn the_consumer_is_what_the_record_shows() {
        let kernel_exe = WalkedPath { path: "/usr/bin/aws".into(), complete: true };
        for (pod, exe) in [(false, Some(&kernel_exe)), (true, Some(&kernel_exe)), (false, None)] {
            let w = workload(pod);
            let mut process = crate::model::records::Process::new(&task(), exe);
            w.fill_process(&mut process);
            let mut a = Vec::new();
            crate::model::render::append(&process, &mut a);
            crate::model::render::append(&w.typed(), &mut a);
            let consumer = w.consumer(&task(), exe);
            let shown: Vec<(&str, Value)> = CONSUMER_KEYS
                .iter()
                .filter(|k| !(pod && **k == "container.id"))
                .filter_map(|k| a.iter().find(|(x, _)| x == k).map(|(_, v)| (*k, v.clone())))
                .collect();
            assert_eq!(consumer.attributes(), shown, "pod: {pod}, kernel exe: {}", exe.is_some());
            assert_eq!(shown.len(), if pod { 8 } else { 7 });
            assert_eq!(w.consumer_with(&task(), exe_text(exe, &process)), consumer);
        }
        // Not the walk the process shows, or not UTF-8: converted.
        use std::os::unix::ffi::OsStringExt;
        let odd = WalkedPath { path: std::ffi::OsString::from_vec(b"/opt/\xffx".to_vec()), complete: true };
        let mut other = crate::model::records::Process::new(&task(), Some(&kernel_exe));
        assert_eq!(exe_text(Some(&odd), &other).as_deref(), Some("/opt/\u{fffd}x"));
        other.executable_path = Some("/usr/bin/other".into());
        assert_eq!(exe_text(Some(&kernel_exe), &other).as_deref(), Some("/usr/bin/aws"));
        assert_eq!(exe_text(None, &other), None);
    }
}
