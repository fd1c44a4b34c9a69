//! Rust side of the virt-systemd test lab (see `tests/lab/README.md`).
//!
//! Use from an integration test with `#[path = "lab/mod.rs"] mod lab;`, then
//! `let Some(lab) = lab::Lab::up("trixie") else { return };`. `up` returns `None` only when the
//! test must not run: its suite is not selected (`LAB_SUITES`), or the developer opted out with
//! `VIRT_SYSTEMD_LAB=skip` outside CI; both say so on stderr. Everything else that keeps the lab
//! from coming up fails the test with the reason.
//!
//! One lab at a time: a process-wide mutex serialises the test threads of one test binary, and a
//! host-wide `flock` (held by a small "guardian" process) serialises test binaries, other
//! checkouts and the scripts. The guardian also tears the lab down when the test process goes
//! away without running `Drop` (panic=abort, SIGKILL): it runs `lab-down.sh` once its stdin, a
//! pipe only this process holds, reaches end of file.
#![allow(dead_code)]

#[path = "../common/bins.rs"]
mod bins;
pub mod pair;
pub mod vsock;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Suites run when `LAB_SUITES` is not set (what CI gates on).
pub const DEFAULT_SUITES: &[&str] = &["trixie", "bookworm"];
/// Where the project's binaries appear inside the container.
pub const CT_BIN: &str = "/opt/virt-systemd/bin";
/// Where `tests/lab/` appears inside the container.
pub const CT_LAB: &str = "/opt/virt-systemd/lab";
/// Where the packages link the hook (libvirt ≥ 6.5 runs `qemu.d/*`).
pub const HOOK_LINK: &str = "/etc/libvirt/hooks/qemu.d/50-virt-systemd";
/// Guest images built on the host (`<target>/lab/images`) inside the container.
pub const CT_IMAGES: &str = "/opt/virt-systemd/images";
/// The guest kernel and the default tiny initramfs inside the container.
pub const CT_BOOT: &str = "/var/lib/libvirt/boot";
const CT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

static ONE_LAB: Mutex<()> = Mutex::new(());

/// `tests/lab/` in the source tree.
pub fn lab_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab")
}

/// The cargo target directory this test binary was built into.
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR has a parent")
        .to_path_buf()
}

/// Host directory of the freshly built binaries, the hook's and the libvirt helper's
/// included (bind-mounted at [`CT_BIN`]).
pub fn bin_dir() -> PathBuf {
    bins::dir().to_path_buf()
}

/// Path of a project binary inside the container.
pub fn ct_bin(name: &str) -> String {
    format!("{CT_BIN}/{name}")
}

/// Suites selected by `LAB_SUITES` (comma or space separated), else [`DEFAULT_SUITES`].
pub fn selected_suites() -> Vec<String> {
    match std::env::var("LAB_SUITES") {
        Ok(v) if !v.trim().is_empty() => v
            .split([',', ' '])
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        _ => DEFAULT_SUITES.iter().map(|s| s.to_string()).collect(),
    }
}

