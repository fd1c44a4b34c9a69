//! The two-host lab (`pair-up.sh`): hosts `a` and `b`, each a [`Lab`] (so `exec`, `virsh`,
//! `install_hook`, … work on either), brought up and torn down together under one host-wide
//! lock held by one guardian, which runs `pair-down.sh` when the test process goes away.
//!
//! `let Some(pair) = Pair::up("trixie") else { return };` then `pair.a`, `pair.b`. Migrate with
//! `virsh migrate --live NAME` + [`Pair::uri`] of the destination + `--migrateuri`
//! [`Pair::migrate_uri`] (libvirt's UNIX-socket transport through the pair's shared directory).

use super::{announce, bin_dir, in_ci, lab_src, selected_suites, target_dir, Lab, Options};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
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
        if std::env::var("VIRT_SYSTEMD_LAB").as_deref() == Ok("skip") {
            if in_ci() {
                announce("lab: VIRT_SYSTEMD_LAB=skip is ignored in CI (CI=true)");
            } else {
                announce(&format!(
                    "SKIPPED {what}: VIRT_SYSTEMD_LAB=skip (lab tests did NOT run)"
                ));
                return None;
            }
        }
        match Self::start(opts) {
            Ok(p) => Some(p),
            Err(reason) => panic!("{what} could not come up: {reason}"),
        }
    }

    fn start(opts: Options) -> Result<Pair, String> {
        let one_lab = super::ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
        let host_b = HOST_B.lock().unwrap_or_else(|e| e.into_inner());
        let root = fs::read_to_string("/proc/self/status").is_ok_and(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1))
                == Some("0")
        });
        if !root {
            return Err(
                "the lab needs root; set VIRT_SYSTEMD_LAB=skip to opt out outside CI".into(),
            );
        }
        let lab_dir = target_dir().join("lab");
        let state = lab_dir.join(format!("state-{}-pair", opts.suite));
        fs::create_dir_all(&state).map_err(|e| format!("{}: {e}", state.display()))?;
        let lock = std::env::var("LAB_LOCK")
            .unwrap_or_else(|_| "/run/lock/virt-systemd-lab.lock".to_string());
        if let Some(dir) = Path::new(&lock).parent() {
            let _ = fs::create_dir_all(dir);
        }
        let env = [
            ("SUITE", opts.suite.clone()),
            ("LAB_DIR", lab_dir.display().to_string()),
            ("LAB_BIN_DIR", bin_dir().display().to_string()),
            (
                "LAB_LIBVIRT_CGROUPS",
                (opts.libvirt_cgroups as u8).to_string(),
            ),
            ("LAB_LOCK", lock.clone()),
            ("LAB_LOCK_HELD", "1".to_string()),
            ("LAB_FRESH", "1".to_string()),
        ];
        let guardian_log = state.join("guardian.log");
        let waiting = Instant::now();
        // As Lab's guardian, with pair-down.sh (see mod.rs).
        let script = r#"trap '' INT HUP TERM PIPE
echo locked
while read -r _; do :; done
exec "$0/pair-down.sh" >> "$1" 2>&1"#;
        let mut cmd = Command::new("flock");
        cmd.arg("-w")
            .arg("1800")
            .arg(&lock)
            .args(["bash", "-c", script])
            .arg(lab_src())
            .arg(&guardian_log)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut guardian = cmd
            .spawn()
            .map_err(|e| format!("cannot run flock (util-linux): {e}"))?;
        let guardian_stdin = guardian.stdin.take();
        let _ = fs::write(&guardian_log, "");
        let (got_lock, lock_rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn({
            let lock = lock.clone();
            move || {
                if lock_rx.recv_timeout(Duration::from_secs(5)).is_err() {
                    announce(&format!("lab: waiting for the host-wide lab lock {lock}"));
                }
            }
        });
        let mut first = String::new();
        BufReader::new(guardian.stdout.take().expect("piped"))
            .read_line(&mut first)
            .map_err(|e| format!("lab lock guardian: {e}"))?;
        let _ = got_lock.send(());
        if waiting.elapsed() > Duration::from_secs(5) {
            announce(&format!(
                "lab: got the lab lock after {:.1} s",
                waiting.elapsed().as_secs_f64()
            ));
        }
        if first.trim() != "locked" {
            let _ = guardian.wait();
            return Err(format!("could not take the host-wide lab lock {lock}"));
        }
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
        let up = Command::new(lab_src().join("pair-up.sh"))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run pair-up.sh: {e}"))?;
        pair.bring_up = t0.elapsed();
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&up.stdout),
            String::from_utf8_lossy(&up.stderr)
        );
        eprint!("{log}");
        if !up.status.success() {
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(format!(
                "pair-up.sh failed ({}):\n{}",
                up.status,
                tail.join("\n")
            ));
        }
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
