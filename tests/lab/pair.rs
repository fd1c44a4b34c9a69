//! The two-host lab (`pair-up.sh`): hosts `a` and `b`, each a [`Lab`] (so `exec`, `virsh`,
//! `install_hook`, … work on either), brought up and torn down together under one host-wide
//! lock held by one guardian, which runs `pair-down.sh` when the test process goes away.
//!
//! `let Some(pair) = Pair::up("trixie") else { return };` then `pair.a`, `pair.b`. Migrate with
//! `virsh migrate --live NAME` + [`Pair::uri`] of the destination + `--migrateuri`
//! [`Pair::migrate_uri`] (libvirt's UNIX-socket transport through the pair's shared directory).

use super::{announce, selected_suites, target_dir, Lab, Options};
use std::fs;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The suite of the two-host lab when `LAB_SUITES` is not set (what CI gates on).
pub const PAIR_DEFAULT_SUITE: &str = "trixie";

/// The pair's shared directory inside both hosts.
pub const CT_PAIR: &str = "/srv/vsd-lab";

/// Host b's stand-in for the test-binary-wide mutex that host a holds (`Lab` keeps one guard).
static HOST_B: Mutex<()> = Mutex::new(());

/// Two lab hosts of one suite. Dropping the pair tears both down.
pub struct Pair {
    pub a: Lab,
    pub b: Lab,
    guardian: Option<Child>,
    guardian_stdin: Option<ChildStdin>,
    guardian_log: PathBuf,
    /// How long `pair-up.sh` took (both hosts, not counting the wait for the lock).
    pub bring_up: Duration,
    started: Instant,
    suite: String,
}

impl Pair {
    /// `qemu+unix` URI of `host`'s (`"a"` or `"b"`) libvirtd, as the other host reaches it.
    pub fn uri(host: &str) -> String {
        format!("qemu+unix:///system?socket={CT_PAIR}/{host}/libvirt/libvirt-sock")
    }

    /// A migration URI for libvirt's UNIX-socket transport: the same path on both hosts.
    pub fn migrate_uri(name: &str) -> String {
        format!("unix://{CT_PAIR}/mig/{name}.sock")
    }

    /// Bring up both hosts of `suite`; `None` when the suite is not selected or the lab is
    /// opted out (`VIRT_SYSTEMD_LAB=skip` outside CI), as [`Lab::up`]. Without `LAB_SUITES`
    /// only [`PAIR_DEFAULT_SUITE`] runs: a pair session is the costliest lab session.
    pub fn up(suite: &str) -> Option<Pair> {
        Self::up_with(Options::new(suite))
    }

    /// [`Pair::up`] with options: `libvirt_cgroups` holds for both hosts (`by_default` is
    /// not used: see [`PAIR_DEFAULT_SUITE`]).
    pub fn up_with(opts: Options) -> Option<Pair> {
        let what = format!(
            "lab pair {} (LAB_LIBVIRT_CGROUPS={})",
            opts.suite, opts.libvirt_cgroups as u8
        );
        let default = std::env::var("LAB_SUITES").map_or(true, |v| v.trim().is_empty());
        let selected = if default {
            opts.suite == PAIR_DEFAULT_SUITE
        } else {
            selected_suites().contains(&opts.suite)
        };
        if !selected {
            let chosen = if default {
                format!("LAB_SUITES unset: the pair runs {PAIR_DEFAULT_SUITE}")
            } else {
                format!("LAB_SUITES={}", selected_suites().join(","))
            };
            announce(&format!("SKIPPED {what}: suite not selected ({chosen})"));
            return None;
        }
        if super::opted_out(&what) {
            return None;
        }
        match Self::start(opts) {
            Ok(p) => Some(p),
            Err(reason) => panic!("{what} could not come up: {reason}"),
        }
    }

    fn start(opts: Options) -> Result<Pair, String> {
        let one_lab = super::ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
        let host_b = HOST_B.lock().unwrap_or_else(|e| e.into_inner());
        super::need_root()?;
        let lab_dir = target_dir().join("lab");
        let state = lab_dir.join(format!("state-{}-pair", opts.suite));
        fs::create_dir_all(&state).map_err(|e| format!("{}: {e}", state.display()))?;
        let (env, lock) = super::script_env(&opts);
        let guardian_log = state.join("guardian.log");
        let (guardian, guardian_stdin) =
            super::take_lock(&lock, &env, &guardian_log, "pair-down.sh")?;
        let t0 = Instant::now();
        let host = |name: &'static str, guard| Lab {
            opts: opts.clone(),
            env: env
                .iter()
                .cloned()
                .chain([("LAB_HOST", name.to_string())])
                .collect(),
            leader: 0,
            guardian: None,
            guardian_stdin: None,
            guardian_log: guardian_log.clone(),
            bring_up: Duration::ZERO,
            started: t0,
            _one_lab: guard,
        };
        let mut pair = Pair {
            a: host("a", one_lab),
            b: host("b", host_b),
            guardian: Some(guardian),
            guardian_stdin,
            guardian_log: guardian_log.clone(),
            bring_up: Duration::ZERO,
            started: t0,
            suite: opts.suite.clone(),
        };
        let up = super::run_up("pair-up.sh", &env);
        pair.bring_up = t0.elapsed();
        up?;
        for (lab, h) in [(&mut pair.a, "a"), (&mut pair.b, "b")] {
            let f = lab_dir.join(format!("state-{}-{h}/leader.pid", opts.suite));
            let leader = fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
            lab.leader = leader
                .trim()
                .parse()
                .map_err(|e| format!("bad {}: {leader:?}: {e}", f.display()))?;
            lab.bring_up = pair.bring_up;
        }
        announce(&format!(
            "lab pair {} up in {:.1} s ({})",
            opts.suite,
            pair.bring_up.as_secs_f64(),
            pair.a.versions().replace('\n', "; ")
        ));
        Ok(pair)
    }

    /// Tear both hosts down now; Ok(pair-down's output) when nothing was left behind.
    pub fn down(mut self) -> Result<String, String> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<String, String> {
        let Some(mut guardian) = self.guardian.take() else {
            return Ok(String::new());
        };
        let t0 = Instant::now();
        drop(self.guardian_stdin.take());
        let status = guardian.wait();
        let mut log = String::new();
        if let Ok(mut f) = fs::File::open(&self.guardian_log) {
            let _ = f.read_to_string(&mut log);
        }
        if let Ok(mut h) = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.guardian_log.with_file_name("teardown-history.log"))
        {
            let _ = write!(h, "=== {:?}\n{log}", std::time::SystemTime::now());
        }
        announce(&format!(
            "lab pair {} down in {:.1} s (session {:.1} s)",
            self.suite,
            t0.elapsed().as_secs_f64(),
            self.started.elapsed().as_secs_f64()
        ));
        match status {
            Ok(s) if s.success() => Ok(log),
            Ok(s) => Err(format!("pair-down.sh {s}:\n{log}")),
            Err(e) => Err(format!("lab guardian: {e}\n{log}")),
        }
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            announce(&format!("lab pair {}: teardown problem: {e}", self.suite));
        }
    }
}

impl Lab {
    /// Start `argv` inside the container without waiting for it (e.g. a migration to act on
    /// while it runs); stdout and stderr piped.
    pub fn spawn(&self, argv: &[&str]) -> Child {
        self.ct_command(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("nsenter {argv:?}: {e}"))
    }
}