/// Say something on the terminal even while libtest captures the test's output (libtest only
/// captures the `print!` family, not writes to the stderr handle).
pub fn announce(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Settings of one lab session.
#[derive(Clone, Debug)]
pub struct Options {
    pub suite: String,
    /// `LAB_LIBVIRT_CGROUPS=1`: libvirt sees usable cgroups and registers `qemu-N-NAME` with
    /// machined itself; `false`: QEMU stays in libvirtd.service and libvirt does not register.
    pub libvirt_cgroups: bool,
    /// Run this session when `LAB_SUITES` is not set, whatever the suite: for the tests of
    /// features only the newest systemd has, which gate CI on sid (see [`NEWEST_SUITE`]).
    pub by_default: bool,
}

/// The suite with the newest systemd and libvirt, for what only they have (control
/// sockets: systemd ≥ 261). Its tests run by default too ([`Options::by_default`]).
pub const NEWEST_SUITE: &str = "sid";

impl Options {
    pub fn new(suite: &str) -> Self {
        Options {
            suite: suite.to_string(),
            libvirt_cgroups: false,
            by_default: false,
        }
    }
    pub fn by_default(mut self) -> Self {
        self.by_default = true;
        self
    }
    pub fn libvirt_cgroups(mut self, on: bool) -> Self {
        self.libvirt_cgroups = on;
        self
    }
}

/// A running lab container. Dropping it tears the lab down.
pub struct Lab {
    opts: Options,
    env: Vec<(&'static str, String)>,
    leader: u32,
    guardian: Option<Child>,
    guardian_stdin: Option<ChildStdin>,
    guardian_log: PathBuf,
    /// How long `lab-up.sh` took (not counting the wait for the lock).
    pub bring_up: Duration,
    started: Instant,
    _one_lab: MutexGuard<'static, ()>,
}

impl Lab {
    /// Bring up the lab of `suite` with default options (no libvirt cgroups).
    pub fn up(suite: &str) -> Option<Lab> {
        Self::up_with(Options::new(suite))
    }

    /// Bring up a lab; see the module documentation for when this returns `None`.
    pub fn up_with(opts: Options) -> Option<Lab> {
        let what = format!(
            "lab {} (LAB_LIBVIRT_CGROUPS={})",
            opts.suite, opts.libvirt_cgroups as u8
        );
        let default = std::env::var("LAB_SUITES").map_or(true, |v| v.trim().is_empty());
        let selected = selected_suites().contains(&opts.suite) || (default && opts.by_default);
        if !selected {
            announce(&format!(
                "SKIPPED {what}: suite not selected (LAB_SUITES={})",
                selected_suites().join(",")
            ));
            return None;
        }
        if opted_out(&what) {
            return None;
        }
        let one_lab = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
        match Self::start(opts, one_lab) {
            Ok(lab) => Some(lab),
            Err(reason) => panic!("{what} could not come up: {reason}"),
        }
    }

    fn start(opts: Options, one_lab: MutexGuard<'static, ()>) -> Result<Lab, String> {
        need_root()?;
        let lab_dir = target_dir().join("lab");
        let state = lab_dir.join(format!("state-{}", opts.suite));
        fs::create_dir_all(&state).map_err(|e| format!("{}: {e}", state.display()))?;
        let (env, lock) = script_env(&opts);
        let guardian_log = state.join("guardian.log");
        let (guardian, guardian_stdin) = take_lock(&lock, &env, &guardian_log, "lab-down.sh")?;

        let t0 = Instant::now();
        let mut lab = Lab {
            opts,
            env,
            leader: 0,
            guardian: Some(guardian),
            guardian_stdin,
            guardian_log,
            bring_up: Duration::ZERO,
            started: t0,
            _one_lab: one_lab,
        };
        let up = run_up("lab-up.sh", &lab.env);
        lab.bring_up = t0.elapsed();
        up?;
        let leader = fs::read_to_string(state.join("leader.pid"))
            .map_err(|e| format!("no leader.pid after lab-up: {e}"))?;
        lab.leader = leader
            .trim()
            .parse()
            .map_err(|e| format!("bad leader.pid {leader:?}: {e}"))?;
        announce(&format!(
            "lab {} up in {:.1} s ({})",
            lab.opts.suite,
            lab.bring_up.as_secs_f64(),
            lab.versions().replace('\n', "; ")
        ));
        Ok(lab)
    }

    pub fn suite(&self) -> &str {
        &self.opts.suite
    }

    /// The container's `path` as the host sees it (through its PID 1's root), e.g. to use a
    /// UNIX socket inside the container from a host process.
    pub fn host_path(&self, path: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{path}", self.leader))
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// Component versions as lab-up.sh recorded them.
    pub fn versions(&self) -> String {
        // a host of the two-host lab (pair.rs) has a state directory of its own
        let host = self
            .env
            .iter()
            .find(|(k, _)| *k == "LAB_HOST")
            .map_or(String::new(), |(_, h)| format!("-{h}"));
        let p = target_dir()
            .join("lab")
            .join(format!("state-{}{host}/versions", self.opts.suite));
        fs::read_to_string(p).unwrap_or_default().trim().to_string()
    }

    fn ct_command(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.leader.to_string())
            .args(["-a", "env", "-i"])
            .arg(format!("PATH={CT_PATH}"))
            .args(["HOME=/root", "LANG=C.UTF-8", "TERM=dumb"])
            .args(argv);
        c
    }

    /// Run `argv` inside the container (the process stays in the host's cgroup: use
    /// `systemd-run` for anything long-lived).
    pub fn exec(&self, argv: &[&str]) -> Output {
        self.exec_stdin(argv, &[])
    }

    /// Like [`Lab::exec`], feeding `input` on stdin.
    pub fn exec_stdin(&self, argv: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .ct_command(argv)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("nsenter {argv:?}: {e}"));
        let mut stdin = child.stdin.take().expect("piped");
        let input = input.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("nsenter {argv:?}: {e}"));
        let _ = writer.join();
        out
    }

    /// Run `argv` in the container, panic unless it succeeds; its stdout.
    pub fn run(&self, argv: &[&str]) -> String {
        let out = self.exec(argv);
        check(argv, &out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run a shell script (`sh -c`) in the container, panic unless it succeeds; its stdout.
    pub fn sh(&self, script: &str) -> String {
        self.run(&["sh", "-c", script])
    }

    /// The container's clock, as `journalctl --since` takes it: mark a point before acting.
    pub fn now(&self) -> String {
        self.run(&["date", "+%Y-%m-%d %H:%M:%S"]).trim().to_string()
    }

    /// What the hook logged at warning level or worse since `since` (empty: nothing).
    pub fn hook_warnings(&self, since: &str) -> String {
        self.sh(&format!(
            "journalctl --no-pager -q SYSLOG_IDENTIFIER=virt-systemd-hook -p warning --since '{since}' || true"
        ))
    }

    /// Write `data` to `path` inside the container (mode in octal, e.g. "644").
    pub fn write_file(&self, path: &str, data: &[u8], mode: &str) {
        let argv = [
            "sh",
            "-c",
            "mkdir -p \"$(dirname \"$1\")\" && cat > \"$1\" && chmod \"$2\" \"$1\"",
            "sh",
            path,
            mode,
        ];
        let out = self.exec_stdin(&argv, data);
        check(&argv, &out);
    }

    /// Copy a host file into the container.
    pub fn copy_in(&self, host: &Path, path: &str, mode: &str) {
        let data = fs::read(host).unwrap_or_else(|e| panic!("{}: {e}", host.display()));
        self.write_file(path, &data, mode);
    }

    /// Read a file inside the container.
    pub fn read_file(&self, path: &str) -> Vec<u8> {
        let out = self.exec(&["cat", path]);
        check(&["cat", path], &out);
        out.stdout
    }

    /// Install `script` as `/etc/libvirt/hooks/qemu.d/NAME` and restart libvirtd (libvirt reads
    /// its hooks directory only at start-up). Same mechanism as `hook-install.sh`.
    pub fn install_hook(&self, name: &str, script: &[u8]) {
        self.hook_install(&[name, "-"], script);
    }

    /// The freshly built virt-systemd hook, linked where the packages put it ([`HOOK_LINK`]),
    /// then libvirtd restarted (it reads its hooks directory at start-up).
    pub fn install_virt_systemd_hook(&self) {
        self.sh(&format!(
            "mkdir -p /etc/libvirt/hooks/qemu.d && ln -sfn {} {HOOK_LINK} && systemctl restart libvirtd",
            ct_bin("virt-systemd-hook")
        ));
    }

    /// The packaged `virt-systemd-control.service`, running the control service of the
    /// binaries under test, started.
    pub fn start_control_service(&self) {
        let unit = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("packaging/systemd/virt-systemd-control.service"),
        )
        .expect("packaging/systemd/virt-systemd-control.service")
        .replace(
            "ExecStart=/usr/bin/virt-systemd ",
            &format!("ExecStart={} ", ct_bin("virt-systemd")),
        );
        self.write_file(
            "/etc/systemd/system/virt-systemd-control.service",
            unit.as_bytes(),
            "644",
        );
        self.sh("systemctl daemon-reload && systemctl start virt-systemd-control.service");
    }

    /// Remove a hook installed with [`Lab::install_hook`] and restart libvirtd.
    pub fn remove_hook(&self, name: &str) {
        self.hook_install(&["--remove", name], &[]);
    }

    fn hook_install(&self, args: &[&str], input: &[u8]) {
        let mut child = Command::new(lab_src().join("hook-install.sh"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("hook-install.sh");
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(input)
            .expect("hook-install.sh stdin");
        let out = child.wait_with_output().expect("hook-install.sh");
        check(&["hook-install.sh"], &out);
    }

    /// Run `tests/lab/SCRIPT ARGS` on the host with this lab's settings (SUITE, LAB_DIR, …);
    /// panics unless it succeeds.
    pub fn host_script(&self, script: &str, args: &[&str]) -> Output {
        let out = Command::new(lab_src().join(script))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{script}: {e}"));
        check(&[script], &out);
        out
    }

    /// `virsh ARGS` in the container; panics unless it succeeds.
    pub fn virsh(&self, args: &[&str]) -> String {
        let mut argv = vec!["virsh"];
        argv.extend_from_slice(args);
        self.run(&argv)
    }

    /// Poll `cond` every 250 ms until it returns `Some`, or panic after `timeout` with the
    /// container's recent journal (what the hook, libvirtd and machined said).
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut cond: impl FnMut() -> Option<T>,
    ) -> T {
        let t0 = Instant::now();
        loop {
            if let Some(v) = cond() {
                return v;
            }
            if t0.elapsed() > timeout {
                let journal = self.exec(&["journalctl", "--no-pager", "-q", "-n", "80"]);
                let machines = self.exec(&["machinectl", "list", "--no-pager"]);
                panic!(
                    "lab {}: timed out after {timeout:?} waiting for {what}\n--- machines:\n{}\n--- journal:\n{}",
                    self.suite(),
                    String::from_utf8_lossy(&machines.stdout),
                    String::from_utf8_lossy(&journal.stdout)
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Wait until the file at `path` in the container contains `needle`; its content.
    pub fn wait_for_text(&self, path: &str, needle: &str, timeout: Duration) -> Vec<u8> {
        self.wait_for(&format!("{needle:?} in {path}"), timeout, || {
            let out = self.exec(&["cat", path]);
            let hay = out.stdout;
            hay.windows(needle.len())
                .any(|w| w == needle.as_bytes())
                .then_some(hay)
        })
    }

    /// Tear down now; Ok(lab-down's output) when it says nothing was left behind.
    pub fn down(mut self) -> Result<String, String> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<String, String> {
        let Some(mut guardian) = self.guardian.take() else {
            return Ok(String::new());
        };
        let t0 = Instant::now();
        drop(self.guardian_stdin.take()); // EOF: the guardian runs lab-down.sh
        let status = guardian.wait();
        let mut log = String::new();
        if let Ok(mut f) = fs::File::open(&self.guardian_log) {
            let _ = f.read_to_string(&mut log);
        }
        // keep every session's teardown log (guardian.log is per session)
        if let Ok(mut h) = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.guardian_log.with_file_name("teardown-history.log"))
        {
            let _ = write!(h, "=== {:?}\n{log}", std::time::SystemTime::now());
        }
        let took = t0.elapsed();
        announce(&format!(
            "lab {} down in {:.1} s (session {:.1} s)",
            self.opts.suite,
            took.as_secs_f64(),
            self.started.elapsed().as_secs_f64()
        ));
        if took > Duration::from_secs(10) {
            announce(&format!("lab {}: slow teardown:\n{log}", self.opts.suite));
        }
        match status {
            Ok(s) if s.success() => Ok(log),
            Ok(s) => Err(format!("lab-down.sh {s}:\n{log}")),
            Err(e) => Err(format!("lab guardian: {e}\n{log}")),
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            announce(&format!("lab {}: teardown problem: {e}", self.opts.suite));
        }
    }
}

/// `VIRT_SYSTEMD_LAB=skip` outside CI: the lab session `what` does not run (said on
/// stderr). In CI the variable is ignored, and said so.
pub(crate) fn opted_out(what: &str) -> bool {
    if std::env::var("VIRT_SYSTEMD_LAB").as_deref() != Ok("skip") {
        return false;
    }
    if in_ci() {
        announce("lab: VIRT_SYSTEMD_LAB=skip is ignored in CI (CI=true)");
        return false;
    }
    announce(&format!(
        "SKIPPED {what}: VIRT_SYSTEMD_LAB=skip (lab tests did NOT run)"
    ));
    true
}

/// The lab needs root (nspawn, cgroups, flock on /run/lock).
pub(crate) fn need_root() -> Result<(), String> {
    let uid = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .unwrap_or_default();
    if uid != "0" {
        return Err(format!(
            "the lab needs root (uid is {uid}); set VIRT_SYSTEMD_LAB=skip to opt out outside CI"
        ));
    }
    Ok(())
}

/// The lab scripts' environment for `opts`, and the host-wide lock's path.
pub(crate) fn script_env(opts: &Options) -> (Vec<(&'static str, String)>, String) {
    let lock =
        std::env::var("LAB_LOCK").unwrap_or_else(|_| "/run/lock/virt-systemd-lab.lock".to_string());
    if let Some(dir) = Path::new(&lock).parent() {
        let _ = fs::create_dir_all(dir);
    }
    let env = vec![
        ("SUITE", opts.suite.clone()),
        ("LAB_DIR", target_dir().join("lab").display().to_string()),
        ("LAB_BIN_DIR", bin_dir().display().to_string()),
        (
            "LAB_LIBVIRT_CGROUPS",
            (opts.libvirt_cgroups as u8).to_string(),
        ),
        ("LAB_LOCK", lock.clone()),
        ("LAB_LOCK_HELD", "1".to_string()),
        // a lab still running when we hold the lock was left by a killed session
        ("LAB_FRESH", "1".to_string()),
    ];
    (env, lock)
}

/// Take the host-wide lab lock through a guardian: it takes the lock, says so, waits for
/// EOF on stdin, then runs `down` (lab-down.sh or pair-down.sh; output to `log`: nobody may
/// be left to read a pipe) and releases the lock by exiting. Own process group, so a
/// terminal's ^C reaches only the tests. Closing the returned stdin (or dying) tears down.
pub(crate) fn take_lock(
    lock: &str,
    env: &[(&'static str, String)],
    log: &Path,
    down: &str,
) -> Result<(std::process::Child, Option<std::process::ChildStdin>), String> {
    let waiting = Instant::now();
    let script = r#"trap '' INT HUP TERM PIPE
echo locked
while read -r _; do :; done
exec "$0/$2" >> "$1" 2>&1"#;
    let mut cmd = Command::new("flock");
    cmd.arg("-w")
        .arg("1800")
        .arg(lock)
        .args(["bash", "-c", script])
        .arg(lab_src())
        .arg(log)
        .arg(down)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut guardian = cmd
        .spawn()
        .map_err(|e| format!("cannot run flock (util-linux): {e}"))?;
    let stdin = guardian.stdin.take();
    let _ = fs::write(log, "");
    // A lab session elsewhere on this host may hold the lock for a while: say so.
    let (got_lock, lock_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn({
        let lock = lock.to_string();
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
        return Err(format!(
            "could not take the host-wide lab lock {lock} (flock failed, or another lab session held it for 30 min)"
        ));
    }
    Ok((guardian, stdin))
}

/// Run a bring-up script (lab-up.sh, pair-up.sh) with `env`; its output goes to stderr, and
/// its tail into the error when it fails.
pub(crate) fn run_up(script: &str, env: &[(&'static str, String)]) -> Result<(), String> {
    let up = Command::new(lab_src().join(script))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {script}: {e}"))?;
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr)
    );
    eprint!("{log}");
    if up.status.success() {
        return Ok(());
    }
    let tail: Vec<&str> = log.lines().rev().take(30).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(format!(
        "{script} failed ({}):\n{}",
        up.status,
        tail.join("\n")
    ))
}

/// rust-vmm's user-space vhost-user vsock backend on the host, built once
/// (`tests/lab/tools.sh`); tests copy it into the container.
pub fn vhost_device_vsock() -> PathBuf {
    let t0 = Instant::now();
    let out = Command::new(lab_src().join("tools.sh"))
        .arg("vhost-device-vsock")
        .output()
        .expect("run tests/lab/tools.sh");
    assert!(
        out.status.success(),
        "tests/lab/tools.sh vhost-device-vsock failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    if t0.elapsed() > Duration::from_secs(5) {
        announce(&format!(
            "lab: vhost-device-vsock built in {:.1} s (cached from now on)",
            t0.elapsed().as_secs_f64()
        ));
    }
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn check(argv: &[&str], out: &Output) {
    assert!(
        out.status.success(),
        "{argv:?} failed in the lab ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The lab tests' guest: direct kernel boot under TCG, console to a file, no balloon.
/// With `vhost`, its vsock is the user-space backend at that socket (libvirt cannot
/// describe it, so it goes in through `<qemu:commandline>`, with the shared memory
/// vhost-user needs); see `vsock.rs`.
pub struct Domain<'a> {
    pub name: &'a str,
    pub uuid: &'a str,
    pub memory_mib: u32,
    pub vcpus: u32,
    /// File name under `CT_BOOT`.
    pub initrd: &'a str,
    pub cmdline: &'a str,
    pub serial: &'a str,
    pub vhost: Option<&'a str>,
}

impl<'a> Domain<'a> {
    /// The smallest guest: the tiny initrd, which prints a line and idles, no vsock.
    pub fn tiny(name: &'a str, uuid: &'a str, serial: &'a str) -> Domain<'a> {
        Domain {
            name,
            uuid,
            memory_mib: 128,
            vcpus: 1,
            initrd: "tiny-initrd.img",
            cmdline: "console=ttyS0 panic=-1 loglevel=4",
            serial,
            vhost: None,
        }
    }

    pub fn xml(&self) -> String {
        let Domain {
            name,
            uuid,
            memory_mib,
            vcpus,
            initrd,
            cmdline,
            serial,
            vhost,
        } = self;
        let (ns, shared, vsock) = match vhost {
            None => ("", "", String::new()),
            Some(vhost) => (
                " xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'",
                "  <memoryBacking>\n    <source type='memfd'/>\n    <access mode='shared'/>\n  </memoryBacking>\n",
                format!(
                    "  <qemu:commandline>\n    <qemu:arg value='-chardev'/>\n    \
                     <qemu:arg value='socket,id=vsdvsock,path={vhost}'/>\n    \
                     <qemu:arg value='-device'/>\n    \
                     <qemu:arg value='vhost-user-vsock-pci,chardev=vsdvsock,bus=pcie.0,addr=0x10'/>\n  \
                     </qemu:commandline>\n"
                ),
            ),
        };
        format!(
            r#"<domain type='qemu'{ns}>
  <name>{name}</name>
  <uuid>{uuid}</uuid>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>{vcpus}</vcpu>
{shared}  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>{CT_BOOT}/vmlinuz</kernel>
    <initrd>{CT_BOOT}/{initrd}</initrd>
    <cmdline>{cmdline}</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <serial type='file'>
      <source path='{serial}'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>
{vsock}</domain>
"#
        )
    }
}
